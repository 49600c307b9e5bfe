//! What survives a restart: snapshots across kill -9 and SIGTERM, a damaged snapshot moved
//! aside, and the memory budget under a flood of names.

use super::*;

/// A configuration in `dir` that snapshots `state` every second.
fn snapshot_every_second(dir: &std::path::Path, state: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = \"{}\"\nsnapshot_interval = \"1s\"\n",
            state.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn state_survives_kill_9_and_sigterm_drains_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = snapshot_every_second(dir.path(), &dir.path().join("state"));
    let cfg_s = cfg.to_str().unwrap();
    let spans_in_graph = |d: &Daemon| d.get("/graph?window=1h")["spans"].as_u64().unwrap();
    // Run 1: data in, wait for a snapshot that has it, then kill -9.
    let mut d = Daemon::start(&["--config", cfg_s]);
    let reqs = shop(Scenario::SingleOrchestrator, 200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |d: &Daemon, reqs: &[ExportTraceServiceRequest]| {
        rt.block_on(async {
            let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
                format!("http://{}", d.grpc),
            )
            .await
            .unwrap();
            for r in reqs {
                c.export(r.clone()).await.unwrap();
            }
        })
    };
    send(&d, &reqs);
    d.settle();
    let before = spans_in_graph(&d);
    assert!(before > 0);
    let snapshot = dir.path().join("state/state.bin");
    let written = std::fs::metadata(&snapshot).and_then(|m| m.modified()).ok();
    d.wait_for("a snapshot after the data", |_| {
        std::fs::metadata(&snapshot)
            .and_then(|m| m.modified())
            .ok()
            .is_some_and(|t| Some(t) != written)
    });
    d.signal("-KILL");
    // Run 2: the graph is back.
    let mut d = Daemon::start(&["--config", cfg_s]);
    assert_eq!(spans_in_graph(&d), before, "restored from the snapshot");
    // SIGTERM under load: everything accepted before the signal is analysed or counted.
    let more = shop(Scenario::Healthy, 100);
    send(&d, &more);
    let received = d.metric("chokepoint_spans_received_total");
    let status = d.signal("-TERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let d = Daemon::start(&["--config", cfg_s]);
    let after = spans_in_graph(&d);
    assert_eq!(
        after,
        before + received,
        "traces still assembling were completed, not lost"
    );
}

/// Issue 10: random bytes, a bit-flipped and a truncated snapshot. Each time the daemon
/// starts (empty), and the bad file is kept aside for a human.
#[test]
fn a_bad_snapshot_is_moved_aside_and_the_daemon_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = snapshot_every_second(dir.path(), &state);
    let cfg_s = cfg.to_str().unwrap();
    // A good snapshot to damage.
    let mut d = Daemon::start(&["--config", cfg_s]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", d.grpc),
        )
        .await
        .unwrap();
        for r in shop(Scenario::Healthy, 100) {
            c.export(r).await.unwrap();
        }
    });
    d.settle();
    assert!(d.signal("-TERM").success());
    let good = std::fs::read(state.join("state.bin")).unwrap();
    assert!(good.len() > 1000);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..good.len())
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let mut ff_at_16 = good.clone();
    ff_at_16[16..24].copy_from_slice(&[0xFF; 8]);
    let truncated = good[..good.len() * 2 / 3].to_vec();
    for (what, bytes) in [
        ("random bytes", random),
        ("a flipped bit", flipped),
        ("0xFF at offset 16", ff_at_16),
        ("a truncated file", truncated),
    ] {
        for e in std::fs::read_dir(&state).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        std::fs::write(state.join("state.bin"), &bytes).unwrap();
        let d = Daemon::start(&["--config", cfg_s]);
        assert_eq!(d.text("/readyz"), "ready\n", "{what}");
        assert_eq!(
            d.get("/graph?window=1h")["spans"],
            0,
            "{what}: starts empty"
        );
        let aside: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.bin.bad-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "{what}: the bad file is kept aside");
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes, "{what}");
    }
}

/// One-span traces from `services` distinct services over `minutes` one-minute buckets of
/// the last half hour: the shape of the issue-10 memory flood, deterministic.
fn many_services_flood(
    services: u64,
    minutes: u64,
    spans: u64,
    batch: u64,
) -> Vec<ExportTraceServiceRequest> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource as PResource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let now = now_ns();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = Vec::new();
    let mut sent = 0u64;
    while sent < spans {
        let mut rs = Vec::new();
        for _ in 0..batch.min(spans - sent) {
            let svc = format!("svc-{:05}", next() % services);
            let start = now - (next() % (minutes * 60)) * 1_000_000_000 - next() % 1_000_000_000;
            let span = Span {
                trace_id: [next().to_le_bytes(), next().to_le_bytes()].concat(),
                span_id: next().to_le_bytes().to_vec(),
                name: "GET /".into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000 + next() % 50_000_000,
                ..Default::default()
            };
            rs.push(ResourceSpans {
                resource: Some(PResource {
                    attributes: vec![PKeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(svc)),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            });
            sent += 1;
        }
        out.push(ExportTraceServiceRequest { resource_spans: rs });
    }
    out
}

/// Issue 10: many service names over many buckets grew memory without bound and without a
/// count. Under a (small) budget the aggregates stay inside it, the folds are counted, the
/// books balance, and a restart from the snapshot stays inside it too.
#[test]
fn a_flood_of_names_over_time_stays_inside_the_memory_budget() {
    const BUDGET_MB: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[analysis]\nmemory_budget_mb = {BUDGET_MB}\n[state]\ndir = \"{}\"\n\
             snapshot_interval = \"1s\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let budget = BUDGET_MB << 20;
    let mut d = Daemon::start(&["--config", cfg_s]);
    let url = format!("http://{}/v1/traces", d.http);
    let c = reqwest::blocking::Client::new();
    for r in many_services_flood(2_000, 30, 20_000, 500) {
        let body = r.encode_to_vec();
        loop {
            let s = c
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .unwrap()
                .status();
            if s != 503 {
                assert_eq!(s, 200);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    d.settle();
    let folds = |d: &Daemon| {
        let text = d.text("/metrics");
        text.lines()
            .filter(|l| l.starts_with("chokepoint_budget_folds_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    // The gauge is refreshed at each refresh; the last batch may be a check behind.
    d.wait_for("the aggregates inside the budget", |d| {
        d.metric("chokepoint_aggregate_bytes") <= budget
    });
    assert!(folds(&d) > 0, "the folding is counted");
    assert_eq!(
        d.metric("chokepoint_spans_received_total"),
        d.metric("chokepoint_spans_analysed_total")
            + d.metric("chokepoint_spans_rejected_total")
            + d.metric("chokepoint_spans_dropped_total"),
        "folding loses no count"
    );
    let graph = d.get("/graph?window=1h");
    assert_eq!(graph["spans"], 20_000, "folded traffic still counts");
    assert!(d.signal("-TERM").success());
    let d = Daemon::start(&["--config", cfg_s]);
    let bytes = d.metric("chokepoint_aggregate_bytes");
    assert!(bytes > 0 && bytes <= budget, "restored: {bytes} > {budget}");
    assert_eq!(d.get("/graph?window=1h")["spans"], 20_000);
}

/// Two daemons on one state directory overwrote each other's history (whichever stopped
/// last won); a symlink at the temporary file's name had a snapshot overwrite a file outside
/// the directory; failed snapshots were only a log line. Now the second daemon is refused
/// at start with one clear line, the link is removed rather than followed, and snapshots
/// are counted.
#[test]
fn a_state_directory_is_one_daemons_and_its_snapshots_follow_no_link() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, state.join("state.bin.tmp")).unwrap();
    let cfg = snapshot_every_second(dir.path(), &state);
    let cfg_s = cfg.to_str().unwrap();
    let d = Daemon::start(&["--config", cfg_s]);
    d.wait_for("a snapshot written", |d| {
        d.metric("chokepoint_snapshots_written_total") >= 1
    });
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    assert!(state.join("state.bin").is_file());
    // A second daemon on the same directory.
    let mut second = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["serve", "--config", cfg_s])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--api-grpc-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second daemon on the same state directory kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("another chokepoint uses this state directory"),
        "{err}"
    );
    assert_eq!(d.metric("chokepoint_snapshots_failed_total"), 0);
    // A state "directory" that is a file: its cause said once, not three times.
    let out = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["serve", "--state-dir", outside.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}
