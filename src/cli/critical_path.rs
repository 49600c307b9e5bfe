//! `chokepoint critical-path`: each trace's critical path, as it is read.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use chokepoint::analyze::critical_path::PathRecord;
use chokepoint::api::render;
use chokepoint::model::Interner;
use chokepoint::replay::load_files_keep_open;
use chokepoint::report::format::table_ms;

use super::args::{CriticalPathArgs, PathFormat};
use super::exit;
use super::load::{engine_for, report_load};

pub fn run(a: CriticalPathArgs) -> Result<ExitCode> {
    let mut engine = engine_for(&a.engine, &a.analysis, None)?;
    let paths: Arc<Mutex<Vec<PathRecord>>> = Arc::default();
    let sink = paths.clone();
    engine.set_on_trace(Some(Box::new(move |t, path| {
        if let Ok(mut p) = sink.lock() {
            p.push(PathRecord::from_path(t, path));
        }
    })));
    let mut failed = false;
    let stdout = io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    for file in &a.files {
        let load = load_files_keep_open(&mut engine, std::slice::from_ref(file));
        failed |= report_load(&load);
        for p in take(&paths) {
            print_path(&mut w, &p, engine.interner(), a.format)?;
        }
    }
    engine.finish();
    for p in take(&paths) {
        print_path(&mut w, &p, engine.interner(), a.format)?;
    }
    w.flush()?;
    Ok(exit(failed))
}

fn take(paths: &Mutex<Vec<PathRecord>>) -> Vec<PathRecord> {
    paths
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

fn print_path(
    w: &mut dyn Write,
    p: &PathRecord,
    names: &Interner,
    format: PathFormat,
) -> Result<()> {
    match format {
        PathFormat::Json => {
            let doc = chokepoint::api::dto::PathDoc::new(p, names);
            writeln!(w, "{}", serde_json::to_string(&doc)?)?;
        }
        PathFormat::Table => {
            writeln!(
                w,
                "trace {}  {} ms",
                p.trace_id,
                table_ms(p.duration_ns as f64 / 1e6)
            )?;
            let t0 = p.segments.first().map_or(0, |s| s.start_ns);
            let rows: Vec<Vec<String>> = p
                .segments
                .iter()
                .map(|s| {
                    vec![
                        names.resolve(s.node).to_owned(),
                        names.resolve(s.operation).to_owned(),
                        s.part.to_owned(),
                        table_ms((s.start_ns - t0) as f64 / 1e6),
                        table_ms((s.end_ns - s.start_ns) as f64 / 1e6),
                    ]
                })
                .collect();
            let table = render::table(&["node", "operation", "part", "at ms", "ms"], &rows, 3);
            for l in table.lines() {
                writeln!(w, "  {l}")?;
            }
            writeln!(w)?;
        }
    }
    Ok(())
}
