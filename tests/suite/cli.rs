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

#[test]
fn replay_json_is_the_findings_document() {
    let out = chokepoint(&[
        "replay",
        "--format",
        "json",
        "testdata/shop-single-kafka.otlp.jsonl.gz",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["window"]["start"].as_str().unwrap().ends_with('Z'));
    assert_eq!(doc["traces"], 300);
    let f = &doc["findings"][0];
    for key in [
        "id",
        "kind",
        "node",
        "node_type",
        "score",
        "severity",
        "confidence",
        "summary",
        "evidence",
        "exemplar_trace_ids",
        "remediation",
    ] {
        assert!(!f[key].is_null(), "{key} missing in {f}");
    }
    assert_eq!(f["id"], "spof/kafka-1 (kafka)");
    assert_eq!(f["exemplar_trace_ids"][0].as_str().unwrap().len(), 32);
    let scores: Vec<f64> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score");
}

#[test]
fn replay_table_and_markdown_for_people() {
    let out = chokepoint(&["replay", "testdata/shop-slow-orchestrator-db.otlp.jsonl.gz"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("saga (postgresql)") && text.contains("cure:"),
        "{text}"
    );
    let out = chokepoint(&[
        "replay",
        "--format",
        "markdown",
        "testdata/shop-single-db.otlp.jsonl.gz",
        "--baseline",
        "testdata/shop-healthy.otlp.jsonl.gz",
    ]);
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# chokepoint findings"));
    assert!(md.contains("| 1 | spof | critical |"), "{md}");
    assert!(md.contains("baseline 300 traces"));
    assert!(md.contains("**Cure:**") && md.contains("**Evidence:**"));
}

#[test]
fn replay_windows_split_by_span_time() {
    let out = chokepoint(&[
        "replay",
        "--format",
        "json",
        "--window",
        "10s",
        "testdata/shop-healthy.otlp.jsonl.gz",
    ]);
    let docs: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        docs.len() >= 3,
        "30 s of traffic in 10 s windows: {}",
        docs.len()
    );
    let total: u64 = docs.iter().map(|d| d["traces"].as_u64().unwrap()).sum();
    assert_eq!(total, 300);
}

#[test]
fn critical_path_json_lines() {
    let out = chokepoint(&[
        "critical-path",
        "--format",
        "json",
        "testdata/shop-slow-payment.otlp.jsonl.gz",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 300);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
        let segs = v["segments"].as_array().unwrap();
        let mut last = 0;
        let mut sum = 0;
        for s in segs {
            assert_eq!(s["span_id"].as_str().unwrap().len(), 16);
            assert!(s["node"].is_string() && s["operation"].is_string());
            let (a, b) = (
                s["start_unix_nano"].as_u64().unwrap(),
                s["end_unix_nano"].as_u64().unwrap(),
            );
            assert!(a >= last && b >= a, "segments in time order");
            last = b;
            sum += b - a;
        }
        assert_eq!(
            sum,
            v["duration_ns"].as_u64().unwrap(),
            "the path covers the trace"
        );
    }
}

#[test]
fn progress_bar_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let big_s = big.to_str().unwrap();
    let out = chokepoint(&["simulate", "--traces", "900", "--out", big_s]);
    assert!(out.status.success());
    assert!(std::fs::metadata(&big).unwrap().len() > 8 << 20);
    // Not a terminal: nothing but the report.
    let out = chokepoint(&["replay", "--format", "json", big_s]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A terminal (util-linux `script` gives one): a bar on stderr.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("NOT RUN: the terminal half needs util-linux `script`");
        return;
    }
    let cmd = format!(
        "{} replay --format json {big_s} > /dev/null",
        env!("CARGO_BIN_EXE_chokepoint")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains('[') && tty.contains("MB"), "{tty:?}");
}

#[test]
fn gen_config_is_the_checked_in_example_and_validates() {
    let out = chokepoint(&["gen-config"]);
    assert!(out.status.success());
    let example = std::fs::read_to_string(root().join("systemd/chokepoint.toml")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        example,
        "systemd/chokepoint.toml is stale: chokepoint gen-config > systemd/chokepoint.toml"
    );
    let ok = chokepoint(&["validate", "--config", "systemd/chokepoint.toml"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[analysis]\nwindow = \"forever\"\n").unwrap();
    let out = chokepoint(&["validate", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("analysis.window") && err.contains("bad.toml"),
        "{err}"
    );
    let unit = std::fs::read_to_string(root().join("systemd/chokepoint.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/chokepoint validate"));
}

#[test]
fn serve_says_clearly_when_a_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = chokepoint(&[
        "serve",
        "--grpc-listen",
        &addr,
        "--api-listen",
        "127.0.0.1:0",
        "--api-grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (OTLP/gRPC)")),
        "{err}"
    );
}

/// Issue 10: an empty input said "0 traces" and exited 0. An empty file, and readable files
/// without a single span, are errors that say what was wrong.
#[test]
fn replay_of_an_empty_input_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    let spanless = dir.path().join("spanless.jsonl");
    std::fs::write(&spanless, "{\"resourceSpans\":[{\"scopeSpans\":[]}]}\n").unwrap();
    for (file, says) in [(&empty, "is empty"), (&spanless, "no spans in the input")] {
        let out = chokepoint(&["replay", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// The peak resident memory (kB) of `args` run to the end, read from /proc while it runs.
fn peak_rss_kb(args: &[&str]) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run chokepoint");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        if let Ok(s) = std::fs::read_to_string(&status) {
            let hwm = s.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            let kb = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(kb.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    peak
}

/// Replay kept every batch until it held 4,096 spans, so batches of nothing were never let
/// go: 20 MB of zero bytes (zero-length frames) peaked at 1.6 GB, `/dev/zero` grew without
/// end. And it kept every span problem of a file to list a hundred. Both are bounded now.
#[test]
fn replay_of_empty_frames_or_many_bad_spans_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros.bin");
    std::fs::write(&zeros, vec![0u8; 20_000_000]).unwrap();
    let kb = peak_rss_kb(&["replay", zeros.to_str().unwrap()]);
    assert!(
        kb < 200_000,
        "20 MB of zero-length frames peaked at {kb} kB"
    );
    // 200,000 spans with no trace id, 20 to a line: every one a problem.
    let bad = dir.path().join("bad.jsonl");
    let span =
        r#"{"spanId":"0102030405060708","name":"x","startTimeUnixNano":"1","endTimeUnixNano":"2"}"#;
    let line = format!(
        "{{\"resourceSpans\":[{{\"scopeSpans\":[{{\"spans\":[{}]}}]}}]}}\n",
        vec![span; 20].join(",")
    );
    std::fs::write(&bad, line.repeat(10_000)).unwrap();
    let out = chokepoint(&["replay", bad.to_str().unwrap(), "--format", "json"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let kb = peak_rss_kb(&["replay", bad.to_str().unwrap()]);
    assert!(kb < 50_000, "200,000 bad spans peaked at {kb} kB");
}
