//! `chokepoint serve` end to end, over loopback, with real clients: the Rust
//! `opentelemetry-otlp` exporter (gRPC and HTTP/protobuf), raw HTTP for malformed input, and
//! (when .ci/run has installed them) the Python OpenTelemetry SDK and the rotel collector.
//! Every daemon listens on port 0; readiness is read from its "listening" line, and waits
//! poll the API until a condition holds, never a fixed sleep.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;

use chokepoint::simulate::{generate, Scenario, SimConfig};

use super::root;

mod api;
mod exporters;
mod guards;
mod state;
mod wire;

pub struct Daemon {
    child: Child,
    pub grpc: String,
    pub http: String,
    pub api: String,
    pub api_grpc: String,
    http_client: reqwest::blocking::Client,
}

impl Daemon {
    /// Starts `chokepoint serve` on free ports with fast timers, plus `args`.
    pub fn start(args: &[&str]) -> Daemon {
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
                "--refresh",
                "300ms",
                "--trace-idle",
                "1s",
            ])
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chokepoint serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let field = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .to_owned()
        };
        Daemon {
            grpc: field("otlp-grpc="),
            http: field("otlp-http="),
            api: field("api="),
            api_grpc: field("api-grpc="),
            child,
            http_client: tls_client(Some("ca.pem"), None),
        }
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let r = self
            .http_client
            .get(format!("{}{path}", self.api))
            .send()
            .expect("API request");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().expect("JSON")
    }

    pub fn text(&self, path: &str) -> String {
        self.http_client
            .get(format!("{}{path}", self.api))
            .send()
            .and_then(|r| r.text())
            .expect("API request")
    }

    pub fn metric(&self, name: &str) -> u64 {
        let text = self.text("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Polls `cond` until it holds (30 s at most).
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until everything received has been analysed, rejected or dropped.
    pub fn settle(&self) {
        self.wait_for("the pipeline to settle", |d| {
            d.metric("chokepoint_spans_in_flight") == 0
                && d.metric("chokepoint_pipeline_queue_depth") == 0
        });
    }

    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for chokepoint")
    }
}

/// A blocking HTTP client trusting only the test CA `ca` (under testdata/tls) and, for
/// mutual TLS, presenting `client` (a name under testdata/tls with .pem and .key).
pub fn tls_client(ca: Option<&str>, client: Option<&str>) -> reqwest::blocking::Client {
    let tls = root().join("testdata/tls");
    let mut b = reqwest::blocking::Client::builder().tls_built_in_root_certs(false);
    if let Some(ca) = ca {
        let pem = std::fs::read(tls.join(ca)).expect("test CA");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
    }
    if let Some(c) = client {
        let mut pem = std::fs::read(tls.join(format!("{c}.pem"))).expect("client cert");
        pem.extend(std::fs::read(tls.join(format!("{c}.key"))).expect("client key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
    }
    b.build().expect("HTTP client")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Shop traffic with current timestamps (the live windows are by wall clock).
pub fn shop(scenario: Scenario, traces: usize) -> Vec<ExportTraceServiceRequest> {
    let cfg = SimConfig {
        scenario,
        traces,
        rate_per_s: 200.0,
        start_unix_ns: now_ns() - 2_000_000_000,
        ..Default::default()
    };
    generate(&cfg).collect()
}

fn attr_value(v: &any_value::Value) -> Option<opentelemetry::Value> {
    Some(match v {
        any_value::Value::StringValue(s) => s.clone().into(),
        any_value::Value::IntValue(i) => (*i).into(),
        any_value::Value::BoolValue(b) => (*b).into(),
        any_value::Value::DoubleValue(d) => (*d).into(),
        _ => return None,
    })
}

/// Hands the SDK the ids of the span being re-created, so parent links survive the trip.
#[derive(Debug, Clone)]
struct PresetIds(std::sync::Arc<std::sync::Mutex<(TraceId, SpanId)>>);

impl opentelemetry_sdk::trace::IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        self.0.lock().unwrap().0
    }
    fn new_span_id(&self) -> SpanId {
        self.0.lock().unwrap().1
    }
}

/// Sends OTLP requests through the real Rust SDK and exporter: one tracer provider per
/// resource (service instance), every span re-created with its ids, times and attributes.
pub fn export_with_sdk(
    reqs: &[ExportTraceServiceRequest],
    exporter: impl Fn() -> opentelemetry_otlp::SpanExporter,
) {
    let mut providers: std::collections::BTreeMap<String, SdkTracerProvider> = Default::default();
    let ids = PresetIds(std::sync::Arc::new(std::sync::Mutex::new((
        TraceId::INVALID,
        SpanId::INVALID,
    ))));
    for req in reqs {
        for rs in &req.resource_spans {
            let attrs: Vec<KeyValue> = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|kv| {
                    let v = attr_value(kv.value.as_ref()?.value.as_ref()?)?;
                    Some(KeyValue::new(kv.key.clone(), v))
                })
                .collect();
            let key = format!("{attrs:?}");
            let provider = providers.entry(key).or_insert_with(|| {
                SdkTracerProvider::builder()
                    .with_resource(
                        Resource::builder_empty()
                            .with_attributes(attrs.clone())
                            .build(),
                    )
                    .with_batch_exporter(exporter())
                    .with_id_generator(ids.clone())
                    .build()
            });
            let tracer = provider.tracer("chokepoint-test");
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let trace_id = TraceId::from_bytes(s.trace_id.clone().try_into().unwrap());
                    let span_id = SpanId::from_bytes(s.span_id.clone().try_into().unwrap());
                    let parent = if s.parent_span_id.is_empty() {
                        Context::new()
                    } else {
                        let p = SpanId::from_bytes(s.parent_span_id.clone().try_into().unwrap());
                        Context::new().with_remote_span_context(SpanContext::new(
                            trace_id,
                            p,
                            TraceFlags::SAMPLED,
                            true,
                            TraceState::default(),
                        ))
                    };
                    let kind = match s.kind {
                        2 => SpanKind::Server,
                        3 => SpanKind::Client,
                        4 => SpanKind::Producer,
                        5 => SpanKind::Consumer,
                        _ => SpanKind::Internal,
                    };
                    let b = tracer
                        .span_builder(s.name.clone())
                        .with_kind(kind)
                        .with_start_time(UNIX_EPOCH + Duration::from_nanos(s.start_time_unix_nano))
                        .with_attributes(s.attributes.iter().filter_map(|kv| {
                            let v = attr_value(kv.value.as_ref()?.value.as_ref()?)?;
                            Some(KeyValue::new(kv.key.clone(), v))
                        }));
                    *ids.0.lock().unwrap() = (trace_id, span_id);
                    let mut span = tracer.build_with_context(b, &parent);
                    if s.status.as_ref().is_some_and(|st| st.code == 2) {
                        span.set_status(Status::error("failed"));
                    }
                    span.end_with_timestamp(
                        UNIX_EPOCH + Duration::from_nanos(s.end_time_unix_nano),
                    );
                }
            }
        }
    }
    for p in providers.values() {
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    }
}

pub fn top<'a>(doc: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    doc["findings"]
        .as_array()?
        .iter()
        .find(|f| f["kind"] == kind)
}

/// The Python SDK and rotel, installed by .ci/run into a venv named by CHOKEPOINT_TEST_PYTHON.
pub fn python() -> Option<String> {
    match std::env::var("CHOKEPOINT_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CHOKEPOINT_TEST_PYTHON is not set and CI is: a test that did not run is not green"
            );
            eprintln!("NOT RUN: CHOKEPOINT_TEST_PYTHON is not set (.ci/run sets it up)");
            None
        }
    }
}

pub fn run_python_export(py: &str, args: &[String]) {
    let out = Command::new(py)
        .arg(root().join("tests/python/export_traces.py"))
        .args(args)
        // requests lets these override the session's CA bundle, so the HTTP exporter's
        // certificate_file would silently lose to the system bundle where they are set.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run the Python exporter");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn python_graph_ok(d: &Daemon) -> bool {
    let g = d.get("/graph");
    let edges = g["edges"].as_array().cloned().unwrap_or_default();
    edges
        .iter()
        .any(|e| e["from"] == "py-frontend" && e["to"] == "py-catalog")
        && edges
            .iter()
            .any(|e| e["from"] == "py-catalog" && e["to"] == "catalog (postgresql)")
}

fn post(
    d: &Daemon,
    ctype: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", d.http))
        .header("content-type", ctype)
        .body(body);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    r.send().expect("POST /v1/traces")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}
