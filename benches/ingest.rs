//! End-to-end ingest over loopback OTLP/gRPC: the real daemon (release build, analysis on)
//! receiving the simulated shop from several concurrent exporters. Reports spans/s, export
//! latency percentiles and the daemon's peak RSS. Not criterion: one long run is the figure.
//!
//! Run: `cargo bench --bench ingest` (env INGEST_EXPORTERS, INGEST_TRACES to vary;
//! INGEST_POLL_DASHBOARD=1 keeps the dashboard open meanwhile: every second it fetches what
//! the page fetches, and holds the event stream open).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use chokepoint::ingest::batch::span_count;
use chokepoint::simulate::{generate, Scenario, SimConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let exporters = env("INGEST_EXPORTERS", 4);
    let traces = env("INGEST_TRACES", 40_000);
    let per_request = 50;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--api-grpc-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let grpc = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("otlp-grpc="))
        .expect("listening line")
        .to_owned();
    let api = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .expect("listening line")
        .to_owned();
    let polling = env("INGEST_POLL_DASHBOARD", 0) > 0;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = polling.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || dashboard(&api, &stop))
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cfg = SimConfig {
        scenario: Scenario::Healthy,
        traces,
        rate_per_s: 2000.0,
        start_unix_ns: now - 30_000_000_000,
        ..Default::default()
    };
    let all: Vec<ExportTraceServiceRequest> = generate(&cfg).collect();
    let requests: Vec<ExportTraceServiceRequest> = all
        .chunks(per_request)
        .map(|c| ExportTraceServiceRequest {
            resource_spans: c.iter().flat_map(|r| r.resource_spans.clone()).collect(),
        })
        .collect();
    let spans: u64 = requests.iter().map(|r| span_count(&r.resource_spans)).sum();
    let cpu_before = cpu_s(child.id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (elapsed, mut lat, retries) = rt.block_on(async {
        let mut shards: Vec<Vec<ExportTraceServiceRequest>> = vec![Vec::new(); exporters];
        for (i, r) in requests.into_iter().enumerate() {
            shards[i % exporters].push(r);
        }
        let start = Instant::now();
        let tasks: Vec<_> = shards
            .into_iter()
            .map(|shard| {
                let grpc = grpc.clone();
                tokio::spawn(async move {
                    let mut c = TraceServiceClient::connect(format!("http://{grpc}"))
                        .await
                        .unwrap()
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20);
                    let mut lat = Vec::new();
                    let mut retries = 0u64;
                    for r in shard {
                        let t = Instant::now();
                        match c.export(r).await {
                            Ok(_) => lat.push(t.elapsed()),
                            // Counted, not resent: keeping a copy of every request for a
                            // retry would cost the client as much as the daemon's decode.
                            Err(s) if s.code() == tonic::Code::Unavailable => {
                                retries += 1;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(s) => panic!("export failed: {s}"),
                        }
                    }
                    (lat, retries)
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut retries = 0;
        for t in tasks {
            let (l, r) = t.await.unwrap();
            lat.extend(l);
            retries += r;
        }
        (start.elapsed(), lat, retries)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls = poller.map_or(0, |p| p.join().unwrap_or(0));
    let pid = child.id();
    let daemon_cpu = cpu_s(pid) - cpu_before;
    let (hwm, rss) = (rss_kb(pid, "VmHWM:"), rss_kb(pid, "VmRSS:"));
    let _ = child.kill();
    let _ = child.wait();
    lat.sort();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "exporters: {exporters}, requests answered: {}, traces: {traces}, spans: {spans}",
        lat.len()
    );
    println!(
        "throughput: {:.0} spans/s ({:.2} s)",
        spans as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "export latency ms: p50 {:.2}, p99 {:.2}, max {:.2}",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    println!("retryable refusals: {retries}");
    if polling {
        println!("dashboard: open, {polls} page refreshes (every second) during the run");
    }
    println!(
        "daemon CPU: {daemon_cpu:.2} s over {:.2} s wall ({:.0}% of one core)",
        elapsed.as_secs_f64(),
        daemon_cpu / elapsed.as_secs_f64() * 100.0
    );
    println!(
        "daemon RSS: peak {} MiB, at end {} MiB",
        hwm / 1024,
        rss / 1024
    );
}

/// What an open dashboard does: the event stream held open, and every second the requests
/// a page refresh and an open node panel make. Returns the refreshes made.
fn dashboard(api: &str, stop: &std::sync::atomic::AtomicBool) -> usize {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let _events = http.get(format!("{api}/events")).send();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        for path in ["/graph", "/findings", "/operations", "/findings/history"] {
            let _ = http
                .get(format!("{api}{path}"))
                .send()
                .and_then(|r| r.bytes());
        }
        let id = http
            .get(format!("{api}/nodes"))
            .send()
            .and_then(|r| r.json::<serde_json::Value>())
            .ok()
            .and_then(|v| v[0]["id"].as_str().map(str::to_owned));
        if let Some(id) = id {
            for path in [format!("/nodes/{id}"), format!("/series/nodes/{id}")] {
                let _ = http
                    .get(format!("{api}{path}"))
                    .send()
                    .and_then(|r| r.bytes());
            }
        }
        n += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    n
}
