//! The `chokepoint` binary itself.

use std::process::Command;

use super::root;

fn chokepoint(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run chokepoint")
}

#[test]
fn graph_prints_every_shop_node_as_a_table() {
    let out = chokepoint(&["graph", "testdata/shop-slow-payment.otlp.jsonl.gz"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for node in [
        "api-gateway",
        "order-service",
        "saga-orchestrator",
        "payment-service",
        "shipping-service",
        "email-service",
        "orders (postgresql)",
        "kafka",
        "api.bank.example",
    ] {
        assert!(text.contains(node), "{node} missing from\n{text}");
    }
    for header in ["requests", "errors", "p50 ms", "p99 ms", "instances"] {
        assert!(text.contains(header), "{header}");
    }
}

#[test]
fn graph_json_and_dot() {
    let out = chokepoint(&[
        "graph",
        "--format",
        "json",
        "testdata/shop-healthy.otlp.jsonl.gz",
    ]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["traces"], 300);
    assert!(doc["nodes"].as_array().unwrap().len() >= 10);
    let out = chokepoint(&[
        "graph",
        "--format",
        "dot",
        "testdata/shop-healthy.otlp.jsonl.gz",
    ]);
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph chokepoint {"));
    assert!(dot.contains("\"payment-service\" -> \"kafka\""));
    assert!(dot.contains("shape=cylinder"));
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let out = chokepoint(&["graph", "testdata/does-not-exist.json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("testdata/does-not-exist.json: cannot open"),
        "{err}"
    );
}

#[test]
fn simulate_writes_otlp_json_lines_that_graph_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("single-db.jsonl");
    let file_s = file.to_str().unwrap();
    let out = chokepoint(&[
        "simulate",
        "--scenario",
        "single-db",
        "--traces",
        "40",
        "--seed",
        "7",
        "--out",
        file_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 40);
    let out = chokepoint(&["graph", "--format", "json", file_s]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["traces"], 40);
    let bad = chokepoint(&["simulate", "--scenario", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("single-orchestrator"));
}
