mod bad_input;
mod capacity;
mod cli;
mod daemon;
mod dashboard;
mod deploy;
mod findings;
mod golden;
mod harm;
mod nodes;
mod order;
mod properties;
mod proto;
mod realdata;
mod scaleout;
mod severity;
mod tidy;
mod tls;

use std::path::PathBuf;

use chokepoint::analyze::engine::{Engine, EngineConfig};
use chokepoint::api::dto::{FindingDto, FindingsDoc, GraphDoc};
use chokepoint::replay::{analyze, load_files, LoadSummary};

/// The project root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads files into a fresh engine with default settings.
pub fn load(paths: &[PathBuf]) -> (Engine, LoadSummary) {
    let mut engine = Engine::new(EngineConfig::default());
    let summary = load_files(&mut engine, paths, &mut ());
    (engine, summary)
}

pub fn graph_of(paths: &[PathBuf]) -> (GraphDoc, LoadSummary) {
    let (mut engine, summary) = load(paths);
    let graph = engine.graph();
    let doc = GraphDoc::new(&graph, engine.nodes(), engine.interner());
    (doc, summary)
}

/// Replay's findings for `files` (one window), compared with `baseline` if not empty.
pub fn findings_of(files: &[PathBuf], baseline: &[PathBuf]) -> FindingsDoc {
    let a = analyze(
        Engine::new(EngineConfig::default()),
        files,
        baseline,
        &mut (),
    );
    assert!(a.load.failed.is_empty(), "{:?}", a.load.failed);
    a.findings_doc(&a.whole())
}

/// A finding's evidence as JSON, as the API serves it.
pub fn ev(f: &FindingDto) -> serde_json::Value {
    serde_json::to_value(&f.evidence).expect("evidence serializes")
}

/// The highest-scoring finding of a kind.
pub fn top<'a>(doc: &'a FindingsDoc, kind: &str) -> Option<&'a FindingDto> {
    doc.findings.iter().find(|f| f.kind == kind)
}

/// A file of ../shared/realdata, or `None` (with a loud note) when that folder is not beside
/// the checkout.
pub fn realdata(name: &str) -> Option<PathBuf> {
    let p = root().join("../shared/realdata").join(name);
    if p.exists() {
        Some(p)
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing and CI is set: a test that did not run is not green",
            p.display()
        );
    } else {
        eprintln!(
            "NOT RUN: {} is missing (../shared/realdata is not beside the checkout); \
             the real-data tests did not run",
            p.display()
        );
        None
    }
}
