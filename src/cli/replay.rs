//! `chokepoint replay`: findings of trace files, printed or served.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use chokepoint::analyze::graph::GraphAgg;
use chokepoint::api::render;
use chokepoint::replay::analyze;
use chokepoint::serve::daemon;

use super::args::{ReplayArgs, ReportFormat};
use super::exit;
use super::load::{engine_for, report_load, runtime, Progress};

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    // Served, the dashboard's series want buckets: one a minute unless --window says.
    let buckets = match (a.serve, a.window) {
        (true, None) => Some(60_000_000_000),
        (_, w) => w,
    };
    let engine = engine_for(&a.engine, &a.analysis, buckets)?;
    let mut progress = Progress::new(&a.files, &a.baseline);
    let analysis = analyze(engine, &a.files, &a.baseline, &mut progress);
    progress.finish();
    let mut failed = false;
    if let Some(b) = &analysis.baseline_load {
        failed |= report_load(b);
        if b.files.is_empty() {
            bail!("no baseline file could be read");
        }
    }
    failed |= report_load(&analysis.load);
    if analysis.load.files.is_empty() {
        bail!("no trace file could be read");
    }
    if a.serve {
        let listen: std::net::SocketAddr = a
            .api_listen
            .parse()
            .with_context(|| format!("--api-listen {:?} is not an address", a.api_listen))?;
        let view = analysis.view(chokepoint::clock::now_ns());
        let stats = chokepoint::serve::stats::Stats::default();
        stats.spans_received.store(
            analysis.load.spans_seen,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats.spans_analysed.store(
            analysis.load.spans_accepted,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats.spans_rejected.store(
            analysis.load.spans_rejected,
            std::sync::atomic::Ordering::Relaxed,
        );
        runtime()?
            .block_on(chokepoint::serve::offline::serve(
                view,
                stats,
                listen,
                a.trace_url.clone(),
                daemon::signals(),
                |addr| {
                    println!("chokepoint replay serving: api=http://{addr} (Ctrl-C stops)");
                    let _ = io::stdout().flush();
                },
            ))
            .with_context(|| format!("cannot serve on {listen}"))?;
        return Ok(exit(failed));
    }
    let windows: Vec<GraphAgg> = match a.window {
        None => vec![analysis.whole()],
        Some(_) => analysis.windows(),
    };
    let mut out = String::new();
    for g in &windows {
        let mut doc = analysis.findings_doc(g);
        if let Some(f) = a.load {
            doc = doc.with_load(f);
        }
        match a.format {
            ReportFormat::Json => {
                out.push_str(&serde_json::to_string(&doc)?);
                out.push('\n');
            }
            ReportFormat::Table => out.push_str(&render::findings_table(&doc)),
            ReportFormat::Markdown => out.push_str(&render::findings_markdown(&doc)),
        }
    }
    io::stdout().write_all(out.as_bytes())?;
    Ok(exit(failed))
}
