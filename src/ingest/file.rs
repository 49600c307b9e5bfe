//! Trace files for replay: the format is detected from the content, gzip is transparent.
//!
//! | first bytes (after gunzip) | format |
//! |---|---|
//! | `{` on a line that is a whole JSON value | JSON lines: one document a line (the Collector's file exporter) |
//! | `{` otherwise | one JSON document: OTLP `resourceSpans`, Tempo `batches` or Jaeger `data` |
//! | `[` | Zipkin v2 span array |
//! | `0x0a` | one serialized OTLP `ExportTraceServiceRequest` |
//! | `0x00` | the Collector file exporter's proto format: 4-byte big-endian length, message, … |
//!
//! A malformed line or message is reported with its position and skipped; the rest of the
//! file still counts. Only an unreadable or unrecognisable file is an error for the whole file.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;

use super::batch::{Batch, WireBatch};
use super::{jaeger, otlp_json, zipkin};
use crate::model::problem::BatchReport;

/// Largest single framed protobuf message accepted from a file; a length prefix past this is
/// taken as corruption rather than an allocation request.
const MAX_FRAME: usize = 256 << 20;

/// The detected file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OtlpJsonLines,
    JsonDocument,
    Zipkin,
    OtlpProto,
    OtlpProtoFramed,
    Empty,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OtlpJsonLines => "JSON lines",
            Format::JsonDocument => "JSON document",
            Format::Zipkin => "Zipkin v2 JSON",
            Format::OtlpProto => "OTLP protobuf",
            Format::OtlpProtoFramed => "OTLP protobuf (length-framed)",
            Format::Empty => "empty",
        })
    }
}

/// Where in a file a batch (or a problem) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSON lines file.
    Line(u64),
    /// 1-based message of a framed protobuf file.
    Message(u64),
    /// The file is one document.
    Document,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Message(n) => write!(f, "message {n}"),
            Location::Document => f.write_str("document"),
        }
    }
}

/// A whole-file failure: nothing (more) could be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: unknown format (first bytes {head:02x?}); expected OTLP JSON or protobuf, Jaeger JSON or Zipkin v2 JSON")]
    UnknownFormat { path: PathBuf, head: Vec<u8> },
    #[error("{path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: the file is empty (no trace data in it)")]
    Empty { path: PathBuf },
}

/// A problem in part of a file; the rest was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub location: Location,
    pub message: String,
}

/// What reading one file gave.
#[derive(Debug)]
pub struct FileSummary {
    pub path: PathBuf,
    pub format: Format,
    pub batches: u64,
    /// Problems with lines, messages or the stream (truncation), in file order; the first
    /// [`FileSummary::MAX_PROBLEMS`] are kept.
    pub problems: Vec<FileProblem>,
    pub problem_count: u64,
}

impl FileSummary {
    pub const MAX_PROBLEMS: usize = 50;

    fn problem(&mut self, location: Location, message: String) {
        self.problem_count += 1;
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(FileProblem { location, message });
        }
    }
}

/// Receives each batch a file yields: where it came from, the OTLP spans, and the spans that
/// were already rejected while decoding (bad ids in JSON, say).
pub trait BatchSink {
    fn batch(&mut self, location: Location, spans: Batch, report: BatchReport);
}

impl<F: FnMut(Location, Batch, BatchReport)> BatchSink for F {
    fn batch(&mut self, location: Location, spans: Batch, report: BatchReport) {
        self(location, spans, report)
    }
}

/// Any JSON document chokepoint reads, by its top-level keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyJson {
    #[serde(default)]
    resource_spans: Vec<otlp_json::JsonResourceSpans>,
    #[serde(default)]
    batches: Vec<otlp_json::JsonResourceSpans>,
    #[serde(default)]
    data: Vec<jaeger::JaegerTrace>,
}

impl AnyJson {
    fn emit(self, location: Location, sink: &mut dyn BatchSink) -> Result<(), String> {
        if self.resource_spans.is_empty() && self.batches.is_empty() && self.data.is_empty() {
            return Err("JSON has no resourceSpans, batches or data (keys must be \
                        lowerCamelCase, as OTLP/JSON requires)"
                .into());
        }
        let mut report = BatchReport::default();
        let otlp = otlp_json::JsonDocument {
            resource_spans: self.resource_spans,
            batches: self.batches,
        };
        let mut spans = otlp_json::to_proto(&otlp, &mut report);
        spans.extend(jaeger::to_proto(&jaeger::JaegerDocument {
            data: self.data,
        }));
        sink.batch(location, spans.into(), report);
        Ok(())
    }
}

/// Counts the raw (still compressed) bytes read, for progress display.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Opens a file, gunzipping if it starts with the gzip magic.
fn open(path: &Path, count: Rc<Cell<u64>>) -> Result<Box<dyn BufRead>, FileError> {
    let file = File::open(path).map_err(|source| FileError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut raw = BufReader::with_capacity(1 << 16, Counting { inner: file, count });
    let head = raw.fill_buf().map_err(|source| FileError::Open {
        path: path.to_owned(),
        source,
    })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(raw),
        )))
    } else {
        Ok(Box::new(raw))
    }
}

fn sniff(path: &Path, r: &mut dyn BufRead) -> Result<Format, FileError> {
    let unreadable = |e: io::Error| FileError::Unreadable {
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    };
    loop {
        let buf = r.fill_buf().map_err(unreadable)?;
        if buf.is_empty() {
            return Ok(Format::Empty);
        }
        // A serialized ExportTraceServiceRequest starts with 0x0a (field 1, length-delimited),
        // which is also '\n': it is protobuf unless JSON follows the whitespace. A first
        // ResourceSpans of 91 or 123 bytes puts a '[' or '{' there too, so the head must
        // also read as text: JSON holds no raw control characters, protobuf's tags and
        // lengths soon do.
        if buf[0] == 0x0a {
            let next = buf.iter().find(|b| !b.is_ascii_whitespace());
            let text = buf
                .iter()
                .take(256)
                .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r'));
            if !matches!(next, Some(b'{' | b'[') | None) || !text {
                return Ok(Format::OtlpProto);
            }
        }
        // Skip whitespace and a UTF-8 byte-order mark before JSON.
        let skip = buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || matches!(b, 0xef | 0xbb | 0xbf))
            .count();
        if skip == 0 {
            return match buf[0] {
                b'{' => Ok(Format::JsonDocument),
                b'[' => Ok(Format::Zipkin),
                0x0a => Ok(Format::OtlpProto),
                0x00 => Ok(Format::OtlpProtoFramed),
                _ => Err(FileError::UnknownFormat {
                    path: path.to_owned(),
                    head: buf.iter().take(8).copied().collect(),
                }),
            };
        }
        r.consume(skip);
    }
}

/// Reads `path`, handing every batch to `sink`. Good data before and after a bad part is
/// delivered; the bad parts are listed in the summary.
pub fn read_path(path: &Path, sink: &mut dyn BatchSink) -> Result<FileSummary, FileError> {
    read_path_counted(path, sink, Rc::default())
}

/// [`read_path`], adding the raw bytes read so far to `count` as it goes.
pub fn read_path_counted(
    path: &Path,
    sink: &mut dyn BatchSink,
    count: Rc<Cell<u64>>,
) -> Result<FileSummary, FileError> {
    let r = open(path, count)?;
    read_from(path, r, sink)
}

/// Reads trace data already in memory (`label` names it in problems), exactly as a file
/// would be read: format detected from the content, gzip transparent. For fuzzing and tests.
pub fn read_bytes(label: &Path, bytes: &[u8], sink: &mut dyn BatchSink) -> FileSummary {
    let raw: Box<dyn BufRead + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(bytes)))
    } else {
        Box::new(bytes)
    };
    read_from(label, raw, sink).unwrap_or_else(|e| FileSummary {
        path: label.to_owned(),
        format: Format::Empty,
        batches: 0,
        problems: vec![FileProblem {
            location: Location::Document,
            message: e.to_string(),
        }],
        problem_count: 1,
    })
}

fn read_from(
    path: &Path,
    mut r: Box<dyn BufRead + '_>,
    sink: &mut dyn BatchSink,
) -> Result<FileSummary, FileError> {
    let format = sniff(path, &mut *r)?;
    let mut summary = FileSummary {
        path: path.to_owned(),
        format,
        batches: 0,
        problems: Vec::new(),
        problem_count: 0,
    };
    match format {
        Format::Empty => {
            return Err(FileError::Empty {
                path: path.to_owned(),
            })
        }
        Format::JsonDocument | Format::OtlpJsonLines => read_json(&mut *r, sink, &mut summary)?,
        Format::Zipkin => {
            let text = read_all(path, &mut *r, &mut summary);
            match serde_json::from_slice::<Vec<zipkin::ZipkinSpan>>(&text) {
                Ok(spans) => {
                    summary.batches += 1;
                    sink.batch(
                        Location::Document,
                        zipkin::to_proto(spans).into(),
                        BatchReport::default(),
                    );
                }
                Err(e) => {
                    summary.problem(Location::Document, format!("malformed Zipkin JSON: {e}"))
                }
            }
        }
        Format::OtlpProto => {
            // Sized once from the file (a lower bound when gzipped): a 200 MB capture grown by
            // doubling costs twice its size in page zeroing and copies.
            let hint = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
            let bytes = read_all_sized(path, &mut *r, &mut summary, hint);
            match WireBatch::new(bytes.into()) {
                Ok(wire) => {
                    summary.batches += 1;
                    for part in wire.split(SPLIT_SPANS) {
                        sink.batch(
                            Location::Document,
                            Batch::Wire(part),
                            BatchReport::default(),
                        );
                    }
                }
                Err(e) => summary.problem(
                    Location::Document,
                    format!("not a valid OTLP ExportTraceServiceRequest: {e}"),
                ),
            }
        }
        Format::OtlpProtoFramed => read_framed(&mut *r, sink, &mut summary),
    }
    Ok(summary)
}

/// Reads the rest of the stream; a read error (a truncated gzip stream, say) is recorded and
/// what was read before it is returned.
/// A document over [`MAX_DOCUMENT`] is refused whole (its parse would need several times
/// that in memory).
fn read_all(path: &Path, r: &mut dyn BufRead, summary: &mut FileSummary) -> Vec<u8> {
    read_all_sized(path, r, summary, 0)
}

/// [`read_all`] into a buffer first sized for `hint` bytes (at most [`MAX_DOCUMENT`]).
fn read_all_sized(
    path: &Path,
    r: &mut dyn BufRead,
    summary: &mut FileSummary,
    hint: usize,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(hint.min(MAX_DOCUMENT + 1));
    match read_to_end_bounded(r, &mut buf) {
        Ok(true) => {}
        Ok(false) => {
            summary.problem(Location::Document, too_big("the document"));
            return Vec::new();
        }
        Err(e) => summary.problem(
            Location::Document,
            format!("{}: read stopped: {e}", path.display()),
        ),
    }
    buf
}

/// Spans per piece a whole-capture protobuf message is read in (see [`WireBatch::split`]).
const SPLIT_SPANS: u64 = 8192;

/// The most one JSON document or line, or one protobuf message, may hold.
#[cfg(not(test))]
pub const MAX_DOCUMENT: usize = 256 << 20;
/// Small in unit tests, so the limit's handling is tested without a 256 MiB file.
#[cfg(test)]
pub const MAX_DOCUMENT: usize = 4 << 10;

fn too_big(what: &str) -> String {
    let limit = if MAX_DOCUMENT >= 1 << 20 {
        format!("{} MiB", MAX_DOCUMENT >> 20)
    } else {
        format!("{} KiB", MAX_DOCUMENT >> 10)
    };
    format!(
        "{what} is over {limit}, the most read at once; skipped (split it: one OTLP \
         request or Jaeger trace per line is read line by line)"
    )
}

/// Appends the rest of `r` to `buf` unless that would pass [`MAX_DOCUMENT`]: then returns
/// `Ok(false)` having read (and dropped) the rest.
fn read_to_end_bounded(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    let room = MAX_DOCUMENT.saturating_sub(buf.len()) as u64;
    r.take(room + 1).read_to_end(buf)?;
    if buf.len() <= MAX_DOCUMENT {
        return Ok(true);
    }
    buf.clear();
    buf.shrink_to_fit();
    io::copy(r, &mut io::sink())?;
    Ok(false)
}

fn read_framed(r: &mut dyn BufRead, sink: &mut dyn BatchSink, summary: &mut FileSummary) {
    let mut n = 0u64;
    loop {
        let mut len = [0u8; 4];
        match read_exact_or_eof(r, &mut len) {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => {
                summary.problem(Location::Message(n + 1), format!("read stopped: {e}"));
                return;
            }
        }
        n += 1;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            summary.problem(
                Location::Message(n),
                format!("frame length {len} exceeds {MAX_FRAME} bytes; rest of file skipped"),
            );
            return;
        }
        let mut msg = vec![0u8; len];
        if let Err(e) = r.read_exact(&mut msg) {
            summary.problem(Location::Message(n), format!("truncated message: {e}"));
            return;
        }
        match WireBatch::new(msg.into()) {
            Ok(wire) => {
                summary.batches += 1;
                sink.batch(
                    Location::Message(n),
                    Batch::Wire(wire),
                    BatchReport::default(),
                );
            }
            Err(e) => summary.problem(Location::Message(n), format!("invalid protobuf: {e}")),
        }
    }
}

/// Fills `buf`, or returns `Ok(false)` at a clean end of stream before the first byte.
fn read_exact_or_eof(r: &mut dyn BufRead, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// JSON: one document, or one document per line. The first line decides: if it is a whole
/// JSON value, the file is JSON lines.
fn read_json(
    r: &mut dyn BufRead,
    sink: &mut dyn BatchSink,
    summary: &mut FileSummary,
) -> Result<(), FileError> {
    let mut first = String::new();
    let mut line_no = 1u64;
    let first_fits = match read_line(r, &mut first) {
        Ok(Line::Read(_)) => true,
        Ok(Line::TooLong) => false,
        Err(e) => {
            summary.problem(Location::Line(1), format!("read stopped: {e}"));
            return Ok(());
        }
    };
    if !first_fits || serde_json::from_str::<serde::de::IgnoredAny>(&first).is_ok() {
        summary.format = Format::OtlpJsonLines;
        let mut line = first;
        let mut fits = first_fits;
        loop {
            if fits {
                json_line(&line, line_no, sink, summary);
            } else {
                summary.problem(Location::Line(line_no), too_big("the line"));
            }
            line.clear();
            match read_line(r, &mut line) {
                Ok(Line::Read(0)) => return Ok(()),
                Ok(Line::Read(_)) => fits = true,
                Ok(Line::TooLong) => fits = false,
                Err(e) => {
                    summary.problem(Location::Line(line_no + 1), format!("read stopped: {e}"));
                    return Ok(());
                }
            }
            line_no += 1;
        }
    }
    // One document spread over lines.
    let mut text = first.into_bytes();
    match read_to_end_bounded(r, &mut text) {
        Ok(true) => {}
        Ok(false) => {
            summary.problem(Location::Document, too_big("the document"));
            return Ok(());
        }
        Err(e) => summary.problem(Location::Document, format!("read stopped: {e}")),
    }
    match serde_json::from_slice::<AnyJson>(&text) {
        Ok(doc) => {
            summary.batches += 1;
            if let Err(m) = doc.emit(Location::Document, sink) {
                summary.problem(Location::Document, m);
            }
        }
        Err(e) => {
            // A JSON lines file whose first line is broken still has good lines after it.
            let text = String::from_utf8_lossy(&text);
            let mut lines = text.lines();
            let second_ok = lines
                .nth(1)
                .is_some_and(|l| serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok());
            if second_ok {
                summary.format = Format::OtlpJsonLines;
                for (i, l) in text.lines().enumerate() {
                    json_line(l, i as u64 + 1, sink, summary);
                }
            } else {
                summary.problem(Location::Document, format!("malformed JSON: {e}"));
            }
        }
    }
    Ok(())
}

fn json_line(line: &str, line_no: u64, sink: &mut dyn BatchSink, summary: &mut FileSummary) {
    if line.trim().is_empty() {
        return;
    }
    match serde_json::from_str::<AnyJson>(line) {
        Ok(doc) => {
            summary.batches += 1;
            if let Err(m) = doc.emit(Location::Line(line_no), sink) {
                summary.problem(Location::Line(line_no), m);
            }
        }
        Err(e) => summary.problem(Location::Line(line_no), format!("malformed JSON: {e}")),
    }
}

/// A line read, or one too long to keep (read past, not kept).
enum Line {
    Read(usize),
    TooLong,
}

/// `read_line` that keeps at most [`MAX_DOCUMENT`] bytes of a line (the rest of a longer
/// one is read past, not held) and turns invalid UTF-8 into replacement characters (the
/// JSON parse then reports that line alone).
fn read_line(r: &mut dyn BufRead, out: &mut String) -> io::Result<Line> {
    let mut bytes = Vec::new();
    let n = r
        .take(MAX_DOCUMENT as u64 + 1)
        .read_until(b'\n', &mut bytes)?;
    if n > MAX_DOCUMENT && !bytes.ends_with(b"\n") {
        drop(bytes);
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let k = r.take(1 << 20).read_until(b'\n', &mut rest)?;
            if k == 0 || rest.ends_with(b"\n") {
                return Ok(Line::TooLong);
            }
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(&bytes)),
    }
    Ok(Line::Read(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (FileSummary, usize) {
        let mut batches = 0;
        let mut sink = |_: Location, _: Batch, _: BatchReport| batches += 1;
        let s = read_bytes(Path::new("t"), bytes, &mut sink);
        (s, batches)
    }

    const LINE: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;

    #[test]
    fn a_line_over_the_limit_is_skipped_and_said_and_the_lines_around_it_are_read() {
        let long = format!("{}{}", LINE, " ".repeat(MAX_DOCUMENT));
        for text in [
            format!("{LINE}\n{long}\n{LINE}\n"),
            format!("{long}\n{LINE}\n{LINE}"),
        ] {
            let (s, batches) = read(text.as_bytes());
            assert_eq!(batches, 2, "{:?}", s.problems);
            assert_eq!(s.problems.len(), 1);
            assert!(
                s.problems[0].message.contains("is over"),
                "{:?}",
                s.problems
            );
        }
    }

    #[test]
    fn a_document_over_the_limit_is_refused_not_read_whole() {
        let doc = format!(
            "{{\n\"resourceSpans\": [],\n\"x\": \"{}\"}}",
            "a".repeat(MAX_DOCUMENT)
        );
        let (s, batches) = read(doc.as_bytes());
        assert_eq!(batches, 0);
        assert!(s.problems[0].message.contains("over"), "{:?}", s.problems);
        let zipkin = format!("[{}]", "{},".repeat(MAX_DOCUMENT));
        let (s, _) = read(zipkin.as_bytes());
        assert!(s.problems[0].message.contains("over"), "{:?}", s.problems);
    }

    #[test]
    fn an_empty_file_is_an_error_that_says_so() {
        for bytes in [&b""[..], b"  \n\n"] {
            let (s, _) = read(bytes);
            assert!(s.problems[0].message.contains("empty"), "{:?}", s.problems);
        }
    }

    /// The hostile round: protobuf whose first `ResourceSpans` is 91 or 123 bytes long starts
    /// `0a 5b` or `0a 7b`, "\n[" or "\n{", and was read as JSON (and refused).
    #[test]
    fn protobuf_whose_first_length_is_a_bracket_is_still_protobuf() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use prost::Message;
        for want in [91usize, 123] {
            let rs = (0..200)
                .map(|k| ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            name: "x".repeat(k),
                            kind: 2,
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_100_000_000,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .find(|rs| rs.encoded_len() == want)
                .unwrap();
            let bytes = ExportTraceServiceRequest {
                resource_spans: vec![rs],
            }
            .encode_to_vec();
            assert_eq!(bytes[1], want as u8);
            let (s, batches) = read(&bytes);
            assert_eq!((batches, s.problems.len()), (1, 0), "{:?}", s.problems);
        }
    }
}
