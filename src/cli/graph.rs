//! `chokepoint graph`: the service graph of trace files.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};

use chokepoint::analyze::engine::Engine;
use chokepoint::api::dto::GraphDoc;
use chokepoint::api::render;
use chokepoint::replay::load_files;

use super::args::{GraphArgs, GraphFormat};
use super::exit;
use super::load::{report_load, Progress};

pub fn run(a: GraphArgs) -> Result<ExitCode> {
    let mut engine = Engine::new(a.engine.config());
    let mut progress = Progress::new(&a.files, &[]);
    let load = load_files(&mut engine, &a.files, &mut progress);
    progress.finish();
    let failed = report_load(&load);
    if load.files.is_empty() {
        bail!("no trace file could be read");
    }
    let graph = engine.graph();
    let doc = GraphDoc::new(&graph, engine.nodes(), engine.interner());
    let out = match a.format {
        GraphFormat::Table => render::graph_table(&doc),
        GraphFormat::Json => serde_json::to_string_pretty(&doc)? + "\n",
        GraphFormat::Dot => render::graph_dot(&doc),
    };
    io::stdout().write_all(out.as_bytes())?;
    Ok(exit(failed))
}
