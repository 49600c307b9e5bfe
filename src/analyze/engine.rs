//! The pipeline without its transport: normalize → assemble → analyze → windows. Replay
//! drives it from files with span time as its clock; the daemon's pipeline task drives the
//! same code from its receivers, with a monotonic clock for assembly.

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::analyze::assemble::{Assembler, AssemblerConfig, AssemblerStats};
use crate::analyze::critical_path::{critical_path, CriticalPathConfig, Segment};
use crate::analyze::graph::GraphAgg;
use crate::analyze::identity::{self, Resolution};
use crate::analyze::node::NodeTable;
use crate::analyze::tree::Trace;
use crate::analyze::window::Windows;
use crate::ingest::batch::Batch;
use crate::ingest::normalize::TimeLimits;
use crate::ingest::Normalizer;
use crate::model::problem::BatchReport;
use crate::model::{Interner, Span};

/// When replay takes a trace to be complete. The daemon completes traces on its own clock
/// (`trace_idle` after their last span arrived), whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Completion {
    /// As `Idle`, remembering the traces completed: a span arriving for one of them says the
    /// input is out of order (files concatenated per process, shuffled), and
    /// [`Engine::split_a_trace`] tells replay to read it again with `AtEnd`. Input in time
    /// order, the usual case, is read once and analysed as it is read.
    #[default]
    Auto,
    /// At the end of the input: every span of a trace meets the others whatever order the
    /// files are in. Past the in-flight limits the spans go to a [`SpanSpill`] (temporary
    /// files, split by trace id), each part assembled at the end, so memory stays bounded.
    AtEnd,
    /// Once span time has moved `trace_idle` past a trace's last span: less held, but spans
    /// of a trace far apart in the file are split into fragments.
    Idle,
}

/// Traces `Completion::Auto` remembers (about 20 bytes each); input with more is taken as out
/// of order, to be safe.
const REMEMBER_TRACES: usize = 2_000_000;

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub assembler: AssemblerConfig,
    pub completion: Completion,
    /// Width of a time window; `u64::MAX` for one window over all input.
    pub window_ns: u64,
    pub max_windows: usize,
    pub max_nodes: usize,
    pub max_names: usize,
    /// What the engine's names may cost, in bytes (see [`Interner::name_cost`]).
    pub max_name_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            assembler: AssemblerConfig::default(),
            completion: Completion::default(),
            window_ns: u64::MAX,
            max_windows: 1440,
            max_nodes: 10_000,
            max_names: 200_000,
            max_name_bytes: usize::MAX,
        }
    }
}

/// Structural problems found in completed traces (duplicate ids, cycles), bounded.
#[derive(Debug, Default)]
pub struct TraceIssues {
    pub count: u64,
    /// Spans discarded as repeats of a span id already in their trace.
    pub spans_duplicate: u64,
    pub details: Vec<String>,
}

impl TraceIssues {
    pub const MAX_DETAILS: usize = 50;
}

/// Called with every completed trace and its critical path (the `critical-path` command
/// prints them; the daemon keeps recent ones).
pub type TraceObserver = Box<dyn FnMut(&Trace, &[Segment]) + Send>;

/// Everything downstream of the assembler: the part that sees complete traces.
struct Analyzer {
    nodes: NodeTable,
    windows: Windows,
    issues: TraceIssues,
    critical_path: CriticalPathConfig,
    on_trace: Option<TraceObserver>,
}

impl Analyzer {
    /// Folds a completed trace in; `names` are the symbols its spans were interned in.
    fn complete(&mut self, spans: Vec<Span>, names: &Interner) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len();
        let trace = Trace::build(spans);
        self.issues.spans_duplicate += (n - trace.len()) as u64;
        self.issues.count += u64::from(trace.issue_count);
        for (span, e) in &trace.issues {
            if self.issues.details.len() < TraceIssues::MAX_DETAILS {
                self.issues
                    .details
                    .push(format!("trace {}, span {span}: {e}", trace.id));
            }
        }
        // Computed once: the facts and the observer both use it.
        let path = critical_path(&trace, &self.critical_path);
        self.windows
            .add_trace(&trace, &path, &mut self.nodes, names);
        if let Some(f) = &mut self.on_trace {
            f(&trace, &path);
        }
    }
}

/// Moves replay's clock `watermark` to `end_ns`. One span with an absurd end time must not
/// complete every pending trace: a jump of more than an hour counts only once a hundred spans
/// in a row agree. The clock goes back the same way, so that a first span years ahead does
/// not pin it there (every trace after it would complete as soon as it was seen).
/// `run` counts the spans in a row that disagree: above zero ahead of the clock, below it
/// behind.
fn advance(watermark: &mut u64, run: &mut i32, end_ns: u64) -> u64 {
    const AGREE: i32 = 100;
    let ahead = end_ns > watermark.saturating_add(Engine::MAX_JUMP_NS);
    let behind = end_ns.saturating_add(Engine::MAX_JUMP_NS) < *watermark;
    if *watermark == 0 || !(ahead || behind) {
        *watermark = (*watermark).max(end_ns);
        *run = 0;
        return *watermark;
    }
    *run = match (ahead, *run) {
        (true, r) if r > 0 => r + 1,
        (true, _) => 1,
        (false, r) if r < 0 => r - 1,
        (false, _) => -1,
    };
    if run.abs() >= AGREE {
        *watermark = end_ns;
        *run = 0;
    }
    *watermark
}

/// Spans in, windowed aggregates out: normalizer → assembler → analyzer, with the tables
/// (names, nodes) they share. Its parts are its own; what callers need has a method.
pub struct Engine {
    normalizer: Normalizer,
    assembler: Assembler,
    analyzer: Analyzer,
    /// Latest span end seen: replay's clock.
    watermark: u64,
    /// Spans in a row more than [`Engine::MAX_JUMP_NS`] ahead of the watermark (above zero) or
    /// behind it (below zero); see [`advance`].
    jumps: i32,
    report: BatchReport,
    /// What it was made with, to start over ([`Engine::start_over_holding`]).
    cfg: EngineConfig,
    /// Opens where spans go once more are held than the in-flight limits allow (replay sets
    /// one; without it, the oldest trace is completed early, as in `Idle`).
    spill_opener: Option<SpillOpener>,
    spilled: Option<Box<dyn SpanSpill>>,
    pub spill_stats: SpillStats,
}

/// Where `Completion::AtEnd` sets spans aside past the in-flight limits, to hand them back at
/// the end in parts, every span of a trace in the same part, so that each part assembles into
/// whole traces on its own. The engine does no IO: replay gives it one on disk
/// (`replay::spill`).
pub trait SpanSpill: Send {
    /// Sets a span aside; an error says why it is lost.
    fn put(&mut self, span: &Span) -> Result<(), String>;
    /// Closes the spill and hands back its parts, each of at most `max_spans` spans where
    /// trace ids allow.
    fn into_parts(self: Box<Self>, max_spans: usize) -> Box<dyn Iterator<Item = SpilledPart>>;
}

/// Opens a [`SpanSpill`] when first needed; an error says why there is none.
pub type SpillOpener = Box<dyn FnMut() -> Result<Box<dyn SpanSpill>, String> + Send>;

/// One part handed back: its spans, and those of it that could not be read back.
pub struct SpilledPart {
    pub spans: Vec<Span>,
    pub lost: usize,
    pub error: Option<String>,
}

/// What replay set aside to assemble traces whole.
#[derive(Debug, Default, Clone)]
pub struct SpillStats {
    /// Spans set aside (each read back once).
    pub spans: u64,
    /// Parts assembled one at a time at the end.
    pub parts: u64,
    /// Spans lost because the spill could not be written or read (disk full); the rest
    /// were analysed. With no spill possible at all, traces past the limits are completed
    /// early instead (counted as such).
    pub spans_lost: u64,
    pub error: Option<String>,
}

impl Engine {
    const MAX_JUMP_NS: u64 = 3_600_000_000_000;

    pub fn new(cfg: EngineConfig) -> Self {
        let mut assembler = Assembler::new(cfg.assembler);
        if cfg.completion == Completion::Auto {
            assembler.remember_completed(REMEMBER_TRACES);
        }
        Engine {
            normalizer: Normalizer::new({
                let mut names = Interner::with_capacity_limit(cfg.max_names);
                names.set_max_bytes(cfg.max_name_bytes);
                names
            }),
            assembler,
            analyzer: Analyzer {
                nodes: NodeTable::new(cfg.max_nodes),
                windows: Windows::new(cfg.window_ns, cfg.max_windows),
                issues: TraceIssues::default(),
                critical_path: CriticalPathConfig::default(),
                on_trace: None,
            },
            watermark: 0,
            jumps: 0,
            report: BatchReport::default(),
            cfg,
            spill_opener: None,
            spilled: None,
            spill_stats: SpillStats::default(),
        }
    }

    /// Normalizes and assembles one batch, using span time as the clock. `report` receives the
    /// batch's rejections (it may already hold some from decoding) and is added to the
    /// engine's running total.
    pub fn ingest(&mut self, resource_spans: &[ResourceSpans], report: &mut BatchReport) {
        let mut spans = Vec::new();
        self.normalizer
            .normalize(resource_spans, &mut spans, report);
        self.ingest_spans(spans, report);
    }

    /// [`Engine::ingest`] for either kind of batch.
    pub fn ingest_batch(&mut self, batch: &Batch, report: &mut BatchReport) {
        let mut spans = Vec::new();
        self.normalizer.normalize_batch(batch, &mut spans, report);
        self.ingest_spans(spans, report);
    }

    /// [`Engine::ingest`] for spans normalized elsewhere, already in this engine's symbols;
    /// `report` is their normalization's.
    pub fn ingest_spans(&mut self, spans: Vec<Span>, report: &BatchReport) {
        self.report.merge(report.clone());
        if self.cfg.completion == Completion::AtEnd {
            self.hold(spans);
            return;
        }
        self.push(spans, None);
        let analyzer = &mut self.analyzer;
        let names = &self.normalizer.interner;
        self.assembler
            .expire(self.watermark, &mut |t| analyzer.complete(t, names));
    }

    /// With `Completion::Auto`: a span arrived for a trace already completed, so the input
    /// was not in time order and the traces it split are in the aggregates as fragments.
    pub fn split_a_trace(&self) -> bool {
        self.cfg.completion == Completion::Auto && self.assembler.reopened()
    }

    /// Whether nothing has been read yet.
    pub fn is_fresh(&self) -> bool {
        self.assembler.stats.spans_in == 0 && self.report.seen == 0
    }

    /// Starts again, empty, with `Completion::AtEnd` and the same settings (critical path,
    /// time limits, trace observer): what replay does when [`Engine::split_a_trace`].
    pub fn start_over_holding(&mut self) {
        let mut cfg = self.cfg;
        cfg.completion = Completion::AtEnd;
        let mut e = Engine::new(cfg);
        e.analyzer.critical_path = self.analyzer.critical_path;
        e.analyzer.on_trace = self.analyzer.on_trace.take();
        e.normalizer.time_limits = self.normalizer.time_limits;
        *self = e;
    }

    /// Where `Completion::AtEnd` sets spans aside past the in-flight limits.
    pub fn spill_with(&mut self, opener: SpillOpener) {
        self.spill_opener = Some(opener);
    }

    /// Holds spans to the end of input: in the assembler while within its limits, and from
    /// the first batch that would pass them, in the spill (everything held moved there too).
    fn hold(&mut self, spans: Vec<Span>) {
        let cfg = self.assembler.config();
        let full = self.assembler.spans_in_flight() + spans.len() > cfg.max_spans
            || self.assembler.traces_in_flight() + spans.len().min(cfg.max_traces) > cfg.max_traces;
        if full && self.spilled.is_none() {
            if let Some(mut open) = self.spill_opener.take() {
                match open() {
                    Ok(s) => {
                        self.spilled = Some(s);
                        let held = self.assembler.take_held();
                        self.spill_out(held);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot spill: traces past the in-flight limits are completed early");
                        self.spill_stats.error = Some(format!("cannot spill to disk: {e}"));
                    }
                }
            }
        }
        if self.spilled.is_some() {
            self.spill_out(spans);
            return;
        }
        // Within the limits, or with nowhere to spill (the assembler then completes the
        // oldest trace early, as in `Idle`).
        let analyzer = &mut self.analyzer;
        let names = &self.normalizer.interner;
        self.assembler
            .push_batch(spans, 0, &mut |t| analyzer.complete(t, names));
    }

    fn spill_out(&mut self, spans: Vec<Span>) {
        let Some(s) = &mut self.spilled else {
            return;
        };
        for span in &spans {
            match s.put(span) {
                Ok(()) => self.spill_stats.spans += 1,
                Err(e) => {
                    self.spill_stats.spans_lost += 1;
                    self.spill_stats
                        .error
                        .get_or_insert_with(|| format!("writing the spill: {e}"));
                }
            }
        }
    }

    /// Assembles each spilled part on its own, one at a time.
    fn finish_spill(&mut self) {
        let Some(spill) = self.spilled.take() else {
            return;
        };
        for part in spill.into_parts(self.assembler.config().max_spans) {
            self.spill_stats.parts += 1;
            if let Some(e) = part.error {
                self.spill_lost(part.lost as u64, e);
            }
            let analyzer = &mut self.analyzer;
            let names = &self.normalizer.interner;
            let done = &mut |t| analyzer.complete(t, names);
            self.assembler.push_batch(part.spans, 0, done);
            self.assembler.flush(done);
        }
    }

    fn spill_lost(&mut self, spans: u64, why: String) {
        self.spill_stats.spans_lost += spans;
        self.spill_stats.error.get_or_insert(why);
    }

    /// Assembles spans normalized elsewhere (with this engine's symbols) on the caller's
    /// clock (`now_ns`: monotonic, live).
    pub fn assemble_at(&mut self, spans: Vec<Span>, now_ns: u64) {
        self.push(spans, Some(now_ns));
    }

    /// Pushes each span on `clock` (or, without one, on the span-time watermark).
    fn push(&mut self, spans: Vec<Span>, clock: Option<u64>) {
        let (watermark, jumps) = (&mut self.watermark, &mut self.jumps);
        let analyzer = &mut self.analyzer;
        let names = &self.normalizer.interner;
        self.assembler.push_batch_with(
            spans,
            |s| clock.unwrap_or_else(|| advance(watermark, jumps, s.end_ns)),
            &mut |t| analyzer.complete(t, names),
        );
    }

    /// Completes the traces idle at `now_ns` (live: called on a timer).
    pub fn tick(&mut self, now_ns: u64) {
        let analyzer = &mut self.analyzer;
        let names = &self.normalizer.interner;
        self.assembler
            .expire(now_ns, &mut |t| analyzer.complete(t, names));
    }

    /// Completes every trace still in flight (end of input).
    pub fn finish(&mut self) {
        let analyzer = &mut self.analyzer;
        let names = &self.normalizer.interner;
        self.assembler.flush(&mut |t| analyzer.complete(t, names));
        self.finish_spill();
    }

    /// Hands over the windows so far and starts empty ones, keeping names and node ids: a
    /// baseline loaded first stays comparable with what is loaded after.
    pub fn take_windows(&mut self) -> Windows {
        let w = &self.analyzer.windows;
        let fresh = Windows::new(w.width_ns(), w.max_buckets());
        std::mem::replace(&mut self.analyzer.windows, fresh)
    }

    /// Groups the raw backends of `aggs` into the nodes users know (see
    /// [`crate::analyze::identity`]); everything shown together must be resolved together.
    pub fn resolve(&mut self, aggs: &[&GraphAgg]) -> Resolution {
        identity::resolve(
            aggs,
            &mut self.analyzer.nodes,
            &mut self.normalizer.interner,
        )
    }

    /// Everything kept, merged, with its backends resolved: the graph as shown.
    pub fn graph(&mut self) -> GraphAgg {
        let raw = self.analyzer.windows.merged();
        self.resolve(&[&raw]).apply(&raw)
    }

    pub fn interner(&self) -> &Interner {
        &self.normalizer.interner
    }

    pub fn assembler_stats(&self) -> AssemblerStats {
        self.assembler.stats
    }

    /// Estimated bytes of the spans in assembly.
    pub fn assembly_bytes(&self) -> usize {
        self.assembler.approx_bytes()
    }

    /// Traces and spans held in assembly.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.assembler.traces_in_flight(),
            self.assembler.spans_in_flight(),
        )
    }

    pub fn interner_mut(&mut self) -> &mut Interner {
        &mut self.normalizer.interner
    }

    /// What the normalizer accepts as span times.
    pub fn time_limits(&self) -> TimeLimits {
        self.normalizer.time_limits
    }

    pub fn nodes(&self) -> &NodeTable {
        &self.analyzer.nodes
    }

    pub fn windows(&self) -> &Windows {
        &self.analyzer.windows
    }

    pub fn windows_mut(&mut self) -> &mut Windows {
        &mut self.analyzer.windows
    }

    /// Structural problems of the traces seen (repaired), and the first few described.
    pub fn issues(&self) -> &TraceIssues {
        &self.analyzer.issues
    }

    /// The described problems so far, handed over (the counts stay).
    pub fn take_issue_details(&mut self) -> Vec<String> {
        std::mem::take(&mut self.analyzer.issues.details)
    }

    pub fn set_critical_path(&mut self, cfg: CriticalPathConfig) {
        self.analyzer.critical_path = cfg;
    }

    /// Called with every completed trace and its critical path.
    pub fn set_on_trace(&mut self, observer: Option<TraceObserver>) {
        self.analyzer.on_trace = observer;
    }

    /// Folds in a trace assembled elsewhere, whose spans were interned in `names` (benches).
    pub fn complete_trace(&mut self, spans: Vec<Span>, names: &Interner) {
        self.analyzer.complete(spans, names);
    }

    /// Starts from restored tables: names (a fresh normalizer over them) and nodes.
    pub fn restore_tables(&mut self, mut names: Interner, nodes: NodeTable) {
        names.set_max_bytes(self.interner().max_bytes());
        self.normalizer = Normalizer::new(names);
        self.analyzer.nodes = nodes;
    }

    /// Everything normalization rejected or repaired so far.
    pub fn report(&self) -> &BatchReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span as OtlpSpan};

    fn batch(trace: u8, span: u8, parent: Option<u8>, start: u64, end: u64) -> Vec<ResourceSpans> {
        vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![OtlpSpan {
                    trace_id: vec![trace; 16],
                    span_id: vec![span; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn one_absurd_end_time_does_not_split_every_pending_trace() {
        let mut e = Engine::new(EngineConfig {
            completion: Completion::Idle,
            ..Default::default()
        });
        // The door would reject this span (too long); here the clock must hold on its own.
        e.normalizer.time_limits.max_duration_ns = u64::MAX;
        let t0 = 1_700_000_000_000_000_000u64;
        let mut r = BatchReport::default();
        e.ingest(&batch(1, 1, None, t0, t0 + 1_000), &mut r);
        e.ingest(&batch(2, 9, None, t0, u64::MAX), &mut r);
        e.ingest(&batch(1, 2, Some(1), t0 + 10, t0 + 500), &mut r);
        e.finish();
        let g = e.graph();
        assert_eq!(
            (g.traces, g.fragmented_traces),
            (2, 0),
            "trace 1 stayed whole"
        );
    }

    /// The hostile round: a first span years ahead pinned replay's clock there, so no trace
    /// after it went idle: all were held until the end, and past the in-flight limit evicted.
    #[test]
    fn a_first_span_years_ahead_does_not_pin_the_clock() {
        let mut e = Engine::new(EngineConfig {
            completion: Completion::Idle,
            ..Default::default()
        });
        e.normalizer.time_limits.max_duration_ns = u64::MAX;
        let t0 = 1_700_000_000_000_000_000u64;
        let years = 10 * 365 * 86_400 * 1_000_000_000u64;
        let mut r = BatchReport::default();
        e.ingest(&batch(200, 1, None, t0 + years, t0 + years + 1_000), &mut r);
        // 150 two-span traces a second apart, each span in its own batch.
        for t in 1..=150u8 {
            let at = t0 + u64::from(t) * 1_000_000_000;
            e.ingest(&batch(t, 1, None, at, at + 1_000), &mut r);
            e.ingest(&batch(t, 2, Some(1), at + 10, at + 500), &mut r);
        }
        let (held, _) = e.in_flight();
        assert!(held <= 110, "{held} traces still held");
        e.finish();
        let g = e.graph();
        assert_eq!((g.traces, g.fragmented_traces), (151, 0));
    }
}
