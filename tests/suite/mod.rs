mod bad_input;
mod cli;
mod golden;
mod realdata;

use std::path::PathBuf;

use chokepoint::api::dto::GraphDoc;
use chokepoint::engine::{Engine, EngineConfig};
use chokepoint::replay::{load_files, LoadSummary};

/// The project root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads files into a fresh engine with default settings.
pub fn load(paths: &[PathBuf]) -> (Engine, LoadSummary) {
    let mut engine = Engine::new(EngineConfig::default());
    let summary = load_files(&mut engine, paths, |_, _| {});
    (engine, summary)
}

pub fn graph_of(paths: &[PathBuf]) -> (GraphDoc, LoadSummary) {
    let (engine, summary) = load(paths);
    let doc = GraphDoc::new(&engine.graph(), &engine.analyzer.nodes, engine.interner());
    (doc, summary)
}
