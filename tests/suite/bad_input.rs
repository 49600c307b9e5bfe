//! Bad input, one case a test: each gets a clear message naming the file and line (or span),
//! the good data beside it still counts, and nothing panics.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use flate2::write::GzEncoder;

use super::graph_of;

const GOOD_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// One OTLP/JSON span (a one-span trace of `svc`), with overridable fields.
fn span(trace: &str, id: &str, parent: &str, start: u64, end: u64) -> String {
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"op","kind":2,"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"}}"#
    )
}

fn line(svc: &str, spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn good(svc: &str, n: u8) -> String {
    let trace = format!("{:0>32x}", 0x1000 + u32::from(n));
    line(svc, &[span(&trace, "b7ad6b7169203331", "", 1_000, 2_000)])
}

fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    fs::write(&p, content).unwrap();
    p
}

fn problems_text(load: &chokepoint::replay::LoadSummary) -> String {
    load.problems.join("\n")
}

#[test]
fn malformed_line_is_named_and_its_neighbours_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n{{\"resourceSpans\": [oops\n{}\n",
        good("a", 1),
        good("b", 2)
    );
    let p = write(&dir, "lines.jsonl", text.as_bytes());
    let (doc, load) = graph_of(std::slice::from_ref(&p));
    let msg = problems_text(&load);
    assert!(
        msg.contains(&format!("{}: line 2: malformed JSON", p.display())),
        "{msg}"
    );
    assert_eq!(doc.traces, 2, "lines 1 and 3 still count");
}

#[test]
fn broken_first_line_of_json_lines_still_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{{garbage\n{}\n{}\n", good("a", 1), good("b", 2));
    let p = write(&dir, "first.jsonl", text.as_bytes());
    let (doc, load) = graph_of(&[p]);
    assert!(problems_text(&load).contains("line 1: malformed JSON"));
    assert_eq!(doc.traces, 2);
}

#[test]
fn id_of_the_wrong_length_rejects_that_span_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bad = span(
        "0af7651916cd43dd8448eb211c8031",
        "b7ad6b7169203331",
        "",
        1,
        2,
    );
    let ok = span(GOOD_TRACE, "b7ad6b7169203332", "", 1, 2);
    let p = write(&dir, "ids.json", line("svc", &[bad, ok]).as_bytes());
    let (doc, load) = graph_of(std::slice::from_ref(&p));
    let msg = problems_text(&load);
    assert!(msg.contains("trace id has 15 bytes, want 16"), "{msg}");
    assert!(
        msg.contains("span b7ad6b7169203331"),
        "the span is named: {msg}"
    );
    assert!(msg.contains(&p.display().to_string()));
    assert_eq!((load.spans_rejected, doc.spans), (1, 1));
    let short_span = span(GOOD_TRACE, "b7ad6b71", "", 1, 2);
    let p = write(&dir, "ids2.json", line("svc", &[short_span]).as_bytes());
    let (_, load) = graph_of(&[p]);
    assert!(problems_text(&load).contains("span id has 4 bytes, want 8"));
}

#[test]
fn end_before_start_is_rejected_with_both_times() {
    let dir = tempfile::tempdir().unwrap();
    let bad = span(GOOD_TRACE, "b7ad6b7169203331", "", 2_000, 1_000);
    let ok = span(GOOD_TRACE, "b7ad6b7169203332", "", 1_000, 2_000);
    let p = write(&dir, "time.json", line("svc", &[bad, ok]).as_bytes());
    let (doc, load) = graph_of(&[p]);
    let msg = problems_text(&load);
    assert!(
        msg.contains("ends before it starts (start 2000 ns, end 1000 ns)"),
        "{msg}"
    );
    assert_eq!(doc.spans, 1);
}

#[test]
fn span_that_is_its_own_parent_becomes_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let selfish = span(GOOD_TRACE, "b7ad6b7169203331", "b7ad6b7169203331", 1, 5);
    let p = write(&dir, "self.json", line("svc", &[selfish]).as_bytes());
    let (doc, load) = graph_of(&[p]);
    let msg = problems_text(&load);
    assert!(
        msg.contains("span b7ad6b7169203331): span is its own parent"),
        "{msg}"
    );
    assert_eq!((doc.spans, load.spans_rejected), (1, 0));
    assert_eq!(doc.node("svc").unwrap().requests, 1);
}

#[test]
fn parent_cycle_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = span(GOOD_TRACE, "000000000000000a", "000000000000000b", 1, 10);
    let b = span(GOOD_TRACE, "000000000000000b", "000000000000000a", 2, 5);
    let c = span(GOOD_TRACE, "000000000000000c", "000000000000000a", 3, 4);
    let p = write(&dir, "cycle.json", line("svc", &[a, b, c]).as_bytes());
    let (doc, load) = graph_of(&[p]);
    let msg = problems_text(&load);
    assert!(msg.contains(&format!("trace {GOOD_TRACE}")), "{msg}");
    assert!(msg.contains("parent chain forms a cycle"), "{msg}");
    assert_eq!(doc.spans, 3, "all three spans still count");
}

#[test]
fn duplicate_span_ids_keep_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = span(GOOD_TRACE, "000000000000000a", "", 1, 10);
    let dup = span(GOOD_TRACE, "000000000000000a", "", 1, 12);
    let p = write(&dir, "dup.json", line("svc", &[a, dup]).as_bytes());
    let (doc, load) = graph_of(&[p]);
    assert!(
        problems_text(&load).contains("span 000000000000000a: span id repeats"),
        "{}",
        problems_text(&load)
    );
    assert_eq!(doc.spans, 1);
}

#[test]
fn unknown_format_names_the_file_and_other_files_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(&dir, "junk.bin", b"\x89PNG\r\n\x1a\n....");
    let ok = write(&dir, "ok.jsonl", good("a", 1).as_bytes());
    let (doc, load) = graph_of(&[junk.clone(), ok]);
    assert_eq!(load.failed.len(), 1);
    let msg = load.failed[0].to_string();
    assert!(msg.starts_with(&junk.display().to_string()), "{msg}");
    assert!(msg.contains("unknown format"), "{msg}");
    assert_eq!(doc.traces, 1);
}

#[test]
fn truncated_gzip_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for n in 0..200u8 {
        text.push_str(&good(&format!("svc{}", n % 3), n));
        text.push('\n');
    }
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let p = write(&dir, "cut.jsonl.gz", &gz[..gz.len() * 2 / 3]);
    let (doc, load) = graph_of(std::slice::from_ref(&p));
    let msg = problems_text(&load);
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("read stopped"),
        "{msg}"
    );
    assert!(
        doc.traces > 50 && doc.traces < 200,
        "{} traces before the cut",
        doc.traces
    );
}

#[test]
fn framed_protobuf_skips_a_corrupt_message() {
    use chokepoint::simulate::{generate, SimConfig};
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    let cfg = SimConfig {
        traces: 3,
        ..Default::default()
    };
    for (i, req) in generate(&cfg).enumerate() {
        let mut msg = req.encode_to_vec();
        if i == 1 {
            msg.iter_mut().take(8).for_each(|b| *b = 0xff);
        }
        bytes.extend((msg.len() as u32).to_be_bytes());
        bytes.extend(msg);
    }
    let p = write(&dir, "framed.pb", &bytes);
    let (doc, load) = graph_of(&[p]);
    assert!(problems_text(&load).contains("message 2: invalid protobuf"));
    assert_eq!(doc.traces, 2);
}
