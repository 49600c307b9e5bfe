//! Issue 8, "severity from evidence, change detection, failures biting now": each lesson on
//! its own lab system (`testdata/lab-*.otlp.jsonl.gz`), and the real files.

use chokepoint::api::dto::{FindingDto, FindingsDoc};

use super::{ev, findings_of, realdata, root, top};

fn lab(name: &str) -> std::path::PathBuf {
    root().join(format!("testdata/lab-{name}.otlp.jsonl.gz"))
}

fn of(name: &str) -> FindingsDoc {
    findings_of(&[lab(name)], &[])
}

fn above_medium(f: &FindingDto) -> bool {
    matches!(f.severity, "high" | "critical")
}

#[test]
fn a_healthy_balanced_chain_has_nothing_above_medium() {
    let d = of("balanced-chain");
    assert!(!d.findings.is_empty(), "the time goes somewhere");
    for f in &d.findings {
        assert!(!above_medium(f), "{}: {}", f.id, f.summary);
        assert!(!f.active);
    }
}

#[test]
fn a_caller_with_a_starved_cpu_owns_the_gap() {
    let d = of("starved-caller");
    let b = top(&d, "bottleneck").unwrap();
    assert_eq!(b.node, "front", "{}", b.summary);
    assert_eq!(ev(b)["cause"], "slow_caller");
    assert!(above_medium(b));
    // Its callees answer as fast for it as for batch: none is more than low.
    for callee in ["users", "orders", "prices"] {
        assert!(
            d.findings
                .iter()
                .filter(|f| f.node == callee)
                .all(|f| f.severity == "low"),
            "{callee}"
        );
    }
}

#[test]
fn a_callee_saturating_under_rising_load_is_named_by_latency_against_load() {
    let d = of("saturating-callee");
    let b = top(&d, "bottleneck").unwrap();
    assert_eq!(b.node, "ledger");
    assert_eq!(ev(b)["cause"], "saturation");
    let sat = &ev(b)["latency_vs_load"];
    assert_eq!(sat["saturating"], true, "{sat}");
    assert!(sat["busy_over_quiet"].as_f64().unwrap() > 2.0, "{sat}");
    assert!(above_medium(b));
    // Its caller's own time does not climb: it only waits on ledger.
    let api = d
        .findings
        .iter()
        .find(|f| f.node == "payments-api" && f.kind == "bottleneck")
        .unwrap();
    assert_ne!(ev(api)["latency_vs_load"]["saturating"], true);
}

#[test]
fn failures_callers_absorb_are_neither_active_nor_hard() {
    let d = of("absorbed-failures");
    for f in &d.findings {
        assert!(!f.active, "{}", f.id);
        if f.node == "recommender" {
            assert_ne!(f.kind, "spof", "a soft dependency: {}", f.summary);
        }
    }
}

#[test]
fn a_failure_seen_only_as_vanished_calls_is_an_active_spof_against_the_baseline() {
    let d = findings_of(&[lab("quotes-wrong-answers")], &[lab("quotes-healthy")]);
    let first = &d.findings[0];
    assert_eq!((first.kind, first.node.as_str()), ("spof", "quote-api"));
    assert!(first.active && first.severity == "critical", "{first:?}");
    let v = &ev(first)["calls_vanished_vs_baseline"];
    assert_eq!(v["as_caller"], true, "{v}");
    assert!(v["rate"].as_f64().unwrap() > 0.5, "{v}");
    let gone: Vec<&str> = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(gone, ["pricing", "underwriting"]);
    // Without the baseline nothing says it is failing: no status anywhere.
    let alone = of("quotes-wrong-answers");
    assert!(alone.findings.iter().all(|f| !f.active));
}

#[test]
fn active_findings_sort_first_and_every_finding_says_whether_it_is_active() {
    let d = findings_of(&[lab("quotes-wrong-answers")], &[lab("quotes-healthy")]);
    let json = serde_json::to_value(&d).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["active"].is_boolean()));
    let first_inactive = d.findings.iter().position(|f| !f.active);
    let last_active = d.findings.iter().rposition(|f| f.active);
    if let (Some(i), Some(a)) = (first_inactive, last_active) {
        assert!(a < i, "active findings come first");
    }
}

#[test]
fn real_files_of_fewer_than_five_traces_have_nothing_above_medium() {
    let Some(dsb) = realdata("jaeger-deathstarbench-socialnetwork.json.gz") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(dsb.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.ends_with("README.md"))
        .collect();
    files.sort();
    let mut small = 0;
    for f in files {
        let d = findings_of(std::slice::from_ref(&f), &[]);
        if d.requests < 5 {
            small += 1;
            for x in &d.findings {
                assert!(!above_medium(x), "{}: {} {}", f.display(), x.id, x.severity);
            }
        }
    }
    assert!(small >= 6, "the single-trace files are among them");
}

#[test]
fn nezha_fault_files_name_the_injected_service_the_top_active_bottleneck() {
    for (system, answer) in [
        ("onlineboutique", "currencyservice"),
        ("trainticket", "ts-basic-service"),
    ] {
        let fault = std::fs::read_dir(root().join("../shared/realdata"))
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with(&format!("nezha-{system}-fault"))
                })
            });
        let Some(base) = realdata(&format!("nezha-{system}-baseline.otlp.jsonl.gz")) else {
            return;
        };
        let fault = fault.expect("the fault file beside its baseline");
        let d = findings_of(&[fault], &[base]);
        let b = d
            .findings
            .iter()
            .filter(|f| f.kind == "bottleneck" && f.active)
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .unwrap_or_else(|| panic!("{system}: no active bottleneck"));
        assert_eq!(b.node, answer, "{system}");
        assert!(above_medium(b), "{system}: {}", b.severity);
    }
}

/// Checks `v` against the subset of JSON Schema openapi.json uses (objects with properties
/// and required, arrays, numbers, strings, booleans, nullable).
fn conforms(v: &serde_json::Value, schema: &serde_json::Value, path: &str) -> Result<(), String> {
    use serde_json::Value;
    if v.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    match schema["type"].as_str() {
        Some("object") => {
            let o = v.as_object().ok_or(format!("{path}: not an object"))?;
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for k in schema["required"].as_array().into_iter().flatten() {
                let k = k.as_str().unwrap_or("");
                if !o.contains_key(k) {
                    return Err(format!("{path}.{k}: required, missing"));
                }
            }
            for (k, x) in o {
                let s = props
                    .get(k)
                    .ok_or(format!("{path}.{k}: not in the schema"))?;
                conforms(x, s, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        Some("array") => {
            for (i, x) in v
                .as_array()
                .ok_or(format!("{path}: not an array"))?
                .iter()
                .enumerate()
            {
                conforms(x, &schema["items"], &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Some("number") | Some("integer") => v
            .is_number()
            .then_some(())
            .ok_or(format!("{path}: not a number")),
        Some("string") => matches!(v, Value::String(_))
            .then_some(())
            .ok_or(format!("{path}: not a string")),
        Some("boolean") => v
            .is_boolean()
            .then_some(())
            .ok_or(format!("{path}: not a boolean")),
        _ => Ok(()),
    }
}

#[test]
fn openapi_describes_the_typed_evidence_of_every_checked_in_finding() {
    let spec: serde_json::Value =
        serde_json::from_str(include_str!("../../src/api/openapi.json")).unwrap();
    let schemas = &spec["components"]["schemas"];
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(root().join("testdata"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".findings.json"))
        .collect();
    names.sort();
    let mut docs: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::from_str(&std::fs::read_to_string(root().join("testdata").join(n)).unwrap())
                .unwrap()
        })
        .collect();
    docs.push(
        serde_json::to_value(findings_of(
            &[lab("quotes-wrong-answers")],
            &[lab("quotes-healthy")],
        ))
        .unwrap(),
    );
    for doc in &docs {
        for f in doc["findings"].as_array().unwrap() {
            let kind = match f["kind"].as_str() {
                Some("bottleneck") => "BottleneckEvidence",
                _ => "SpofEvidence",
            };
            conforms(&f["evidence"], &schemas[kind], &f["id"].to_string()).unwrap();
            assert!(f["active"].is_boolean());
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked}");
}
