//! Scale-out end to end (issue 11): a real Prometheus (Debian's `prometheus`, remote-write
//! receiver on, loopback), two `chokepoint serve` instances each fed the traces whose id
//! hashes to it (what the Collector's `loadbalancing` exporter does with
//! `routing_key: traceID`), both remote-writing their aggregates; `chokepoint query`
//! reading Prometheus must give the findings of one chokepoint fed everything.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chokepoint::simulate::Scenario;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::daemon::{shop, Daemon};
use super::realdata;

/// Debian's Prometheus, or `None` (loudly) outside CI; a failure in CI.
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not installed and CI is set: a test that did not run is not green \
             (scripts/test installs Debian's prometheus)"
        );
        eprintln!("NOT RUN: prometheus is not installed; the scale-out tests did not run");
    }
    found
}

/// A Prometheus that only receives.
const RECEIVER_ONLY: &str = "global:\n  scrape_interval: 15s\n";

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus with `config` (YAML), the remote-write receiver on.
    fn start(bin: &Path, config_yaml: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write config");
        // Prometheus takes an address, not a listener: a port free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait_until("Prometheus to be ready", || {
            reqwest::blocking::get(format!("{}/-/ready", p.url))
                .is_ok_and(|r| r.status().is_success())
        });
        p
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An instance remote-writing to `p` every second as `name`.
fn instance(p: &Prometheus, name: &str) -> Daemon {
    Daemon::start(&[
        "--set",
        &format!("export.remote_write_url={}", p.write_url()),
        "--set",
        "export.remote_write_interval=1s",
        "--set",
        &format!("export.instance={name}"),
    ])
}

/// `reqs` split by trace id over `shards` instances, as the load-balancing exporter routes.
fn route(reqs: &[ExportTraceServiceRequest], shards: usize) -> Vec<Vec<ExportTraceServiceRequest>> {
    let mut out = vec![Vec::new(); shards];
    for req in reqs {
        for (i, part) in out.iter_mut().enumerate() {
            let mut r = req.clone();
            for rs in &mut r.resource_spans {
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|s| {
                        (chokepoint::model::stable_hash(&s.trace_id) % shards as u64) as usize == i
                    });
                }
                rs.scope_spans.retain(|ss| !ss.spans.is_empty());
            }
            r.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            if !r.resource_spans.is_empty() {
                part.push(r);
            }
        }
    }
    out
}

fn send(d: &Daemon, reqs: &[ExportTraceServiceRequest]) {
    let client = reqwest::blocking::Client::new();
    for r in reqs {
        let resp = client
            .post(format!("http://{}/v1/traces", d.http))
            .header("content-type", "application/x-protobuf")
            .body(r.encode_to_vec())
            .send()
            .expect("POST /v1/traces");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}

/// `chokepoint query` against `p` as JSON, with its exit code.
fn query(p: &Prometheus, args: &[&str]) -> (serde_json::Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["query", "--prometheus-url", &p.url, "--format", "json"])
        .args(args)
        .output()
        .expect("run chokepoint query");
    let code = out.status.code().unwrap_or(-1);
    // Before the store holds anything, query says so and fails: callers wait on the result.
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        eprintln!(
            "query ({code}) printed no findings ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::Value::Null
    });
    (doc, code)
}

/// Same kind, node and severity; scores within 5%.
fn assert_same(want: &serde_json::Value, got: &serde_json::Value) {
    let summary = |d: &serde_json::Value| {
        let mut v: Vec<(String, String, f64)> = d["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                (
                    format!("{} {}", f["kind"], f["node"]),
                    f["severity"].to_string(),
                    f["score"].as_f64().unwrap_or(-1.0),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (summary(want), summary(got));
    assert!(!a.is_empty(), "the reference has no findings to compare");
    let ids = |v: &[(String, String, f64)]| {
        v.iter()
            .map(|x| (x.0.clone(), x.1.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&a),
        ids(&b),
        "\none fed everything: {a:?}\nglobal: {b:?}\ncapacity of one: {}\nglobal capacity: {}",
        want["capacity"],
        got["capacity"]
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.2 - y.2).abs() <= 0.05 * x.2.max(0.05),
            "{}: score {} (one fed everything) vs {} (global)",
            x.0,
            x.2,
            y.2
        );
    }
}

fn notes(doc: &serde_json::Value) -> String {
    doc["notes"].to_string()
}

#[test]
fn two_instances_through_prometheus_give_the_findings_of_one_and_say_when_partial() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let p = Prometheus::start(&bin, RECEIVER_ONLY);
    let (a, mut b) = (instance(&p, "a"), instance(&p, "b"));
    let whole = Daemon::start(&[]);
    let reqs = shop(Scenario::SingleDb, 600);
    let parts = route(&reqs, 2);
    assert!(parts.iter().all(|p| !p.is_empty()));
    send(&a, &parts[0]);
    send(&b, &parts[1]);
    send(&whole, &reqs);
    for d in [&a, &b, &whole] {
        d.settle();
    }
    let spans = |d: &Daemon| d.metric("chokepoint_spans_analysed_total");
    let total = spans(&whole);
    assert_eq!(spans(&a) + spans(&b), total);
    assert!(spans(&a) > 0 && spans(&b) > 0);
    whole.wait_for("the reference's findings to count every span", |d| {
        d.get("/findings")["spans"].as_u64() == Some(total)
    });
    let want = whole.get("/findings");
    let window = ["--window", "10m", "--silent-after", "5s"];
    let mut got = serde_json::Value::Null;
    wait_until("the global view to count every span", || {
        got = query(&p, &window).0;
        got["spans"].as_u64() == Some(total)
    });
    assert_same(&want, &got);
    assert!(
        notes(&got).contains("summed from 2 instances: a (last heard"),
        "{}",
        notes(&got)
    );
    // A daemon serving the global view: the same API (findings, graph, dashboard) over it.
    let global = Daemon::start(&[
        "--set",
        &format!("source.prometheus_url={}", p.url),
        "--set",
        "source.silent_after=5s",
    ]);
    global.wait_for("the global daemon to sum both instances", |d| {
        d.get("/findings")["spans"].as_u64() == Some(total)
    });
    assert_same(&want, &global.get("/findings"));
    let node_names = |d: &Daemon| {
        let mut v: Vec<String> = d.get("/graph")["nodes"]
            .as_array()
            .expect("graph nodes")
            .iter()
            .map(|n| n["name"].to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(node_names(&global), node_names(&whole));
    assert!(
        global.text("/").contains("<html"),
        "the dashboard is served"
    );

    // One instance lost: the findings say they are partial and name it; nothing panics.
    b.signal("-KILL");
    let mut code = 0;
    wait_until("the global view to call b silent", || {
        (got, code) = query(&p, &window);
        code == 3
    });
    assert!(
        notes(&got).contains("PARTIAL: 1 of 2 instances silent (b)"),
        "{}",
        notes(&got)
    );
    global.wait_for("the global daemon to call b silent", |d| {
        notes(&d.get("/findings")).contains("PARTIAL: 1 of 2 instances silent (b)")
    });
    // It returns (empty, as after a crash without a state directory): whole again, and
    // its restart reads as a counter reset, not as traffic.
    let _b = instance(&p, "b");
    wait_until("the global view to hear from b again", || {
        (got, code) = query(&p, &window);
        code == 0
    });
    assert!(!notes(&got).contains("PARTIAL"), "{}", notes(&got));
    assert_eq!(got["spans"].as_u64(), Some(total));
    assert_same(&want, &got);
    global.wait_for("the global daemon to be whole again", |d| {
        !notes(&d.get("/findings")).contains("PARTIAL")
    });
    drop(a);
}

/// Reads an OTLP file into requests (one per batch the reader yields).
fn requests_of(path: &Path) -> Vec<ExportTraceServiceRequest> {
    let mut out = Vec::new();
    chokepoint::ingest::file::read_path(
        path,
        &mut |_loc, spans: chokepoint::ingest::batch::Batch, _report| {
            out.push(ExportTraceServiceRequest {
                resource_spans: spans.into_resource_spans().expect("the case decodes"),
            })
        },
    )
    .expect("read the case");
    out
}

#[test]
fn a_nezha_case_with_its_baseline_through_prometheus_matches_replay() {
    let (Some(incident), Some(normal)) = (
        realdata("nezha-train/trainticket-2023-01-29-13_33.otlp.jsonl.gz"),
        realdata("nezha-train/baseline/trainticket-2023-01-29-08_50.otlp.jsonl.gz"),
    ) else {
        return;
    };
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let want = serde_json::to_value(super::findings_of(
        std::slice::from_ref(&incident),
        std::slice::from_ref(&normal),
    ))
    .expect("findings as JSON");
    assert!(want["baseline"].is_object(), "the reference has a baseline");
    let p = Prometheus::start(&bin, RECEIVER_ONLY);
    let (a, b) = (instance(&p, "a"), instance(&p, "b"));
    let now = || chokepoint::clock::now_ns() as f64 / 1e9;
    let started = now();
    // The baseline period, then the incident: the store's time axis is when the instances
    // wrote, so the two are told apart by a quiet gap (with writes in it) between them.
    let feed = |file: &Path| {
        let parts = route(&requests_of(file), 2);
        send(&a, &parts[0]);
        send(&b, &parts[1]);
        a.settle();
        b.settle();
    };
    let exported = || {
        let n = |d: &Daemon| d.metric("chokepoint_spans_analysed_total");
        let want = n(&a) + n(&b);
        wait_until("the store to hold what the instances analysed", || {
            query(&p, &["--window", "1h", "--baseline", "0s"]).0["spans"].as_u64() == Some(want)
        });
    };
    feed(&normal);
    exported();
    let split = now() + 11.0;
    std::thread::sleep(Duration::from_secs_f64(split - now() + 1.0));
    feed(&incident);
    exported();
    let end = now();
    let mut got = query(
        &p,
        &[
            "--at",
            &format!("{end:.3}"),
            "--window",
            &format!("{:.0}s", (end - split).ceil()),
            "--baseline",
            &format!("{:.0}s", (split - started).ceil() + 60.0),
        ],
    )
    .0;
    assert_eq!(got["traces"], want["traces"], "{}", notes(&got));
    assert_eq!(
        got["baseline"]["traces"],
        want["baseline"]["traces"],
        "{}",
        notes(&got)
    );
    // Latency against load is rebuilt one store step per period (README "Scaling out"):
    // a capture fed to the instances in one burst is one period to the store, so the
    // saturation evidence replay reads from span time is not there. Everything else is.
    let mut want = want;
    let saturation = |f: &serde_json::Value| f["evidence"]["cause"] == "saturation";
    let exempt: Vec<String> = want["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| saturation(f))
        .map(|f| f["node"].to_string())
        .collect();
    assert!(
        exempt.len() < 4,
        "most of the reference's findings are not saturation: {exempt:?}"
    );
    if let Some(v) = want["findings"].as_array_mut() {
        v.retain(|f| !saturation(f));
    }
    if let Some(v) = got["findings"].as_array_mut() {
        v.retain(|f| !saturation(f));
    }
    assert_same(&want, &got);
}

#[test]
fn the_aggregates_are_on_metrics_for_a_scrape_and_bounded_by_max_series() {
    let d = Daemon::start(&[]);
    send(&d, &shop(Scenario::SingleDb, 300));
    d.settle();
    d.wait_for("the aggregates on /metrics", |d| {
        d.metric("chokepoint_export_series") > 500
    });
    let text = d.text("/metrics");
    assert!(
        text.contains("# TYPE chokepoint_node_requests_total counter"),
        "aggregate series are scrapeable"
    );
    assert!(text.contains("chokepoint_edge_calls_total{"));
    assert_eq!(d.metric("chokepoint_export_series_dropped"), 0);

    // Bounded: past export.max_series the rest is left out, and counted.
    let small = Daemon::start(&["--set", "export.max_series=100"]);
    send(&small, &shop(Scenario::SingleDb, 300));
    small.settle();
    small.wait_for("the bound to cut the export", |d| {
        d.metric("chokepoint_export_series_dropped") > 0
    });
    assert_eq!(small.metric("chokepoint_export_series"), 100);
    let exported = small
        .text("/metrics")
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && chokepoint::scale::exchange::METRICS
                    .iter()
                    .any(|m| l.split(['{', ' ']).next() == Some(m.0))
        })
        .count();
    assert_eq!(exported, 100);
}

#[test]
fn two_instances_scraped_by_prometheus_give_the_findings_of_one() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let (a, b, whole) = (Daemon::start(&[]), Daemon::start(&[]), Daemon::start(&[]));
    let target = |d: &Daemon| d.api.trim_start_matches("http://").to_owned();
    let p = Prometheus::start(
        &bin,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: chokepoint\n    \
             static_configs:\n      - targets: [\"{}\", \"{}\"]\n",
            target(&a),
            target(&b)
        ),
    );
    let reqs = shop(Scenario::SlowPayment, 600);
    let parts = route(&reqs, 2);
    send(&a, &parts[0]);
    send(&b, &parts[1]);
    send(&whole, &reqs);
    for d in [&a, &b, &whole] {
        d.settle();
    }
    let total = whole.metric("chokepoint_spans_analysed_total");
    whole.wait_for("the reference's findings to count every span", |d| {
        d.get("/findings")["spans"].as_u64() == Some(total)
    });
    let want = whole.get("/findings");
    let mut got = serde_json::Value::Null;
    wait_until("the scraped global view to count every span", || {
        got = query(&p, &["--window", "10m"]).0;
        got["spans"].as_u64() == Some(total)
    });
    assert_same(&want, &got);
    // Scraped series are told apart by Prometheus' own `instance` label.
    assert!(
        notes(&got).contains(&format!(
            "summed from 2 instances: {} (last heard",
            target(&a)
        )) || notes(&got).contains(&format!(
            "summed from 2 instances: {} (last heard",
            target(&b)
        )),
        "{}",
        notes(&got)
    );
}

/// The root span's start of a one-trace request (the generator's requests are one trace).
fn trace_start(r: &ExportTraceServiceRequest) -> u64 {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0)
}

#[test]
fn capacity_through_prometheus_is_the_capacity_of_one_fed_everything() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    // inventory at 30% of its capacity, ending now, fed 10 s of span time at a time with a
    // write between: the store's axis is write time, and each write says how far in trace
    // start time its writer had got, which is where the global view counts its load. (What
    // this cannot carry: a saturated node's completions by when they ended, see README
    // "Scaling out"; its queueing-model estimate is exact.)
    use chokepoint::simulate::{generate, Lab, SimConfig};
    let cfg = SimConfig {
        scenario: Scenario::Lab(Lab::WorkerSlotsLight),
        traces: Lab::WorkerSlotsLight.default_traces(),
        start_unix_ns: chokepoint::clock::now_ns() - 310_000_000_000,
        ..Default::default()
    };
    let reqs: Vec<ExportTraceServiceRequest> = generate(&cfg).collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("worker-slots-light.otlp.jsonl");
    let lines: Vec<String> = reqs
        .iter()
        .map(chokepoint::ingest::encode::encode_line)
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let want = super::findings_of(&[file], &[]);
    let want_cap = want
        .capacity
        .iter()
        .find(|c| c.node == "inventory")
        .and_then(|c| c.capacity_rps)
        .expect("the reference measures inventory");

    let p = Prometheus::start(&bin, RECEIVER_ONLY);
    let (a, b) = (instance(&p, "a"), instance(&p, "b"));
    let bucket = |r: &ExportTraceServiceRequest| trace_start(r) / 10_000_000_000;
    let mut i = 0;
    while i < reqs.len() {
        let j = i + reqs[i..]
            .iter()
            .take_while(|r| bucket(r) == bucket(&reqs[i]))
            .count();
        let parts = route(&reqs[i..j], 2);
        send(&a, &parts[0]);
        send(&b, &parts[1]);
        a.settle();
        b.settle();
        // remote_write_interval is 1 s: one write after the chunk is analysed.
        std::thread::sleep(Duration::from_millis(1500));
        i = j;
    }
    let n = |d: &Daemon| d.metric("chokepoint_spans_analysed_total");
    let total = n(&a) + n(&b);
    let mut got = serde_json::Value::Null;
    wait_until("the store to hold every span", || {
        got = query(&p, &["--window", "15m"]).0;
        got["spans"].as_u64() == Some(total)
    });
    let inv = got["capacity"]
        .as_array()
        .expect("capacity")
        .iter()
        .find(|c| c["node"] == "inventory")
        .cloned()
        .expect("inventory in the global capacity");
    let global_cap = inv["capacity_rps"].as_f64().expect("a global capacity");
    assert!(
        (global_cap / want_cap - 1.0).abs() <= 0.1,
        "global {global_cap} vs one node {want_cap}: {inv}"
    );
    assert_eq!(inv["limit"], "concurrency", "{inv}");
    let want_rate = want
        .capacity
        .iter()
        .find(|c| c.node == "inventory")
        .map(|c| c.rate_rps)
        .unwrap_or_default();
    let rate = inv["rate_rps"].as_f64().unwrap_or_default();
    assert!(
        (rate / want_rate - 1.0).abs() <= 0.1,
        "rate: global {rate} vs one node {want_rate}"
    );
    assert_eq!(got["first_to_saturate"]["node"], "inventory", "{got}");
}
