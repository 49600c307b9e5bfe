//! Each trace file in testdata/ against its checked-in graph (`<file>.graph.json`) and
//! findings (`<file>.findings.json`).
//! `UPDATE_EXPECT=1 cargo test golden` rewrites the expectations; review the diff like code.

use std::fs;

use super::{findings_of, graph_of, root};

fn is_trace_file(name: &str) -> bool {
    [
        ".otlp.jsonl",
        ".otlp.jsonl.gz",
        ".otlp.pb",
        ".otlp.pb.gz",
        ".jaeger.json",
        ".zipkin.json",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

#[test]
fn every_testdata_file_matches_its_expected_graph_and_findings() {
    let dir = root().join("testdata");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("testdata/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_trace_file(n))
        .collect();
    names.sort();
    assert!(
        names.len() >= 7,
        "the shop scenarios are in testdata/: {names:?}"
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut mismatched = Vec::new();
    for name in &names {
        let (doc, load) = graph_of(&[dir.join(name)]);
        assert!(
            load.failed.is_empty() && load.spans_rejected == 0,
            "{name}: {:?}",
            load.problems
        );
        let graph = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        let findings = findings_of(&[dir.join(name)], &[]);
        let findings = serde_json::to_string_pretty(&findings).unwrap() + "\n";
        for (suffix, got) in [("graph", graph), ("findings", findings)] {
            let expect_path = dir.join(format!("{name}.{suffix}.json"));
            if update {
                fs::write(&expect_path, &got).unwrap();
                continue;
            }
            let want = fs::read_to_string(&expect_path).unwrap_or_else(|_| {
                panic!(
                    "{} missing: run UPDATE_EXPECT=1 cargo test golden",
                    expect_path.display()
                )
            });
            if want != got {
                let line = want
                    .lines()
                    .zip(got.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                mismatched.push(format!(
                    "{name}.{suffix}.json: first difference at line {}:\n  want: {}\n  got:  {}",
                    line + 1,
                    want.lines().nth(line).unwrap_or(""),
                    got.lines().nth(line).unwrap_or("")
                ));
            }
        }
    }
    assert!(
        mismatched.is_empty(),
        "graphs differ from expectations (UPDATE_EXPECT=1 to accept):\n{}",
        mismatched.join("\n")
    );
}

#[test]
fn shop_scenarios_show_every_node_with_the_right_type() {
    let dir = root().join("testdata");
    let (doc, _) = graph_of(&[dir.join("shop-healthy.otlp.jsonl.gz")]);
    for (name, ty) in [
        ("api-gateway", "service"),
        ("order-service", "service"),
        ("saga-orchestrator", "service"),
        ("payment-service", "service"),
        ("shipping-service", "service"),
        ("email-service", "service"),
        ("orders (postgresql)", "database"),
        ("saga (postgresql)", "database"),
        ("kafka", "messaging"),
        ("api.bank.example", "external"),
    ] {
        let n = doc.node(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(n.node_type, ty, "{name}");
        assert!(n.requests > 0 && n.latency_ms.is_some(), "{name}");
    }
    // Healthy: everything replicated.
    assert_eq!(doc.node("kafka").unwrap().instances, Some(3));
    assert_eq!(doc.node("saga-orchestrator").unwrap().instances, Some(3));
    assert_eq!(doc.node("orders (postgresql)").unwrap().instances, Some(2));
    // The broker is on the path producer -> broker -> consumer, with the queue delay.
    assert!(doc.edge("payment-service", "kafka").is_some());
    assert!(doc
        .edge("kafka", "email-service")
        .unwrap()
        .queue_ms
        .is_some());

    // One broker left: the node is that broker, named by its host as users know it.
    let (single, _) = graph_of(&[dir.join("shop-single-kafka.otlp.jsonl.gz")]);
    assert_eq!(single.node("kafka-1 (kafka)").unwrap().instances, Some(1));
    let (single, _) = graph_of(&[dir.join("shop-single-db.otlp.jsonl.gz")]);
    assert_eq!(
        single.node("orders (postgresql)").unwrap().instances,
        Some(1)
    );
    assert!(
        single.node("api-gateway").unwrap().errors > 0,
        "the outage reaches the entry"
    );
    let (single, _) = graph_of(&[dir.join("shop-single-orchestrator.otlp.jsonl.gz")]);
    assert_eq!(single.node("saga-orchestrator").unwrap().instances, Some(1));
}

#[test]
fn simulate_is_deterministic_and_matches_the_checked_in_files() {
    // The checked-in scenario files are `chokepoint simulate --scenario S --traces 300`
    // (seed 1): regenerating gives the same spans.
    use chokepoint::ingest::encode::encode_line;
    use chokepoint::simulate::{generate, Scenario, SimConfig};
    let cfg = SimConfig {
        scenario: Scenario::SlowPayment,
        ..Default::default()
    };
    let a: Vec<String> = generate(&cfg).map(|r| encode_line(&r)).collect();
    let b: Vec<String> = generate(&cfg).map(|r| encode_line(&r)).collect();
    assert_eq!(a, b);
    let file = root().join("testdata/shop-slow-payment.otlp.jsonl.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(fs::File::open(file).unwrap()),
        &mut text,
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, a.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn the_lab_files_are_what_simulate_generates() {
    // `chokepoint simulate --scenario NAME --out testdata/lab-NAME.otlp.jsonl.gz` (seed 1,
    // 300 traces).
    use chokepoint::ingest::encode::encode_line;
    use chokepoint::simulate::{generate, Lab, Scenario, SimConfig};
    for l in Lab::ALL.into_iter().filter(|l| l.checked_in()) {
        let cfg = SimConfig {
            scenario: Scenario::Lab(l),
            traces: l.default_traces(),
            ..Default::default()
        };
        let want: Vec<String> = generate(&cfg).map(|r| encode_line(&r)).collect();
        let file = root().join(format!("testdata/lab-{}.otlp.jsonl.gz", l.name()));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(fs::File::open(&file).unwrap()),
            &mut text,
        )
        .unwrap();
        assert!(
            text.lines().eq(want.iter().map(String::as_str)),
            "{} differs from what simulate generates",
            file.display()
        );
    }
}

#[test]
fn arrival_order_does_not_change_the_graph() {
    let dir = root().join("testdata");
    let file = dir.join("shop-email-backlog.otlp.jsonl.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(fs::File::open(&file).unwrap()),
        &mut text,
    )
    .unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    let tmp = tempfile::tempdir().unwrap();
    let reversed = tmp.path().join("reversed.otlp.jsonl");
    fs::write(&reversed, lines.join("\n")).unwrap();
    let (forward, _) = graph_of(&[file]);
    let (backward, _) = graph_of(&[reversed]);
    assert_eq!(
        serde_json::to_string(&forward).unwrap(),
        serde_json::to_string(&backward).unwrap()
    );
}
