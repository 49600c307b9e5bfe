//! Feeding trace files through the [`Engine`]: the offline half of the pipeline, shared by
//! the `graph`, `replay` and `critical-path` commands, the tests and the benches.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::analyze::engine::Engine;
use crate::analyze::graph::GraphAgg;
use crate::analyze::identity::Resolution;
use crate::api::dto::FindingsDoc;
use crate::ingest::batch::Batch;
use crate::ingest::local::{normalize_here, LocalLimits, NameDelta, Spaces};
use crate::ingest::{read_path_counted, FileError, FileSummary, Location};
use crate::model::problem::BatchReport;
use crate::model::Span;
use crate::report::finding::Context;
use crate::report::findings::compute;

pub mod spill;

/// Told how loading goes, for progress display. Both methods default to nothing.
pub trait LoadObserver {
    /// Raw bytes read so far over all files of this load.
    fn bytes(&mut self, _done: u64) {}
    fn file_done(&mut self, _path: &Path, _summary: &FileSummary) {}
    /// The input is read again from the start (it was out of time order).
    fn reading_again(&mut self) {}
}

impl LoadObserver for () {}

/// What loading a set of files gave, for the command to print.
#[derive(Debug, Default)]
pub struct LoadSummary {
    pub files: Vec<FileSummary>,
    /// Files that could not be read at all.
    pub failed: Vec<FileError>,
    /// Human-readable problems, each naming its file and position (bounded).
    pub problems: Vec<String>,
    pub problem_count: u64,
    pub spans_seen: u64,
    pub spans_accepted: u64,
    pub spans_rejected: u64,
    /// Spans set aside on disk to assemble traces whole (`Completion::AtEnd` past the
    /// in-flight limits), and what that lost if the disk failed.
    pub spilled: crate::analyze::engine::SpillStats,
    /// Read a second time, holding every trace to the end: a trace's spans were too far
    /// apart in the input for completing idle traces (`Completion::Auto`).
    pub read_twice: bool,
}

impl LoadSummary {
    pub const MAX_PROBLEMS: usize = 100;

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Reads `paths` in order into `engine`, then completes all in-flight traces. `on_file` is
/// called after each file (for progress display). An engine with `Completion::Auto` that
/// meets a span of a trace it already completed (input out of time order) starts over and
/// reads them again holding every trace to the end, when it had read nothing before.
pub fn load_files(
    engine: &mut Engine,
    paths: &[PathBuf],
    obs: &mut dyn LoadObserver,
) -> LoadSummary {
    let fresh = engine.is_fresh();
    let out = load_files_once(engine, paths, obs, fresh);
    if fresh && engine.split_a_trace() {
        let mut out = read_again(engine, |e, obs| load_files_once(e, paths, obs, false), obs);
        out.read_twice = true;
        return out;
    }
    out
}

/// Starts `engine` over holding every trace to the end, and reads with `read` again.
fn read_again<T>(
    engine: &mut Engine,
    read: impl FnOnce(&mut Engine, &mut dyn LoadObserver) -> T,
    obs: &mut dyn LoadObserver,
) -> T {
    tracing::debug!("input out of time order: reading it again, every trace held to the end");
    obs.reading_again();
    engine.start_over_holding();
    read(engine, obs)
}

/// [`load_files`] without starting over; with `stop_on_split`, reading stops at the first
/// sign of a split trace (the caller then starts over).
fn load_files_once(
    engine: &mut Engine,
    paths: &[PathBuf],
    obs: &mut dyn LoadObserver,
    stop_on_split: bool,
) -> LoadSummary {
    let mut out = load(engine, paths, obs, stop_on_split);
    if stop_on_split && engine.split_a_trace() {
        return out;
    }
    engine.finish();
    for i in engine.take_issue_details() {
        out.problem(i);
    }
    out.spilled = std::mem::take(&mut engine.spill_stats);
    if let Some(e) = &out.spilled.error {
        let what = match out.spilled.spans_lost {
            0 => {
                "traces past the in-flight limits were completed early, and may be split".to_owned()
            }
            n => format!("{n} spans lost; the rest were analysed"),
        };
        out.problem(format!("{e} ({what})"));
    }
    out
}

/// Like [`load_files`], but leaves traces still in flight in the assembler (more input may
/// follow); structural problems are reported when [`load_files`] or `Engine::finish` runs.
pub fn load_files_keep_open(engine: &mut Engine, paths: &[PathBuf]) -> LoadSummary {
    let mut out = load(engine, paths, &mut (), false);
    for i in engine.take_issue_details() {
        out.problem(i);
    }
    out
}

/// What the reading thread hands the engine's.
enum Read {
    Batch {
        location: Location,
        spans: Vec<Span>,
        names: NameDelta,
        report: BatchReport,
        /// Raw bytes read so far over all files.
        bytes: u64,
    },
    File(Result<FileSummary, FileError>, u64),
}

/// Groups of batches read ahead of the engine: enough to keep both threads busy, few enough
/// that a fast reader cannot pile a file up in memory.
const READ_AHEAD: usize = 16;

/// Spans handed over at once: one wake-up of the other thread per batch cost a fifth of a
/// JSON replay's time when batches are single traces.
const GROUP_SPANS: usize = 4096;
/// And at most this many batches, however few spans they hold.
const GROUP_BATCHES: usize = 1024;

/// Reading, decompressing, decoding and normalizing run on a thread of their own, ahead of
/// assembly and analysis on this one (as the live receivers do); batches arrive in file
/// order, so the outcome is the same as reading inline.
fn load(
    engine: &mut Engine,
    paths: &[PathBuf],
    obs: &mut dyn LoadObserver,
    stop_on_split: bool,
) -> LoadSummary {
    let mut out = LoadSummary::default();
    engine.spill_with(spill::on_disk());
    let limits = LocalLimits {
        time: engine.time_limits(),
        max_names: engine.interner().capacity_limit(),
    };
    let mut spaces = Spaces::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Read>>(READ_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut bytes_before = 0u64;
            let mut group = Vec::new();
            let mut group_spans = 0;
            for path in paths {
                let count: Rc<Cell<u64>> = Rc::default();
                let mut sink = |location: Location, batch: Batch, report: BatchReport| {
                    let bytes = bytes_before + count.get();
                    let _ = normalize_here(&batch, limits, report, |spans, names, report| {
                        // A batch of nothing (a zero-length frame, `{}`) is not kept: a
                        // stream of them (`/dev/zero`) held gigabytes of empty batches.
                        let hollow = spans.is_empty()
                            && names.names.is_empty()
                            && names.retired.is_empty()
                            && names.overflowed == 0
                            && report.seen == 0
                            && report.details.is_empty();
                        if hollow {
                            return Ok(());
                        }
                        group_spans += spans.len();
                        group.push(Read::Batch {
                            location,
                            spans,
                            names,
                            report,
                            bytes,
                        });
                        if group_spans >= GROUP_SPANS || group.len() >= GROUP_BATCHES {
                            group_spans = 0;
                            // Fails only when the engine's side has gone; reading then ends
                            // at the end of the file.
                            tx.send(std::mem::take(&mut group)).map_err(drop)
                        } else {
                            Ok(())
                        }
                    });
                };
                let result = read_path_counted(path, &mut sink, count.clone());
                bytes_before += count.get();
                group.push(Read::File(result, bytes_before));
                group_spans = 0;
                if tx.send(std::mem::take(&mut group)).is_err() {
                    return;
                }
            }
        });
        let mut files = paths.iter();
        // A file's span problems, listed up to what the summary shows and counted past it (a
        // file of a million bad spans kept a million strings to show a hundred).
        let mut batch_problems: Vec<(Location, String)> = Vec::new();
        let mut problems_unlisted = 0u64;
        let note = |list: &mut Vec<(Location, String)>, unlisted: &mut u64, loc, p| {
            if list.len() < LoadSummary::MAX_PROBLEMS {
                list.push((loc, p));
            } else {
                *unlisted += 1;
            }
        };
        let mut totals = BatchReport::default();
        'reading: for read in rx.into_iter().flatten() {
            match read {
                Read::Batch {
                    location,
                    mut spans,
                    names,
                    mut report,
                    bytes,
                } => {
                    spaces.renumber(names, &mut spans, engine.interner_mut());
                    engine.ingest_spans(spans, &report);
                    if stop_on_split && engine.split_a_trace() {
                        // Dropping the channel ends the reading thread (at the end of its
                        // file); all this is read again.
                        break 'reading;
                    }
                    for p in &report.details {
                        note(
                            &mut batch_problems,
                            &mut problems_unlisted,
                            location,
                            p.to_string(),
                        );
                    }
                    // Details beyond the per-batch bound are still counted.
                    let listed = report.details.len() as u64;
                    let more = (report.rejected + report.repaired).saturating_sub(listed);
                    if more > 0 {
                        note(
                            &mut batch_problems,
                            &mut problems_unlisted,
                            location,
                            format!("{more} more span problems not listed"),
                        );
                    }
                    report.details.clear();
                    totals.merge(report);
                    obs.bytes(bytes);
                }
                Read::File(result, bytes) => {
                    let Some(path) = files.next() else {
                        break 'reading;
                    };
                    obs.bytes(bytes);
                    match result {
                        Ok(summary) => {
                            for p in &summary.problems {
                                out.problem(format!(
                                    "{}: {}: {}",
                                    path.display(),
                                    p.location,
                                    p.message
                                ));
                            }
                            obs.file_done(path, &summary);
                            out.files.push(summary);
                        }
                        Err(e) => out.failed.push(e),
                    }
                    for (loc, p) in batch_problems.drain(..) {
                        out.problem(format!("{}: {loc}: {p}", path.display()));
                    }
                    out.problem_count += std::mem::take(&mut problems_unlisted);
                    let t = std::mem::take(&mut totals);
                    out.spans_seen += t.seen;
                    out.spans_accepted += t.accepted;
                    out.spans_rejected += t.rejected;
                }
            }
        }
    });
    out
}

/// A finished offline analysis: the engine (names, nodes, windows) and the baseline's
/// aggregate, if one was given. Backends are resolved over the baseline and the input
/// together, so both name nodes alike.
pub struct Analysis {
    pub engine: Engine,
    /// The baseline, resolved.
    pub baseline: Option<GraphAgg>,
    pub load: LoadSummary,
    pub baseline_load: Option<LoadSummary>,
    pub resolution: Resolution,
}

/// Loads `baseline` (if any) and then `files` into one engine, so both share names and node
/// ids, and keeps the baseline's windows apart.
pub fn analyze(
    mut engine: Engine,
    files: &[PathBuf],
    baseline: &[PathBuf],
    obs: &mut dyn LoadObserver,
) -> Analysis {
    let fresh = engine.is_fresh();
    let once = |e: &mut Engine, obs: &mut dyn LoadObserver, stop| {
        let (baseline, baseline_load) = if baseline.is_empty() {
            (None, None)
        } else {
            let load = load_files_once(e, baseline, obs, stop);
            if stop && e.split_a_trace() {
                return (None, None, load);
            }
            (Some(e.take_windows().merged()), Some(load))
        };
        (
            baseline,
            baseline_load,
            load_files_once(e, files, obs, stop),
        )
    };
    let (mut baseline, mut baseline_load, mut load) = once(&mut engine, obs, fresh);
    if fresh && engine.split_a_trace() {
        (baseline, baseline_load, load) =
            read_again(&mut engine, |e, obs| once(e, obs, false), obs);
        load.read_twice = true;
    }
    let current = engine.windows().merged();
    let mut all: Vec<&GraphAgg> = vec![&current];
    all.extend(baseline.as_ref());
    let resolution = engine.resolve(&all);
    let baseline = baseline.map(|b| resolution.apply(&b));
    Analysis {
        engine,
        baseline,
        load,
        baseline_load,
        resolution,
    }
}

impl Analysis {
    /// All input as one window, resolved.
    pub fn whole(&self) -> GraphAgg {
        self.resolution.apply(&self.engine.windows().merged())
    }

    /// Each window of the input, resolved.
    pub fn windows(&self) -> Vec<GraphAgg> {
        self.engine
            .windows()
            .buckets()
            .map(|(_, g)| self.resolution.apply(g))
            .collect()
    }

    /// The findings document of one (resolved) window.
    pub fn findings_doc(&self, g: &GraphAgg) -> FindingsDoc {
        let ctx = Context {
            nodes: self.engine.nodes(),
            names: self.engine.interner(),
        };
        let findings = compute(g, self.baseline.as_ref(), &ctx);
        FindingsDoc::new(g, self.baseline.as_ref(), &findings, &ctx, (0, 0))
    }
}

impl Analysis {
    /// The dashboard's view of the whole input (`replay --serve`): findings against the
    /// baseline if any, with series over the engine's windows.
    pub fn view(&self, now_ns: u64) -> crate::api::view::View {
        use crate::api::view::{FindingHistory, View, ViewInput};
        let cur = self.whole();
        let doc = self.findings_doc(&cur);
        let mut history = FindingHistory::default();
        history.record(now_ns, &doc.findings, u64::MAX);
        let engine = &self.engine;
        let all = self.resolution.apply(&engine.windows().all_time());
        let metrics =
            crate::api::metrics::graph_metrics(&all, engine.nodes(), engine.interner(), &doc, 0);
        let w = engine.windows();
        View::build(ViewInput {
            now_ns,
            cur: &cur,
            base: self.baseline.as_ref(),
            findings: doc,
            nodes: engine.nodes(),
            names: engine.interner(),
            buckets: w.buckets().collect(),
            bucket_ns: w.width_ns(),
            resolution: &self.resolution,
            history: &history,
            metrics,
            aggregates: Default::default(),
        })
    }
}
