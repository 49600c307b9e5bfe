//! Findings: the right weak spot named in each shop scenario, quiet on a healthy system, the
//! cases that look like weak spots but are not, and real incidents.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chokepoint::analyze::critical_path::CriticalPathConfig;
use chokepoint::analyze::engine::{Engine, EngineConfig};
use chokepoint::api::dto::FindingsDoc;
use chokepoint::replay::load_files;

use super::{ev, findings_of, graph_of, realdata, root, top};

fn shop(scenario: &str) -> PathBuf {
    root().join(format!("testdata/shop-{scenario}.otlp.jsonl.gz"))
}

fn doc(scenario: &str) -> FindingsDoc {
    findings_of(&[shop(scenario)], &[])
}

#[test]
fn healthy_shop_has_nothing_above_low() {
    let d = doc("healthy");
    for f in &d.findings {
        assert_eq!(f.severity, "low", "{}: {}", f.id, f.summary);
    }
}

#[test]
fn slow_payment_names_payment_or_its_bank() {
    let d = doc("slow-payment");
    let b = top(&d, "bottleneck").expect("a bottleneck");
    assert!(
        b.node == "payment-service" || b.node == "api.bank.example",
        "{}",
        b.node
    );
    assert!(matches!(b.severity, "critical" | "high"), "{}", b.severity);
    assert_eq!(d.findings[0].id, b.id, "the bottleneck leads the findings");
    let e = ev(b);
    let w = &e["what_if_2x_faster"];
    assert!(w["e2e_p50_ms_if_2x_faster"].as_f64() < w["e2e_p50_ms_now"].as_f64());
}

#[test]
fn email_backlog_is_a_queue_bottleneck_while_checkout_is_unaffected() {
    let d = doc("email-backlog");
    let b = top(&d, "bottleneck").unwrap();
    assert_eq!(b.node, "email-service");
    assert!(matches!(b.severity, "critical" | "high"));
    let e = ev(b);
    let q = &e["backlog"]["queue_delay_ms"];
    assert!(q["p99"].as_f64().unwrap() > 10_000.0, "{q}");
    assert!(e["backlog"]["growth_ms_per_s"].as_f64().unwrap() > 0.0);
    // Checkout latency is what it is on a healthy day.
    let gw = |s: &str| {
        let (g, _) = graph_of(&[shop(s)]);
        g.node("api-gateway")
            .unwrap()
            .latency_ms
            .clone()
            .unwrap()
            .p50
    };
    let (now, normal) = (gw("email-backlog"), gw("healthy"));
    assert!((now / normal - 1.0).abs() < 0.1, "{now} vs {normal}");
}

#[test]
fn single_instances_with_outages_are_the_top_critical_spof() {
    for (scenario, node) in [
        ("single-db", "orders (postgresql)"),
        ("single-kafka", "kafka-1 (kafka)"),
        ("single-orchestrator", "saga-orchestrator"),
    ] {
        let d = doc(scenario);
        let s = top(&d, "spof").unwrap_or_else(|| panic!("{scenario}: no spof"));
        assert_eq!(s.node, node, "{scenario}");
        assert_eq!(s.severity, "critical", "{scenario}");
        assert_eq!(d.findings[0].id, s.id, "{scenario}: it leads the findings");
        assert_eq!(ev(s)["instances"], 1, "{scenario}");
        assert!(ev(s)["hardness"].as_f64().unwrap() > 0.9, "{scenario}");
        assert!(!s.exemplar_trace_ids.is_empty());
    }
}

#[test]
fn slow_orchestrator_db_names_the_orchestrators_database() {
    let d = doc("slow-orchestrator-db");
    let b = top(&d, "bottleneck").unwrap();
    assert_eq!(b.node, "saga (postgresql)");
    assert_eq!(b.node_type, "database");
}

#[test]
fn three_instances_on_every_request_is_not_a_spof() {
    let d = doc("healthy");
    // order-service: every request passes through it, on three instances.
    assert!(d.findings.iter().all(|f| f.id != "spof/order-service"));
    let (g, _) = graph_of(&[shop("healthy")]);
    assert_eq!(g.node("order-service").unwrap().instances, Some(3));
}

/// A small OTLP/JSON lines writer for hand-built scenarios.
struct Traces(Vec<String>);

/// `(service, instance, span, parent, kind, start ms, end ms, error)`
type S<'a> = (&'a str, &'a str, u32, u32, u8, f64, f64, bool);

impl Traces {
    fn add(&mut self, trace: u32, spans: &[S<'_>]) {
        let base = 1_700_000_000_000_000_000u64 + u64::from(trace) * 1_000_000_000;
        let mut by_res: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for &(svc, inst, id, parent, kind, start, end, error) in spans {
            let parent = if parent == 0 {
                String::new()
            } else {
                format!(r#","parentSpanId":"{parent:016x}""#)
            };
            let status = if error { r#","status":{"code":2}"# } else { "" };
            by_res.entry((svc, inst)).or_default().push(format!(
                r#"{{"traceId":"{:032x}","spanId":"{id:016x}"{parent},"name":"op-{svc}","kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{}"{status}}}"#,
                u64::from(trace) + 1,
                base + (start * 1e6) as u64,
                base + (end * 1e6) as u64,
            ));
        }
        let rs: Vec<String> = by_res
            .into_iter()
            .map(|((svc, inst), spans)| {
                format!(
                    r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}},{{"key":"service.instance.id","value":{{"stringValue":"{inst}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}"#,
                    spans.join(",")
                )
            })
            .collect();
        self.0
            .push(format!(r#"{{"resourceSpans":[{}]}}"#, rs.join(",")));
    }

    fn findings(&self) -> FindingsDoc {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, self.0.join("\n")).unwrap();
        findings_of(&[p], &[])
    }
}

const SERVER: u8 = 2;
const CLIENT: u8 = 3;

#[test]
fn single_instance_whose_failures_callers_absorb_is_not_a_critical_spof() {
    let mut t = Traces(Vec::new());
    for i in 0..200u32 {
        let fe = ["fe-1", "fe-2", "fe-3"][i as usize % 3];
        let fails = i % 5 == 0;
        t.add(
            i,
            &[
                ("front", fe, 1, 0, SERVER, 0.0, 20.0, false),
                ("front", fe, 2, 1, CLIENT, 2.0, 8.0, fails),
                ("recs", "recs-1", 3, 2, SERVER, 3.0, 7.0, fails),
                ("front", fe, 4, 1, CLIENT, 9.0, 18.0, false),
                (
                    "catalog",
                    ["c-1", "c-2", "c-3"][i as usize % 3],
                    5,
                    4,
                    SERVER,
                    10.0,
                    17.0,
                    false,
                ),
            ],
        );
    }
    let d = t.findings();
    if let Some(f) = d.findings.iter().find(|f| f.id == "spof/recs") {
        assert!(
            f.severity != "critical" && f.severity != "high",
            "{}",
            f.summary
        );
    }
    // The same node, failing hard, is critical: the test can fail.
    let mut hard = Traces(Vec::new());
    for i in 0..200u32 {
        let fe = ["fe-1", "fe-2", "fe-3"][i as usize % 3];
        let fails = i % 5 == 0;
        hard.add(
            i,
            &[
                ("front", fe, 1, 0, SERVER, 0.0, 20.0, fails),
                ("front", fe, 2, 1, CLIENT, 2.0, 8.0, fails),
                ("recs", "recs-1", 3, 2, SERVER, 3.0, 7.0, fails),
            ],
        );
    }
    let d = hard.findings();
    assert_eq!(top(&d, "spof").unwrap().id, "spof/recs");
    assert_eq!(top(&d, "spof").unwrap().severity, "critical");
}

#[test]
fn slow_call_in_parallel_with_a_slower_sibling_is_not_the_bottleneck() {
    let mut t = Traces(Vec::new());
    for i in 0..200u32 {
        let k = i as usize % 3;
        let j = f64::from(i % 7);
        t.add(
            i,
            &[
                (
                    "front",
                    ["f-1", "f-2", "f-3"][k],
                    1,
                    0,
                    SERVER,
                    0.0,
                    100.0 + j,
                    false,
                ),
                (
                    "front",
                    ["f-1", "f-2", "f-3"][k],
                    2,
                    1,
                    CLIENT,
                    5.0,
                    55.0,
                    false,
                ),
                (
                    "slow",
                    ["s-1", "s-2", "s-3"][k],
                    3,
                    2,
                    SERVER,
                    6.0,
                    54.0,
                    false,
                ),
                (
                    "front",
                    ["f-1", "f-2", "f-3"][k],
                    4,
                    1,
                    CLIENT,
                    5.0,
                    95.0 + j,
                    false,
                ),
                (
                    "slower",
                    ["r-1", "r-2", "r-3"][k],
                    5,
                    4,
                    SERVER,
                    6.0,
                    94.0 + j,
                    false,
                ),
            ],
        );
    }
    let d = t.findings();
    assert_eq!(top(&d, "bottleneck").unwrap().node, "slower");
    assert!(d.findings.iter().all(|f| f.id != "bottleneck/slow"));
}

#[test]
fn nezha_incidents_name_the_sick_service_with_and_without_baseline() {
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
        let (Some(fault), Some(base)) = (
            fault,
            realdata(&format!("nezha-{system}-baseline.otlp.jsonl.gz")),
        ) else {
            return;
        };
        let alone = findings_of(std::slice::from_ref(&fault), &[]);
        assert_eq!(
            top(&alone, "bottleneck").unwrap().node,
            answer,
            "{system}, no baseline"
        );
        let compared = findings_of(&[fault], &[base]);
        let b = top(&compared, "bottleneck").unwrap();
        assert_eq!(b.node, answer, "{system}, with baseline");
        let e = ev(b);
        let change = &e["change"];
        assert!(
            change["ratio"].as_f64().unwrap() > 3.0,
            "{system}: {change}"
        );
        assert!(compared.baseline.is_some());
    }
}

#[test]
fn crisp_case18_exclusive_critical_path_times_with_tolerance() {
    let Some(p) = realdata("jaeger-crisp-case18.json") else {
        return;
    };
    let mut engine = Engine::new(EngineConfig::default());
    let totals: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Default::default();
    let sink = totals.clone();
    engine.set_critical_path(CriticalPathConfig {
        skew_tolerance: 0.01,
    });
    engine.set_on_trace(Some(Box::new(move |t, path| {
        for seg in path {
            let Some(i) = seg.span else { continue };
            let s = t.span(i);
            // Names are interned; the CRISP file's services and operations are S1.. and O1..
            let key = format!("{}:{}", s.service.0, s.name.0);
            *sink.lock().unwrap().entry(key).or_default() += seg.len_ns();
        }
    })));
    load_files(&mut engine, &[p], &mut ());
    let names = engine.interner();
    let by_name: BTreeMap<String, u64> = totals
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let (svc, op) = k.split_once(':').unwrap();
            let r = |x: &str| {
                names
                    .resolve(chokepoint::model::Sym(x.parse().unwrap()))
                    .to_owned()
            };
            (format!("[{}] {}", r(svc), r(op)), *v / 1000)
        })
        .collect();
    // The file's `testing.opTimeExclusive`, in µs.
    let expected: BTreeMap<String, u64> = [
        ("[S1] O1", 50),
        ("[S2] O2", 70),
        ("[S3] O3", 10),
        ("[S4] O4", 10),
        ("[S5] O5", 10),
        ("[S6] O6", 40),
        ("[S7] O7", 30),
        ("[S8] O8", 20),
        ("[S9] O9", 10),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_name, expected);
}

#[test]
fn a_caller_waiting_on_all_its_callees_alike_is_itself_the_bottleneck() {
    // front's calls to a, b and c each take 30 ms longer than the servers' spans: the
    // time is lost in front (a starved CPU), not in any one callee.
    let mut t = Traces(Vec::new());
    for i in 0..200u32 {
        let k = i as usize % 3;
        let fe = ["f-1", "f-2", "f-3"][k];
        t.add(
            i,
            &[
                ("front", fe, 1, 0, SERVER, 0.0, 150.0, false),
                ("front", fe, 2, 1, CLIENT, 1.0, 50.0, false),
                (
                    "a",
                    ["a-1", "a-2", "a-3"][k],
                    3,
                    2,
                    SERVER,
                    16.0,
                    35.0,
                    false,
                ),
                ("front", fe, 4, 1, CLIENT, 50.0, 100.0, false),
                (
                    "b",
                    ["b-1", "b-2", "b-3"][k],
                    5,
                    4,
                    SERVER,
                    65.0,
                    85.0,
                    false,
                ),
                ("front", fe, 6, 1, CLIENT, 100.0, 149.0, false),
                (
                    "c",
                    ["c-1", "c-2", "c-3"][k],
                    7,
                    6,
                    SERVER,
                    115.0,
                    134.0,
                    false,
                ),
            ],
        );
    }
    let d = t.findings();
    let b = top(&d, "bottleneck").unwrap();
    assert_eq!(b.node, "front", "{}", b.summary);
    assert_eq!(ev(b)["cause"], "slow_caller", "{}", b.summary);
    assert!(ev(b)["waiting"]["gap_p50_ms"].as_f64().unwrap() > 20.0);
    // The opposite: only calls to one callee wait (Nezha's currencyservice pattern).
    let mut t = Traces(Vec::new());
    for i in 0..200u32 {
        let k = i as usize % 3;
        let fe = ["f-1", "f-2", "f-3"][k];
        t.add(
            i,
            &[
                ("front", fe, 1, 0, SERVER, 0.0, 150.0, false),
                ("front", fe, 2, 1, CLIENT, 1.0, 100.0, false),
                (
                    "a",
                    ["a-1", "a-2", "a-3"][k],
                    3,
                    2,
                    SERVER,
                    80.0,
                    90.0,
                    false,
                ),
                ("front", fe, 4, 1, CLIENT, 100.0, 125.0, false),
                (
                    "b",
                    ["b-1", "b-2", "b-3"][k],
                    5,
                    4,
                    SERVER,
                    101.0,
                    124.0,
                    false,
                ),
                ("front", fe, 6, 1, CLIENT, 125.0, 149.0, false),
                (
                    "c",
                    ["c-1", "c-2", "c-3"][k],
                    7,
                    6,
                    SERVER,
                    126.0,
                    148.0,
                    false,
                ),
            ],
        );
    }
    let d = t.findings();
    assert_eq!(top(&d, "bottleneck").unwrap().node, "a");
}

#[test]
fn the_consumer_behind_a_single_broker_is_not_a_spof_for_checkout() {
    let d = doc("single-kafka");
    assert_eq!(top(&d, "spof").unwrap().node, "kafka-1 (kafka)");
    assert!(d.findings.iter().all(|f| f.id != "spof/email-service"));
    let kafka = top(&d, "spof").unwrap();
    assert_eq!(kafka.node_type, "messaging");
    assert!(ev(kafka)["reach_operation"]
        .as_str()
        .unwrap()
        .contains("POST /checkout"));
}
