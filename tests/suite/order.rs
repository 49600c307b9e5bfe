//! Issue 25: replay's findings do not depend on the order of the file. The same spans in time
//! order, as per-process files concatenated in reverse, and shuffled by request give the same
//! findings, on the shop and on a real capture of our own (the Flask notes app, Python SDK).

use std::io::Read;
use std::path::{Path, PathBuf};

use chokepoint::analyze::engine::{Completion, Engine, EngineConfig};
use chokepoint::ingest::encode::encode_line;
use chokepoint::replay::analyze;
use chokepoint::simulate::{generate, Scenario, SimConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use super::root;

/// One span with the resource and scope it came under.
type Placed = (usize, usize, opentelemetry_proto::tonic::trace::v1::Span);

/// Every span of `reqs`, placed, with the resources and scopes they name.
fn flatten(
    reqs: &[ExportTraceServiceRequest],
) -> (Vec<ResourceSpans>, Vec<ScopeSpans>, Vec<Placed>) {
    let (mut resources, mut scopes, mut spans) = (Vec::new(), Vec::new(), Vec::new());
    for rs in reqs.iter().flat_map(|r| &r.resource_spans) {
        let r = resources.len();
        resources.push(ResourceSpans {
            scope_spans: vec![],
            ..rs.clone()
        });
        for ss in &rs.scope_spans {
            let s = scopes.len();
            scopes.push(ScopeSpans {
                spans: vec![],
                ..ss.clone()
            });
            spans.extend(ss.spans.iter().map(|sp| (r, s, sp.clone())));
        }
    }
    (resources, scopes, spans)
}

/// One request per run of spans under the same resource and scope.
fn requests(
    resources: &[ResourceSpans],
    scopes: &[ScopeSpans],
    spans: impl IntoIterator<Item = Placed>,
) -> Vec<ExportTraceServiceRequest> {
    let mut out: Vec<ExportTraceServiceRequest> = Vec::new();
    let mut last = None;
    for (r, s, sp) in spans {
        if last != Some((r, s)) {
            let mut rs = resources[r].clone();
            rs.scope_spans.push(scopes[s].clone());
            out.push(ExportTraceServiceRequest {
                resource_spans: vec![rs],
            });
            last = Some((r, s));
        }
        let req = out.last_mut().expect("pushed above");
        req.resource_spans[0].scope_spans[0].spans.push(sp);
    }
    out
}

fn service_of(rs: &ResourceSpans) -> String {
    rs.resource
        .iter()
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "service.name" || kv.key == "service.instance.id")
        .map(|kv| format!("{:?}", kv.value))
        .collect()
}

/// The three orders of the same spans, each written as OTLP/JSON lines.
fn three_orders(dir: &Path, reqs: &[ExportTraceServiceRequest]) -> [PathBuf; 3] {
    let (resources, scopes, mut spans) = flatten(reqs);
    spans.sort_by_key(|(_, _, s)| (s.end_time_unix_nano, s.span_id.clone()));
    let in_time = requests(&resources, &scopes, spans.clone());
    // Per process, as each process's own file would hold it; the files concatenated with
    // the last process first.
    let mut procs: Vec<String> = Vec::new();
    for (r, _, _) in &spans {
        let p = service_of(&resources[*r]);
        if !procs.contains(&p) {
            procs.push(p);
        }
    }
    let by_process = procs.iter().rev().flat_map(|p| {
        spans
            .iter()
            .filter(|(r, _, _)| &service_of(&resources[*r]) == p)
            .cloned()
            .collect::<Vec<_>>()
    });
    let reversed = requests(&resources, &scopes, by_process);
    // Each trace's spans one request, the requests in a shuffled order (a fixed seed).
    let mut traces: Vec<Vec<u8>> = spans.iter().map(|(_, _, s)| s.trace_id.clone()).collect();
    traces.sort();
    traces.dedup();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..traces.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        traces.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let shuffled = requests(
        &resources,
        &scopes,
        traces.iter().flat_map(|t| {
            spans
                .iter()
                .filter(|(_, _, s)| &s.trace_id == t)
                .cloned()
                .collect::<Vec<_>>()
        }),
    );
    let mut out = Vec::new();
    for (name, reqs) in [
        ("in-time", in_time),
        ("reversed-by-process", reversed),
        ("shuffled", shuffled),
    ] {
        let path = dir.join(format!("{name}.otlp.jsonl"));
        let text: String = reqs.iter().map(|r| encode_line(r) + "\n").collect();
        std::fs::write(&path, text).unwrap();
        out.push(path);
    }
    out.try_into().unwrap()
}

type Findings = Vec<(String, String, String, String)>;

/// (kind, node, severity, score) of every finding, the traces split into fragments, and
/// whether the file was read twice (not in time order).
fn findings(file: &Path, cfg: EngineConfig) -> (Findings, u64, bool) {
    let a = analyze(Engine::new(cfg), &[file.to_owned()], &[], &mut ());
    assert!(a.load.failed.is_empty(), "{:?}", a.load.failed);
    let whole = a.whole();
    let doc = a.findings_doc(&whole);
    let list = doc
        .findings
        .iter()
        .map(|f| {
            (
                f.kind.to_owned(),
                f.node.clone(),
                f.severity.to_owned(),
                format!("{:.6}", f.score),
            )
        })
        .collect();
    (list, whole.fragmented_traces, a.load.read_twice)
}

fn assert_order_independent(reqs: &[ExportTraceServiceRequest], expect: (&str, &str)) {
    let dir = tempfile::tempdir().unwrap();
    let [in_time, reversed, shuffled] = three_orders(dir.path(), reqs);
    let (want, fragments, twice) = findings(&in_time, EngineConfig::default());
    assert_eq!(fragments, 0);
    assert!(!twice, "a file in time order is read once");
    assert!(
        want.iter().any(|f| (f.0.as_str(), f.1.as_str()) == expect),
        "{expect:?} not found: {want:?}"
    );
    for file in [&reversed, &shuffled] {
        let (got, fragments, twice) = findings(file, EngineConfig::default());
        assert_eq!(got, want, "{}", file.display());
        assert_eq!(fragments, 0, "{}", file.display());
        // Shuffled by request, each trace's spans stay together: read once.
        assert_eq!(twice, file == &reversed, "{}: read twice", file.display());
        // Held to the end from the start: the same, read once.
        let end = EngineConfig {
            completion: Completion::AtEnd,
            ..Default::default()
        };
        let (got, _, twice) = findings(file, end);
        assert_eq!(got, want, "{} --completion end", file.display());
        assert!(!twice);
    }
    // Past the in-flight limits the spans go to disk, and still meet their traces.
    let mut small = EngineConfig::default();
    small.assembler.max_spans = 1_000;
    assert_eq!(findings(&reversed, small).0, want, "spilled");
    // The old way (complete after an idle time of span time) splits the traces of the
    // concatenated per-process files: what the default guards against.
    let idle = EngineConfig {
        completion: Completion::Idle,
        ..Default::default()
    };
    let (_, fragments, _) = findings(&reversed, idle);
    assert!(fragments > 0, "no trace split by the per-process order");
}

#[test]
fn the_shop_gives_the_same_findings_in_any_order() {
    let cfg = SimConfig {
        scenario: Scenario::SingleDb,
        traces: 1_500,
        ..Default::default()
    };
    let reqs: Vec<_> = generate(&cfg).collect();
    assert_order_independent(&reqs, ("spof", "orders (postgresql)"));
}

#[test]
fn a_real_capture_gives_the_same_findings_in_any_order() {
    // The Collector file exporter's framing: a 4-byte length before each request.
    let path = root().join("testdata/flask-notes-db-outage.otlp.pb.gz");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let mut reqs = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        reqs.push(ExportTraceServiceRequest::decode(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty());
    assert_order_independent(&reqs, ("spof", "notes (postgresql)"));
}

/// The spill as a user meets it: `replay` says how much went to disk and leaves nothing in
/// $TMPDIR; with a $TMPDIR it cannot write, it says so and still gives the findings (traces
/// past the limits are then completed early, as `--completion idle` would).
#[test]
fn replay_says_what_it_spilled_and_survives_a_temporary_directory_it_cannot_write() {
    let cfg = SimConfig {
        scenario: Scenario::SingleDb,
        traces: 600,
        ..Default::default()
    };
    let reqs: Vec<_> = generate(&cfg).collect();
    let dir = tempfile::tempdir().unwrap();
    let [_, reversed, _] = three_orders(dir.path(), &reqs);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let replay = |tmpdir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args(["replay", "--format", "json", "--max-spans-in-flight", "500"])
            .arg(&reversed)
            .env("TMPDIR", tmpdir)
            .output()
            .expect("run chokepoint");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let spof = doc["findings"].as_array().unwrap().iter().any(|f| {
            f["kind"] == "spof" && f["node"] == "orders (postgresql)" && f["severity"] != "low"
        });
        (spof, stderr)
    };
    let (spof, stderr) = replay(&tmp);
    assert!(spof, "{stderr}");
    assert!(stderr.contains("spans held on disk"), "{stderr}");
    assert!(stderr.contains("not in time order"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "spill left behind"
    );
    // Nowhere to spill: it still finishes, with findings, and says what it could not do.
    let (_, stderr) = replay(&dir.path().join("no-such-dir"));
    assert!(stderr.contains("cannot spill to disk"), "{stderr}");
}
