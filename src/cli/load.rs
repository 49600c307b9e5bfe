//! What the commands that read trace files share: the engine their flags describe, a
//! progress bar for long inputs, and the load's problems on stderr.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use chokepoint::analyze::engine::Engine;
use chokepoint::replay::{LoadObserver, LoadSummary};

use super::args::{AnalysisArgs, EngineArgs};

/// Prints the problems of a load to stderr; returns whether any file failed outright.
pub fn report_load(load: &LoadSummary) -> bool {
    for p in &load.problems {
        eprintln!("warning: {p}");
    }
    if load.problem_count > load.problems.len() as u64 {
        eprintln!(
            "warning: {} more problems not shown",
            load.problem_count - load.problems.len() as u64
        );
    }
    for f in &load.failed {
        eprintln!("error: {f}");
    }
    if load.spans_seen == 0 && !load.files.is_empty() {
        // Readable files without a span: a wrong file or an empty capture, not "0 traces".
        eprintln!("error: no spans in the input");
        return true;
    }
    if load.read_twice {
        eprintln!(
            "note: the input is not in time order (spans of a trace far apart): read twice, every trace held to the end (--completion end reads once)"
        );
    }
    if load.spilled.spans > 0 {
        eprintln!(
            "note: {} spans held on disk to assemble traces whole, in {} parts (--max-spans-in-flight)",
            load.spilled.spans, load.spilled.parts
        );
    }
    if load.spans_rejected > 0 {
        eprintln!(
            "note: {} of {} spans rejected; the rest were analysed",
            load.spans_rejected, load.spans_seen
        );
    }
    !load.failed.is_empty()
}

/// A progress bar on stderr for long inputs, only when stderr is a terminal.
pub struct Progress {
    total: u64,
    enabled: bool,
    last_draw: Option<Instant>,
    /// Bytes of the loads finished before the current one (baseline, then files).
    offset: u64,
    last: u64,
}

impl Progress {
    /// Inputs smaller than this finish before a bar would help.
    const MIN_BYTES: u64 = 8 << 20;

    pub fn new(files: &[PathBuf], baseline: &[PathBuf]) -> Progress {
        let total = files
            .iter()
            .chain(baseline)
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Progress {
            total,
            enabled: io::stderr().is_terminal() && total >= Self::MIN_BYTES,
            last_draw: None,
            offset: 0,
            last: 0,
        }
    }

    fn draw(&mut self, done: u64) {
        let frac = (done as f64 / self.total.max(1) as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:>3.0}%  {:.1} / {:.1} MB",
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            done as f64 / 1e6,
            self.total as f64 / 1e6
        );
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("\r{}\r", " ".repeat(60));
        }
    }
}

impl LoadObserver for Progress {
    fn bytes(&mut self, done: u64) {
        if done < self.last {
            // A new load started (the files after the baseline).
            self.offset += self.last;
        }
        self.last = done;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_none_or(|t| now.duration_since(t).as_millis() >= 100)
        {
            self.last_draw = Some(now);
            self.draw(self.offset + done);
        }
    }

    fn reading_again(&mut self) {
        // The bar starts again, saying why.
        self.offset = 0;
        self.last = 0;
        if self.enabled {
            eprintln!("\rinput not in time order: reading it again, every trace held to the end");
        }
    }
}

pub fn engine_for(e: &EngineArgs, a: &AnalysisArgs, window_ns: Option<u64>) -> Result<Engine> {
    if !(0.0..=0.5).contains(&a.skew_tolerance) {
        bail!("--skew-tolerance must be between 0 and 0.5");
    }
    let mut cfg = e.config();
    if let Some(w) = window_ns {
        if w == 0 {
            bail!("--window must be positive");
        }
        cfg.window_ns = w;
        cfg.max_windows = usize::MAX;
    }
    let mut engine = Engine::new(cfg);
    engine.set_critical_path(chokepoint::analyze::critical_path::CriticalPathConfig {
        skew_tolerance: a.skew_tolerance,
    });
    Ok(engine)
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
