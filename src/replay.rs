//! Feeding trace files through the [`Engine`]: the offline half of the pipeline, shared by
//! the `graph` and (later) `replay` commands, the tests and the benches.

use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::ingest::{read_path, BatchReport, FileError, FileSummary, Location};

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
/// called after each file (for progress display).
pub fn load_files(
    engine: &mut Engine,
    paths: &[PathBuf],
    mut on_file: impl FnMut(&Path, &FileSummary),
) -> LoadSummary {
    let mut out = LoadSummary::default();
    for path in paths {
        let mut batch_problems: Vec<(Location, String)> = Vec::new();
        let mut totals = BatchReport::default();
        let mut sink = |loc: Location, spans: Vec<_>, mut report: BatchReport| {
            engine.ingest(&spans, &mut report);
            for p in &report.details {
                batch_problems.push((loc, p.to_string()));
            }
            // Details beyond the per-batch bound are still counted.
            let listed = report.details.len() as u64;
            let more = (report.rejected + report.repaired).saturating_sub(listed);
            if more > 0 {
                batch_problems.push((loc, format!("{more} more span problems not listed")));
            }
            report.details.clear();
            totals.merge(report);
        };
        match read_path(path, &mut sink) {
            Ok(summary) => {
                for p in &summary.problems {
                    out.problem(format!("{}: {}: {}", path.display(), p.location, p.message));
                }
                on_file(path, &summary);
                out.files.push(summary);
            }
            Err(e) => out.failed.push(e),
        }
        for (loc, p) in batch_problems {
            out.problem(format!("{}: {loc}: {p}", path.display()));
        }
        out.spans_seen += totals.seen;
        out.spans_accepted += totals.accepted;
        out.spans_rejected += totals.rejected;
    }
    engine.finish();
    let issues: Vec<String> = engine.analyzer.issues.details.clone();
    for i in issues {
        out.problem(i);
    }
    out
}
