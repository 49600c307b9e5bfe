//! The invariants the fuzz targets (`fuzz/`, `cargo +nightly fuzz`) and the stable property
//! tests check, in one place, so both check the same thing.

use crate::analyze::critical_path::{critical_path, CriticalPathConfig};
use crate::analyze::engine::{Engine, EngineConfig};
use crate::analyze::tree::Trace;
use crate::ingest::batch::{Batch, WireBatch};
use crate::ingest::Normalizer;
use crate::model::problem::BatchReport;
use crate::model::{Span, SpanId, SpanKind, Sym, TraceId};
use crate::report::finding::Context;
use crate::report::findings::compute;

/// Feeds batches through the whole offline pipeline (normalize, assemble, analyze, resolve,
/// score) and checks the books: every span seen is accepted or rejected, and every accepted
/// span is analysed or counted as dropped.
pub fn check_engine(batches: &[Batch]) -> Result<(), String> {
    let mut e = Engine::new(EngineConfig::default());
    let mut seen = 0;
    for b in batches {
        let mut r = BatchReport::default();
        e.ingest_batch(b, &mut r);
        if r.accepted + r.rejected != r.seen {
            return Err(format!(
                "accepted {} + rejected {} != seen {}",
                r.accepted, r.rejected, r.seen
            ));
        }
        seen += r.accepted;
    }
    e.finish();
    let w = e.windows();
    let dropped = e.assembler_stats().spans_dropped_trace_full
        + w.spans_dropped_old
        + w.spans_dropped_future
        + e.issues().spans_duplicate;
    if w.spans_added + dropped != seen {
        return Err(format!(
            "accepted {seen} != analysed {} + dropped {dropped}",
            w.spans_added
        ));
    }
    let g = e.graph();
    let ctx = Context {
        nodes: e.nodes(),
        names: e.interner(),
    };
    let report = compute(&g, Some(&g), &ctx);
    for f in &report.findings {
        if !(0.0..=1.0).contains(&f.score) || f.score.is_nan() {
            return Err(format!("score {} of {}", f.score, f.id()));
        }
    }
    Ok(())
}

/// Any bytes as an OTLP protobuf request: the wire reader never panics, and whenever prost
/// decodes the bytes too, the wire reader's spans, rejections and names are exactly those of
/// prost's messages normalized.
pub fn check_wire_matches_prost(data: &[u8]) -> Result<(), String> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let wire = WireBatch::new(data.to_vec().into());
    let decoded = <ExportTraceServiceRequest as prost::Message>::decode(data);
    let (Ok(wire), Ok(req)) = (wire, decoded) else {
        return Ok(());
    };
    let (mut a, mut b) = (Normalizer::default(), Normalizer::default());
    let (mut out_a, mut rep_a) = (Vec::new(), BatchReport::default());
    let (mut out_b, mut rep_b) = (Vec::new(), BatchReport::default());
    a.normalize(&req.resource_spans, &mut out_a, &mut rep_a);
    b.normalize_wire(&wire, &mut out_b, &mut rep_b);
    let (sa, sb) = (
        format!("{out_a:?} {rep_a:?}"),
        format!("{out_b:?} {rep_b:?}"),
    );
    if sa != sb {
        return Err(format!("prost: {sa}\nwire: {sb}"));
    }
    if !a.interner.names().eq(b.interner.names()) {
        return Err("the name tables differ".into());
    }
    Ok(())
}

/// Spans of one trace from arbitrary bytes: 7 bytes a span (parent index, service, kind,
/// start and duration), so any byte string is some tree, forest, cycle or mess of them.
pub fn spans_from_bytes(data: &[u8]) -> Vec<Span> {
    let id = |i: usize| {
        let mut b = [0u8; 8];
        b[..8].copy_from_slice(&((i as u64) + 1).to_be_bytes());
        SpanId(b)
    };
    data.chunks_exact(7)
        .take(2000)
        .enumerate()
        .map(|(i, c)| {
            let parent = (c[0] as usize) % (i + 2);
            let start = u64::from(u16::from_be_bytes([c[3], c[4]]));
            let dur = u64::from(u16::from_be_bytes([c[5], c[6]]));
            Span {
                trace_id: TraceId([7; 16]),
                span_id: id(i),
                // `parent == i` points at itself; `i + 1` at a span that may not exist.
                parent: (parent != 0).then(|| id(parent - 1)),
                service: Sym(u32::from(c[1] % 5)),
                instance: None,
                name: Sym(u32::from(c[1] % 5)),
                kind: SpanKind::from_otlp(i32::from(c[2] % 6)).unwrap_or_default(),
                start_ns: start,
                end_ns: start + dur,
                error: c[2] & 0x80 != 0,
                peer: None,
                links: Vec::new(),
                proxy: false,
                fault_addrs: [None; 2],
                weight: 1.0,
            }
        })
        .collect()
}

/// The critical path's invariants: segments in time order, not overlapping, inside the
/// root (or the span of all roots), and adding up to its duration.
pub fn check_critical_path(spans: Vec<Span>, skew_tolerance: f64) -> Result<(), String> {
    if spans.is_empty() {
        return Ok(());
    }
    let t = Trace::build(spans);
    let path = critical_path(&t, &CriticalPathConfig { skew_tolerance });
    let lo = t
        .roots
        .iter()
        .map(|&r| t.span(r).start_ns)
        .min()
        .unwrap_or(0);
    let hi = t.roots.iter().map(|&r| t.span(r).end_ns).max().unwrap_or(0);
    let mut at = lo;
    let mut total = 0u64;
    for s in &path {
        if s.start_ns < at || s.end_ns < s.start_ns || s.end_ns > hi {
            return Err(format!(
                "segment {}..{} after {at}, outside {lo}..{hi}",
                s.start_ns, s.end_ns
            ));
        }
        at = s.end_ns;
        total += s.end_ns - s.start_ns;
    }
    if !path.is_empty() && total != hi - lo {
        return Err(format!(
            "segments add up to {total}, the trace lasts {}",
            hi - lo
        ));
    }
    Ok(())
}
