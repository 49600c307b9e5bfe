//! Command-line interface: argument types and one function per subcommand. Errors are
//! `anyhow` here and only here.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use flate2::write::GzEncoder;

use chokepoint::api::dto::GraphDoc;
use chokepoint::engine::{Engine, EngineConfig};
use chokepoint::ingest::encode;
use chokepoint::ingest::FileSummary;
use chokepoint::render;
use chokepoint::replay::{load_files, LoadSummary};
use chokepoint::simulate::{self, Scenario, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "chokepoint",
    version,
    about = "Finds the bottlenecks and single points of failure of a distributed system from its OpenTelemetry traces",
    long_about = "Finds the bottlenecks and single points of failure of a distributed system from its \
OpenTelemetry traces.\n\nRead trace files (OTLP JSON or protobuf, Jaeger JSON, Zipkin v2 JSON; gzip is \
detected) with `graph`; generate the reference shop's traffic with `simulate`."
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the service call graph of trace files: nodes with requests, errors, latency and
    /// instances; edges with calls, latency and queue delay.
    Graph(GraphArgs),
    /// Generate the reference online shop's traces (OTLP/JSON lines) for one scenario.
    Simulate(SimulateArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Aligned columns for people.
    Table,
    /// The graph document (nodes, edges, percentiles in ms).
    Json,
    /// Graphviz: `chokepoint graph x.json --format dot | dot -Tsvg > graph.svg`.
    Dot,
}

#[derive(Parser, Debug)]
pub struct GraphArgs {
    /// Trace files: OTLP/JSON (lines or one document, Tempo's `batches`), OTLP protobuf (one
    /// message or the Collector file exporter's framing), Jaeger JSON, Zipkin v2 JSON; `.gz`
    /// or not.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Table)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Assembly limits shared by the commands that read traces.
#[derive(Parser, Debug)]
pub struct EngineArgs {
    /// A trace is complete when no span arrived for this long, in span time (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration_ns)]
    pub trace_idle: u64,
    /// Traces held in assembly at once; past it the least recently touched is completed early
    /// (and counted).
    #[arg(long, default_value_t = 100_000)]
    pub max_traces_in_flight: usize,
    /// Spans held in assembly at once, over all traces.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_spans_in_flight: usize,
    /// Spans kept for one trace; later ones are dropped (and counted).
    #[arg(long, default_value_t = 100_000)]
    pub max_spans_per_trace: usize,
}

impl EngineArgs {
    fn config(&self) -> EngineConfig {
        let mut cfg = EngineConfig::default();
        cfg.assembler.trace_idle_ns = self.trace_idle;
        cfg.assembler.max_traces = self.max_traces_in_flight;
        cfg.assembler.max_spans = self.max_spans_in_flight;
        cfg.assembler.max_spans_per_trace = self.max_spans_per_trace;
        cfg
    }
}

#[derive(Parser, Debug)]
pub struct SimulateArgs {
    /// Scenario: healthy, slow-payment, email-backlog, single-db, single-kafka,
    /// single-orchestrator, slow-orchestrator-db.
    #[arg(long, default_value = "healthy")]
    pub scenario: Scenario,
    /// Seed: the same seed gives the same traces, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of entry requests (traces).
    #[arg(long, default_value_t = 300)]
    pub traces: usize,
    /// Entry requests per second of span time.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Write OTLP/JSON lines here (gzip if the name ends in .gz); stdout if absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us`, or plain seconds, into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 5m)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        "m" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ns, us, ms, s, m, h)"
            ))
        }
    };
    Ok((v * mult) as u64)
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Graph(a) => graph(a),
        Command::Simulate(a) => simulate(a),
    }
}

/// Prints the problems of a load to stderr; returns whether any file failed outright.
fn report_load(load: &LoadSummary) -> bool {
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
    if load.spans_rejected > 0 {
        eprintln!(
            "note: {} of {} spans rejected; the rest were analysed",
            load.spans_rejected, load.spans_seen
        );
    }
    !load.failed.is_empty()
}

fn progress_line(path: &Path, s: &FileSummary) {
    if io::stderr().is_terminal() {
        eprintln!(
            "read {} ({}, {} batches)",
            path.display(),
            s.format,
            s.batches
        );
    }
}

fn graph(a: GraphArgs) -> Result<ExitCode> {
    let mut engine = Engine::new(a.engine.config());
    let load = load_files(&mut engine, &a.files, progress_line);
    let failed = report_load(&load);
    if load.files.is_empty() {
        bail!("no trace file could be read");
    }
    let doc = GraphDoc::new(&engine.graph(), &engine.analyzer.nodes, engine.interner());
    let out = match a.format {
        GraphFormat::Table => render::graph_table(&doc),
        GraphFormat::Json => serde_json::to_string_pretty(&doc)? + "\n",
        GraphFormat::Dot => render::graph_dot(&doc),
    };
    io::stdout().write_all(out.as_bytes())?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn simulate(a: SimulateArgs) -> Result<ExitCode> {
    if a.traces == 0 || a.rate.is_nan() || a.rate <= 0.0 {
        bail!("--traces and --rate must be positive");
    }
    let cfg = SimConfig {
        scenario: a.scenario,
        seed: a.seed,
        traces: a.traces,
        rate_per_s: a.rate,
        ..Default::default()
    };
    let write_all = |w: &mut dyn Write| -> io::Result<()> {
        for req in simulate::generate(&cfg) {
            writeln!(w, "{}", encode::encode_line(&req))?;
        }
        Ok(())
    };
    match &a.out {
        None => {
            let mut w = BufWriter::new(io::stdout().lock());
            write_all(&mut w)?;
            w.flush()?;
        }
        Some(p) => {
            let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let written = if p.extension().is_some_and(|e| e == "gz") {
                let mut enc = GzEncoder::new(BufWriter::new(f), flate2::Compression::best());
                write_all(&mut enc).and_then(|()| enc.finish()?.flush())
            } else {
                let mut w = BufWriter::new(f);
                write_all(&mut w).and_then(|()| w.flush())
            };
            written.with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("10s").unwrap(), 10_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration_ns("2m").unwrap(), 120_000_000_000);
        assert_eq!(parse_duration_ns("1.5").unwrap(), 1_500_000_000);
        assert!(parse_duration_ns("ten").is_err());
        assert!(parse_duration_ns("3 weeks").is_err());
    }
}
