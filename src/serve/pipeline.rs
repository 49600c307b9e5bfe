//! The live pipeline: one task owns the engine (names, assembly, windows) and handles, in
//! one loop, everything that drives it: span batches from the receivers, queries from the
//! API, the clock, and shutdown. Nothing else touches the engine, so it needs no locks.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::analyze::critical_path::{CriticalPathConfig, PathRecord};
use crate::analyze::engine::{Engine, EngineConfig};
use crate::analyze::graph::GraphAgg;
use crate::analyze::thresholds::MIN_BASELINE_TRACES;
use crate::api::dto::{FindingsDoc, GraphDoc, NodeDetail, NodePoint};
use crate::api::view::{FindingHistory, View, ViewInput};
use crate::clock::now_ns;
use crate::model::TraceId;
use crate::report::finding::Context;
use crate::report::findings::compute;
use crate::serve::config::Config;
use crate::serve::receive::submit::Submission;
use crate::serve::stats::Stats;

/// The time a query covers: the last so long (by wall clock), or a past range of the
/// history (Unix ns, at the history's bucket resolution). The history before it is the
/// baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Last(Duration),
    Between { from_ns: u64, to_ns: u64 },
}

/// What the API asks the pipeline.
#[derive(Debug)]
pub enum Query {
    Findings {
        window: Range,
        reply: oneshot::Sender<FindingsDoc>,
    },
    Graph {
        window: Range,
        reply: oneshot::Sender<GraphDoc>,
    },
    Node {
        name: String,
        window: Range,
        reply: oneshot::Sender<Option<NodeDetail>>,
    },
    CriticalPath {
        trace: TraceId,
        reply: oneshot::Sender<Option<crate::api::dto::PathDoc>>,
    },
}

/// Everything that drives the pipeline task.
#[derive(Debug)]
pub enum Event {
    Batch(Submission),
    Query(Query),
    /// Complete idle traces (frequent).
    Tick,
    /// Recompute the published findings (every `analysis.refresh`).
    Refresh,
    Snapshot,
    Shutdown(oneshot::Sender<()>),
}

/// Critical paths of recent traces, for `/traces/{id}/critical-path`; bounded, oldest out.
struct PathStore {
    cap: usize,
    order: VecDeque<TraceId>,
    paths: FxHashMap<TraceId, PathRecord>,
}

impl PathStore {
    /// Segments kept per path: enough for any trace a person reads; a 100k-call batch job
    /// must not make the store hold gigabytes.
    const MAX_SEGMENTS: usize = 2000;

    fn push(&mut self, mut p: PathRecord) {
        p.segments.truncate(Self::MAX_SEGMENTS);
        let id = p.trace_id;
        if self.paths.insert(id, p).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.paths.remove(&old);
            }
        }
    }
}

/// The live engine's settings from the daemon's.
pub fn engine_config(cfg: &Config) -> EngineConfig {
    // Live traces complete on the daemon's clock; nothing is held to an end of input.
    let mut e = EngineConfig {
        completion: crate::analyze::engine::Completion::Idle,
        ..Default::default()
    };
    e.assembler.trace_idle_ns = cfg.trace_idle.as_nanos() as u64;
    e.assembler.max_traces = cfg.max_traces_in_flight;
    // Spans in assembly draw from the memory budget's share for them (see `ledger`).
    let share = crate::serve::ledger::assembly_share_of(budget_bytes(cfg));
    let per_span = std::mem::size_of::<crate::model::Span>() * 3 / 2 + 16;
    e.assembler.max_spans = if share == 0 {
        cfg.max_spans_in_flight
    } else {
        cfg.max_spans_in_flight
            .min((share as usize / per_span).max(1024))
    };
    e.assembler.max_spans_per_trace = cfg.max_spans_per_trace;
    e.max_name_bytes = crate::serve::ledger::names_share_of(budget_bytes(cfg));
    e.window_ns = cfg.bucket.as_nanos() as u64;
    e.max_windows = (cfg.history.as_nanos() / cfg.bucket.as_nanos().max(1)) as usize + 1;
    e
}

/// `analysis.memory_budget_mb` in bytes.
pub fn budget_bytes(cfg: &Config) -> u64 {
    (cfg.memory_budget_mb as u64).saturating_mul(1 << 20)
}

/// The span times accepted live (by the receivers' normalizers; see `ingest::local`).
pub fn time_limits(cfg: &Config) -> crate::ingest::normalize::TimeLimits {
    crate::ingest::normalize::TimeLimits {
        max_duration_ns: cfg.max_span_duration.as_nanos() as u64,
        max_ahead_ns: cfg.bucket.as_nanos() as u64,
        now_ns: Some(now_ns()),
        ..Default::default()
    }
}

pub struct Pipeline {
    pub engine: Engine,
    /// Assembly's clock: monotonic, so a wall-clock step cannot stall or split traces.
    started: std::time::Instant,
    cfg: Config,
    stats: Arc<Stats>,
    paths: Arc<Mutex<PathStore>>,
    /// The published view: what every API read serves from.
    view_tx: watch::Sender<Arc<View>>,
    /// Each finding's score over time, for the view.
    history: FindingHistory,
    /// The receivers' name spaces, renumbered into the engine's.
    spaces: crate::ingest::local::Spaces,
    /// Where snapshots go, if anywhere.
    state: Option<crate::serve::state::StateDir>,
    /// The snapshot being written on a blocking thread, if any.
    writing: Option<tokio::task::JoinHandle<()>>,
    /// Resident bytes when the pipeline started, before any span: what the budget adds to.
    baseline_rss: u64,
    squeeze: crate::serve::ledger::Squeeze,
}

impl Pipeline {
    pub fn new(
        mut engine: Engine,
        cfg: Config,
        stats: Arc<Stats>,
        view_tx: watch::Sender<Arc<View>>,
        state: Option<crate::serve::state::StateDir>,
    ) -> Pipeline {
        engine.set_critical_path(CriticalPathConfig {
            skew_tolerance: cfg.skew_tolerance,
        });
        let budget = budget_bytes(&cfg);
        stats.ledger.set_budget(budget);
        engine
            .windows_mut()
            .set_budget(stats.ledger.aggregates_share() as usize);
        stats.memory_budget_bytes.store(budget, Ordering::Relaxed);
        let paths = Arc::new(Mutex::new(PathStore {
            cap: cfg.keep_traces,
            order: VecDeque::new(),
            paths: FxHashMap::default(),
        }));
        let sink = paths.clone();
        engine.set_on_trace(Some(Box::new(move |t, path| {
            if let Ok(mut p) = sink.lock() {
                p.push(PathRecord::from_path(t, path));
            }
        })));
        let p = Pipeline {
            engine,
            started: std::time::Instant::now(),
            cfg,
            stats,
            paths,
            view_tx,
            history: FindingHistory::default(),
            spaces: Default::default(),
            state,
            writing: None,
            baseline_rss: crate::serve::stats::resident_bytes().unwrap_or(0),
            squeeze: Default::default(),
        };
        // What a restored snapshot holds shows in /metrics before the first span arrives.
        p.publish_counters();
        p
    }

    /// Runs until shutdown: then drains what was queued, completes every trace in flight,
    /// snapshots, and answers the shutdown.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut batches: mpsc::Receiver<Submission>,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(ev) = events.recv() => {
                    if let Event::Shutdown(done) = ev {
                        batches.close();
                        while let Some(sub) = batches.recv().await {
                            self.batch(sub);
                        }
                        self.engine.finish();
                        self.publish_counters();
                        self.refresh();
                        // The last snapshot must be on disk before the daemon says it is done.
                        if let Some(w) = self.writing.take() {
                            let _ = w.await;
                        }
                        if let Some(dir) = self.state.clone() {
                            match dir.encode(&self.engine) {
                                Ok(bytes) => {
                                    let written =
                                        tokio::task::spawn_blocking(move || dir.write(&bytes)).await;
                                    if let Ok(Err(e)) = written {
                                        tracing::warn!(%e, "final state snapshot failed");
                                    }
                                }
                                Err(e) => tracing::warn!(%e, "final state snapshot failed"),
                            }
                        }
                        let _ = done.send(());
                        return;
                    }
                    self.event(ev);
                }
                Some(sub) = batches.recv() => {
                    self.batch(sub);
                    self.stats.queue_depth.store(batches.len() as u64, Ordering::Relaxed);
                }
                else => return,
            }
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Batch(sub) => self.batch(sub),
            Event::Query(q) => self.query(q),
            Event::Tick => {
                self.engine.windows_mut().set_now(now_ns());
                self.engine.tick(self.mono_ns());
                self.publish_counters();
            }
            Event::Refresh => self.refresh(),
            Event::Snapshot => self.snapshot(),
            Event::Shutdown(_) => {}
        }
    }

    fn batch(&mut self, sub: Submission) {
        self.stats.ledger.release_queue(sub.reserved);
        let report = sub.report;
        let mut spans = sub.spans;
        self.engine.windows_mut().set_now(now_ns());
        self.spaces
            .renumber(sub.names, &mut spans, self.engine.interner_mut());
        let now = self.mono_ns();
        self.engine.assemble_at(spans, now);
        self.stats
            .spans_rejected
            .fetch_add(report.rejected, Ordering::Relaxed);
        self.publish_counters();
        let _ = sub.reply.send(report);
    }

    fn mono_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Copies the engine's own counts into the shared stats.
    fn publish_counters(&self) {
        let a = self.engine.assembler_stats();
        let s = &self.stats;
        s.traces_completed
            .store(a.traces_completed, Ordering::Relaxed);
        s.traces_completed_early
            .store(a.traces_completed_early, Ordering::Relaxed);
        s.traces_in_flight
            .store(self.engine.in_flight().0 as u64, Ordering::Relaxed);
        s.spans_in_flight
            .store(self.engine.in_flight().1 as u64, Ordering::Relaxed);
        let w = self.engine.windows();
        s.spans_analysed.store(w.spans_added, Ordering::Relaxed);
        s.names_overflowed
            .store(self.engine.interner().overflowed, Ordering::Relaxed);
        s.nodes_overflowed
            .store(self.engine.nodes().overflowed, Ordering::Relaxed);
        s.aggregate_bytes.store(w.bytes as u64, Ordering::Relaxed);
        use crate::serve::ledger::Part;
        s.ledger.set(Part::Aggregates, w.bytes as u64);
        s.ledger
            .set(Part::Assembly, self.engine.assembly_bytes() as u64);
        s.aggregate_entries_dropped
            .store(w.entries_dropped(), Ordering::Relaxed);
        s.budget_nodes_folded
            .store(w.nodes_folded, Ordering::Relaxed);
        s.budget_buckets_merged
            .store(w.buckets_merged, Ordering::Relaxed);
        s.budget_buckets_retired
            .store(w.buckets_retired_early, Ordering::Relaxed);
        s.spans_dropped.store(
            a.spans_dropped_trace_full
                + w.spans_dropped_old
                + w.spans_dropped_future
                + self.engine.issues().spans_duplicate,
            Ordering::Relaxed,
        );
    }

    /// Buckets covering the last `window` (by wall clock), merged; and, as its baseline, the
    /// history before it when there is enough of it.
    /// Backends are resolved over both, so they name nodes alike.
    fn windows(&mut self, window: Range) -> (GraphAgg, Option<GraphAgg>) {
        let w = self.engine.windows();
        let now = now_ns();
        let (from, to) = match window {
            // History is all there is: a longer window is the whole of it.
            Range::Last(d) => {
                let d = d.min(self.cfg.history);
                (
                    w.bucket_of(now.saturating_sub(d.as_nanos() as u64)),
                    u64::MAX,
                )
            }
            Range::Between { from_ns, to_ns } => (w.bucket_of(from_ns), to_ns.max(from_ns)),
        };
        let cur = w.merged_range(from, to);
        let base = w.merged_range(0, from);
        let resolution = self.engine.resolve(&[&cur, &base]);
        let cur = resolution.apply(&cur);
        let base = (base.facts.traces >= MIN_BASELINE_TRACES).then(|| resolution.apply(&base));
        (cur, base)
    }

    fn findings_doc(&mut self, window: Range) -> FindingsDoc {
        let (cur, base) = self.windows(window);
        let ctx = Context {
            nodes: self.engine.nodes(),
            names: self.engine.interner(),
        };
        let findings = compute(&cur, base.as_ref(), &ctx);
        let now = now_ns();
        let empty = match window {
            Range::Last(d) => (now.saturating_sub(d.as_nanos() as u64), now),
            Range::Between { from_ns, to_ns } => (from_ns, to_ns),
        };
        FindingsDoc::new(&cur, base.as_ref(), &findings, &ctx, empty)
    }

    /// Recomputes the default window and publishes the view every read serves from.
    fn refresh(&mut self) {
        let started = std::time::Instant::now();
        let ledger = &self.stats.ledger;
        ledger.set(
            crate::serve::ledger::Part::Names,
            (self.engine.interner().approx_bytes() + crate::ingest::local::local_name_bytes())
                as u64,
        );
        // The windows get what the rest leaves of the budget, less while resident memory
        // runs over the budget (what the estimates miss comes out of them).
        let rss = crate::serve::stats::resident_bytes().unwrap_or(0);
        let target = self.baseline_rss + ledger.budget();
        let squeeze = self
            .squeeze
            .update(rss, if ledger.squeezable() { target } else { 0 });
        let share = (ledger.aggregates_share() as f64 * squeeze) as usize;
        self.engine.windows_mut().set_budget(share);
        self.build_view();
        self.publish_counters();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(ms, "view refreshed");
    }

    fn build_view(&mut self) {
        let now = now_ns();
        let window = self.cfg.window.min(self.cfg.history);
        let w = self.engine.windows();
        let from = w.bucket_of(now.saturating_sub(window.as_nanos() as u64));
        let cur_raw = w.merged_range(from, u64::MAX);
        let base_raw = w.merged_range(0, from);
        let all_time = w.all_time();
        // Raw, before resolution: the reader resolves what it sums (see `exchange`).
        // Stored once the view is published, so a reader that sees the counts sees the view.
        let mut export_counts = (0, 0);
        let aggregates = if self.cfg.export.aggregates {
            let max = self.cfg.export.max_series;
            let (mut s, left_out) = crate::scale::exchange::encode_at_most(
                &all_time,
                self.engine.nodes(),
                self.engine.interner(),
                max.saturating_sub(1),
            );
            if max > 0 {
                s.insert(0, crate::scale::exchange::heard(now as f64 / 1e9));
            }
            export_counts = (s.len(), left_out + usize::from(max == 0));
            s
        } else {
            Vec::new()
        };
        let resolution = self.engine.resolve(&[&cur_raw, &base_raw, &all_time]);
        // Owned: no second copy of the state when nothing is renamed.
        let cur = resolution.apply_owned(cur_raw);
        let base = (base_raw.facts.traces >= MIN_BASELINE_TRACES)
            .then(|| resolution.apply_owned(base_raw));
        let all_time = resolution.apply_owned(all_time);
        let engine = &self.engine;
        let ctx = Context {
            nodes: engine.nodes(),
            names: engine.interner(),
        };
        let report = compute(&cur, base.as_ref(), &ctx);
        let empty = (now.saturating_sub(window.as_nanos() as u64), now);
        let doc = FindingsDoc::new(&cur, base.as_ref(), &report, &ctx, empty);
        self.history
            .record(now, &doc.findings, self.cfg.history.as_nanos() as u64);
        let hint = self.view_tx.borrow().metrics.len() * 9 / 8;
        let mut metrics = crate::api::metrics::graph_metrics(
            &all_time,
            engine.nodes(),
            engine.interner(),
            &doc,
            hint,
        );
        crate::scale::exchange::write_text(&aggregates, &mut metrics);
        drop(all_time);
        let w = engine.windows();
        let view = View::build(ViewInput {
            now_ns: now,
            cur: &cur,
            base: base.as_ref(),
            findings: doc,
            nodes: engine.nodes(),
            names: engine.interner(),
            buckets: w.buckets().collect(),
            bucket_ns: w.width_ns(),
            resolution: &resolution,
            history: &self.history,
            metrics,
            aggregates: Arc::new(aggregates),
        });
        use crate::serve::ledger::Part;
        // Twice: the next refresh builds its view while this one is still served.
        self.stats
            .ledger
            .set(Part::View, 2 * view.approx_bytes() as u64);
        self.stats.ledger.set(
            Part::Export,
            crate::api::view::series_bytes(&view.aggregates) as u64,
        );
        self.view_tx.send_replace(Arc::new(view));
        let (exported, dropped) = export_counts;
        self.stats
            .export_series
            .store(exported as u64, Ordering::Relaxed);
        self.stats
            .export_series_dropped
            .store(dropped as u64, Ordering::Relaxed);
    }

    /// Encodes a snapshot here (quick) and writes it on a blocking thread, so a slow disk
    /// does not stall ingestion; skipped while the previous write is still going.
    fn snapshot(&mut self) {
        let Some(dir) = self.state.clone() else {
            return;
        };
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            tracing::debug!("previous snapshot still being written; skipped");
            return;
        }
        let stats = self.stats.clone();
        match dir.encode(&self.engine) {
            Ok(bytes) => {
                self.writing = Some(tokio::task::spawn_blocking(move || {
                    match dir.write(&bytes) {
                        Ok(()) => &stats.snapshots_written,
                        Err(e) => {
                            tracing::warn!(%e, "state snapshot failed");
                            &stats.snapshots_failed
                        }
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }));
            }
            Err(e) => {
                tracing::warn!(%e, "state snapshot failed");
                stats.snapshots_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn query(&mut self, q: Query) {
        match q {
            Query::Findings { window, reply } => {
                let _ = reply.send(self.findings_doc(window));
            }
            Query::Graph { window, reply } => {
                let (cur, _) = self.windows(window);
                let doc = GraphDoc::new(&cur, self.engine.nodes(), self.engine.interner());
                let _ = reply.send(doc);
            }
            Query::Node {
                name,
                window,
                reply,
            } => {
                let _ = reply.send(self.node(&name, window));
            }
            Query::CriticalPath { trace, reply } => {
                let names = self.engine.interner();
                let v = self.paths.lock().ok().and_then(|p| {
                    p.paths
                        .get(&trace)
                        .map(|r| crate::api::dto::PathDoc::new(r, names))
                });
                let _ = reply.send(v);
            }
        }
    }

    fn node(&mut self, name: &str, window: Range) -> Option<NodeDetail> {
        let (cur, _) = self.windows(window);
        let doc = GraphDoc::new(&cur, self.engine.nodes(), self.engine.interner());
        let node = doc.node(name)?.clone();
        let nodes = self.engine.nodes();
        let id = (0..nodes.len() as u32)
            .map(crate::analyze::node::NodeId)
            .find(|id| {
                let k = nodes.key(*id);
                !k.is_raw() && self.engine.interner().resolve(k.name) == name
            })?;
        let all = self.engine.windows().merged();
        let resolution = self.engine.resolve(&[&all]);
        let history: Vec<NodePoint> = self
            .engine
            .windows()
            .buckets()
            .filter_map(|(start, g)| {
                let g = resolution.apply(g);
                let n = g.nodes.get(&id)?;
                Some(NodePoint {
                    start: crate::api::dto::rfc3339(start),
                    requests: n.requests,
                    errors: n.errors,
                    p50_ms: n.latency.quantile_ms(0.5),
                    p99_ms: n.latency.quantile_ms(0.99),
                })
            })
            .collect();
        let findings = self.findings_doc(window);
        Some(NodeDetail {
            callers: doc.edges.iter().filter(|e| e.to == name).cloned().collect(),
            callees: doc
                .edges
                .iter()
                .filter(|e| e.from == name)
                .cloned()
                .collect(),
            findings: findings
                .findings
                .into_iter()
                .filter(|f| f.node == name)
                .collect(),
            exemplar_trace_ids: cur
                .facts
                .slowest
                .get(&id)
                .map(|e| e.items().map(|t| t.to_string()).collect())
                .unwrap_or_default(),
            node,
            history,
        })
    }
}
