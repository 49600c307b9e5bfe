//! Command-line interface: argument types and one function per subcommand. Errors are
//! `anyhow` here and only here.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use flate2::write::GzEncoder;

use std::sync::{Arc, Mutex};

use chokepoint::analyze::critical_path::PathRecord;
use chokepoint::analyze::graph::GraphAgg;
use chokepoint::api::dto::GraphDoc;
use chokepoint::config::{self, Config, Overrides};
use chokepoint::daemon::{self, Bound};
use chokepoint::engine::{Engine, EngineConfig};
use chokepoint::ingest::encode;
use chokepoint::model::Interner;
use chokepoint::render;
use chokepoint::replay::{analyze, load_files_keep_open, LoadObserver};
use chokepoint::replay::{load_files, LoadSummary};
use chokepoint::simulate::{self, stream, Scenario, SimConfig};
use std::time::Duration;

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
    /// Run the daemon: OTLP receivers (gRPC 4317, HTTP 4318), live analysis, the HTTP API
    /// (8787). Works without a config file; `--demo` feeds it the simulated shop.
    Serve(ServeArgs),
    /// Check a configuration file without starting (exit 0 when valid).
    Validate(ValidateArgs),
    /// Print the default configuration, every key documented.
    GenConfig,
    /// Print the service call graph of trace files: nodes with requests, errors, latency and
    /// instances; edges with calls, latency and queue delay.
    Graph(GraphArgs),
    /// Analyse trace files offline and print the findings: bottlenecks and single points of
    /// failure, each with its evidence and cure. The whole input is one window unless
    /// --window says otherwise.
    Replay(ReplayArgs),
    /// Print each trace's critical path: the chain of spans its latency waited on.
    CriticalPath(CriticalPathArgs),
    /// The global view: findings from the aggregates several chokepoints exported to a
    /// Prometheus-compatible store (scraped or remote-written), summed across instances and
    /// scored as one. Names the instances that contributed; silent ones make it partial (exit
    /// status 3). `serve` with `source.prometheus_url` serves the same view live.
    Query(QueryArgs),
    /// Generate the reference online shop's traces (OTLP/JSON lines) for one scenario.
    Simulate(SimulateArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Aligned columns for people.
    Table,
    /// The findings document (what the daemon's /findings serves); one line per window.
    Json,
    /// A report to paste into an incident review.
    Markdown,
}

#[derive(Parser, Debug)]
pub struct QueryArgs {
    /// The store's HTTP API (Prometheus, Mimir's /prometheus, Thanos Query, VictoriaMetrics).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub prometheus_url: String,
    /// The window the findings are about, ending at --at.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// End of the window: Unix seconds; default now.
    #[arg(long)]
    pub at: Option<f64>,
    /// Baseline: this much time before the window (the daemon's default is its last hour).
    #[arg(long, default_value = "1h", conflicts_with = "baseline_offset")]
    pub baseline: String,
    /// Baseline: the same window this long ago instead ("same hour last week": 7d).
    #[arg(long)]
    pub baseline_offset: Option<String>,
    /// An instance whose last sample is older than this before the window's end is silent.
    #[arg(long, default_value = "1m")]
    pub silent_after: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Parser, Debug)]
pub struct ReplayArgs {
    /// Trace files (any format `graph` reads).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A fault-free capture to compare with: nodes whose critical-path time per request
    /// jumped against it lead the findings. Put it after the files:
    /// `replay incident.jsonl --baseline normal.jsonl`.
    #[arg(long, num_args = 1..)]
    pub baseline: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Split the input into windows of this length by span time (e.g. 1m) and report each.
    #[arg(long, value_parser = parse_duration_ns)]
    pub window: Option<u64>,
    /// Open the dashboard and API on the replayed data instead of printing (an incident
    /// review without a daemon); stops on Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: where to listen.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub api_listen: String,
    /// With --serve: link trace ids to a trace viewer, e.g.
    /// "http://localhost:16686/trace/{trace_id}".
    #[arg(long)]
    pub trace_url: Option<String>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Parser, Debug)]
pub struct AnalysisArgs {
    /// Clock-skew tolerance of the critical path, as a fraction of the parent span: siblings
    /// overlapping by less count as sequential (CRISP uses 0.01). 0 is Jaeger's strict rule.
    #[arg(long, default_value_t = 0.01)]
    pub skew_tolerance: f64,
}

#[derive(Parser, Debug)]
pub struct CriticalPathArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = PathFormat::Table)]
    pub format: PathFormat,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathFormat {
    /// One block per trace for people.
    Table,
    /// One JSON object per line per trace.
    Json,
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
pub struct ServeArgs {
    /// TOML configuration (see `chokepoint gen-config`); optional.
    #[arg(long, env = "CHOKEPOINT_CONFIG")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address.
    #[arg(long, env = "CHOKEPOINT_GRPC_LISTEN")]
    pub grpc_listen: Option<String>,
    /// OTLP/HTTP listen address.
    #[arg(long, env = "CHOKEPOINT_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// HTTP API listen address.
    #[arg(long, env = "CHOKEPOINT_API_LISTEN")]
    pub api_listen: Option<String>,
    /// gRPC query API listen address.
    #[arg(long, env = "CHOKEPOINT_API_GRPC_LISTEN")]
    pub api_grpc_listen: Option<String>,
    /// Directory for state snapshots (restored at start).
    #[arg(long, env = "CHOKEPOINT_STATE_DIR")]
    pub state_dir: Option<String>,
    /// Default findings window (e.g. 5m).
    #[arg(long, env = "CHOKEPOINT_WINDOW")]
    pub window: Option<String>,
    /// How often findings are recomputed (e.g. 5s).
    #[arg(long, env = "CHOKEPOINT_REFRESH")]
    pub refresh: Option<String>,
    /// Trace completion idle time (e.g. 10s).
    #[arg(long, env = "CHOKEPOINT_TRACE_IDLE")]
    pub trace_idle: Option<String>,
    /// Export requests queued for analysis before exporters are told to retry.
    #[arg(long, env = "CHOKEPOINT_QUEUE_BATCHES")]
    pub queue_batches: Option<usize>,
    /// Override any configuration key: --set analysis.history=2h (repeatable). Every key
    /// can also be set as CHOKEPOINT_<SECTION>_<KEY>, e.g. CHOKEPOINT_ANALYSIS_HISTORY=2h.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// Feed the daemon the simulated shop, so findings appear within seconds.
    #[arg(long)]
    pub demo: bool,
    /// The demo's scenario schedule.
    #[arg(
        long,
        default_value = "healthy:30s,single-db:60s,healthy:30s,slow-payment"
    )]
    pub demo_schedule: String,
    /// The demo's entry requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub demo_rate: f64,
}

#[derive(Parser, Debug)]
pub struct ValidateArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Parser, Debug)]
pub struct SimulateArgs {
    /// Stream live over OTLP/gRPC to this endpoint (e.g. http://127.0.0.1:4317) instead of
    /// writing a file; --scenario may then be a schedule: healthy:30s,single-db
    #[arg(long)]
    pub endpoint: Option<String>,
    /// With --endpoint: stop after this long (default: when the schedule ends, or never).
    #[arg(long, value_parser = parse_duration_ns)]
    pub duration: Option<u64>,
    /// Scenario: healthy, slow-payment, email-backlog, single-db, single-kafka,
    /// single-orchestrator, slow-orchestrator-db.
    #[arg(long, default_value = "healthy")]
    pub scenario: String,
    /// Seed: the same seed gives the same traces, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of entry requests (traces).
    #[arg(long, default_value_t = 300)]
    pub traces: usize,
    /// Entry requests per second of span time.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Write OTLP/JSON lines here (gzip if the name ends in .gz; one OTLP protobuf message if
    /// it ends in .pb, or, ending in .binpb, the Collector file exporter's proto format: one
    /// length-prefixed request per 20 traces, for captures too big for one message); stdout if
    /// absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not SECTION.KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// A duration flag (`10s`, `500ms`, `2m`, …) in nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    config::parse_duration(s).map(|d| d.as_nanos() as u64)
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
        Command::Replay(a) => replay(a),
        Command::Query(a) => query(a),
        Command::CriticalPath(a) => critical_path(a),
        Command::Simulate(a) => simulate(a),
        Command::Serve(a) => serve(a),
        Command::Validate(a) => validate(a),
        Command::GenConfig => {
            print!("{}", config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
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
    if load.spans_seen == 0 && !load.files.is_empty() {
        // Readable files without a span: a wrong file or an empty capture, not "0 traces".
        eprintln!("error: no spans in the input");
        return true;
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
struct Progress {
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

    fn new(files: &[PathBuf], baseline: &[PathBuf]) -> Progress {
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

    fn finish(&mut self) {
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
}

fn graph(a: GraphArgs) -> Result<ExitCode> {
    let mut engine = Engine::new(a.engine.config());
    let mut progress = Progress::new(&a.files, &[]);
    let load = load_files(&mut engine, &a.files, &mut progress);
    progress.finish();
    let failed = report_load(&load);
    if load.files.is_empty() {
        bail!("no trace file could be read");
    }
    let graph = engine.graph();
    let doc = GraphDoc::new(&graph, &engine.analyzer.nodes, engine.interner());
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

fn engine_for(e: &EngineArgs, a: &AnalysisArgs, window_ns: Option<u64>) -> Result<Engine> {
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
    engine.analyzer.critical_path.skew_tolerance = a.skew_tolerance;
    Ok(engine)
}

fn replay(a: ReplayArgs) -> Result<ExitCode> {
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
        let view = analysis.view(chokepoint::pipeline::now_ns());
        let stats = chokepoint::ingest::submit::Stats::default();
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
            .block_on(chokepoint::api::offline::serve(
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
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let windows: Vec<GraphAgg> = match a.window {
        None => vec![analysis.whole()],
        Some(_) => analysis.windows(),
    };
    let mut out = String::new();
    for g in &windows {
        let doc = analysis.findings_doc(g);
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn query(a: QueryArgs) -> Result<ExitCode> {
    let d =
        |what: &str, v: &str| parse_duration_days(v).map_err(|e| anyhow::anyhow!("--{what}: {e}"));
    let window = d("window", &a.window)?.as_secs_f64();
    let to =
        a.at.unwrap_or_else(|| chokepoint::pipeline::now_ns() as f64 / 1e9);
    let from = to - window;
    let baseline = match &a.baseline_offset {
        Some(off) => {
            let off = d("baseline-offset", off)?.as_secs_f64();
            (from - off, to - off)
        }
        None => (from - d("baseline", &a.baseline)?.as_secs_f64(), from),
    };
    let silent_after = d("silent-after", &a.silent_after)?;
    let store = chokepoint::global::Store::new(&a.prometheus_url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // One range query covers what is contiguous; an offset baseline is asked apart.
    let series = rt.block_on(async {
        if baseline.1 >= from {
            return store.range(baseline.0, to).await;
        }
        let mut s = store.range(baseline.0, baseline.1).await?;
        s.extend(store.range(from, to).await?);
        Ok(s)
    })?;
    if series.is_empty() {
        bail!(
            "{}: no chokepoint series between {} and {} (is export.aggregates on, and the store \
             scraping or receiving them?)",
            a.prometheus_url,
            chokepoint::api::dto::rfc3339((baseline.0.min(from) * 1e9) as u64),
            chokepoint::api::dto::rfc3339((to * 1e9) as u64)
        );
    }
    let contributors = chokepoint::global::contributors(&series, to, silent_after);
    let doc = chokepoint::global::findings(&series, (from, to), Some(baseline), &contributors);
    let out = match a.format {
        ReportFormat::Json => serde_json::to_string(&doc)? + "\n",
        ReportFormat::Table => render::findings_table(&doc),
        ReportFormat::Markdown => render::findings_markdown(&doc),
    };
    io::stdout().write_all(out.as_bytes())?;
    Ok(if contributors.iter().any(|c| c.silent) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A duration as the config takes it, plus days (`7d`) for baselines.
fn parse_duration_days(v: &str) -> Result<Duration, String> {
    match v.trim().strip_suffix('d') {
        Some(n) => n
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|d| Duration::try_from_secs_f64(d * 86_400.0).ok())
            .ok_or_else(|| format!("{v:?} is not a duration")),
        None => config::parse_duration(v),
    }
}

fn critical_path(a: CriticalPathArgs) -> Result<ExitCode> {
    let mut engine = engine_for(&a.engine, &a.analysis, None)?;
    let paths: Arc<Mutex<Vec<PathRecord>>> = Arc::default();
    let sink = paths.clone();
    engine.analyzer.on_trace = Some(Box::new(move |t, path| {
        if let Ok(mut p) = sink.lock() {
            p.push(PathRecord::from_path(t, path));
        }
    }));
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
            writeln!(w, "{}", chokepoint::api::dto::path_json(p, names))?;
        }
        PathFormat::Table => {
            writeln!(
                w,
                "trace {}  {} ms",
                p.trace_id,
                render::fmt_ms(p.duration_ns as f64 / 1e6)
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
                        render::fmt_ms((s.start_ns - t0) as f64 / 1e6),
                        render::fmt_ms((s.end_ns - s.start_ns) as f64 / 1e6),
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

fn load_config(path: Option<&PathBuf>, o: &Overrides) -> Result<Config> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read config {}", p.display()))?,
        None => String::new(),
    };
    let where_ = path.map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    Config::from_toml(&text, o).with_context(|| format!("invalid configuration in {where_}"))
}

fn validate(a: ValidateArgs) -> Result<ExitCode> {
    let o = Overrides {
        set: config::env_overrides(std::env::vars()),
        ..Default::default()
    };
    load_config(Some(&a.config), &o)?;
    println!("ok: {}", a.config.display());
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let mut set = config::env_overrides(std::env::vars());
    set.extend(a.set.iter().cloned());
    let o = Overrides {
        set,
        grpc_listen: a.grpc_listen.clone(),
        http_listen: a.http_listen.clone(),
        api_listen: a.api_listen.clone(),
        api_grpc_listen: a.api_grpc_listen.clone(),
        state_dir: a.state_dir.clone(),
        window: a.window.clone(),
        refresh: a.refresh.clone(),
        trace_idle: a.trace_idle.clone(),
        queue_batches: a.queue_batches,
    };
    let cfg = load_config(a.config.as_ref(), &o)?;
    let schedule = if a.demo {
        Some(stream::parse_schedule(&a.demo_schedule).map_err(|e| anyhow::anyhow!(e))?)
    } else {
        None
    };
    let rate = a.demo_rate;
    let rt = runtime()?;
    rt.block_on(async move {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Bound>();
        let demo = schedule.map(|schedule| {
            tokio::spawn(async move {
                let Ok(bound) = ready_rx.await else { return };
                let endpoint = format!("http://{}", bound.grpc);
                if let Err(e) = stream::stream(&endpoint, &schedule, rate, 1, None).await {
                    tracing::warn!(%e, "demo traffic stopped");
                }
            })
        });
        let api_scheme = if cfg.api_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let result = daemon::run(cfg, daemon::signals(), |b: Bound| {
            println!(
                "chokepoint listening: otlp-grpc={} otlp-http={} api={api_scheme}://{} api-grpc={}",
                b.grpc, b.http, b.api, b.api_grpc
            );
            let _ = io::stdout().flush();
            let _ = ready_tx.send(b);
        })
        .await;
        if let Some(d) = demo {
            d.abort();
        }
        result
    })?;
    Ok(ExitCode::SUCCESS)
}

fn simulate(a: SimulateArgs) -> Result<ExitCode> {
    if let Some(endpoint) = &a.endpoint {
        let schedule = stream::parse_schedule(&a.scenario).map_err(|e| anyhow::anyhow!(e))?;
        let total = a.duration.map(Duration::from_nanos);
        let sent =
            runtime()?.block_on(stream::stream(endpoint, &schedule, a.rate, a.seed, total))?;
        eprintln!("sent {sent} traces to {endpoint}");
        return Ok(ExitCode::SUCCESS);
    }
    let scenario: Scenario = a.scenario.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if a.traces == 0 || a.rate.is_nan() || a.rate <= 0.0 {
        bail!("--traces and --rate must be positive");
    }
    let cfg = SimConfig {
        scenario,
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
        Some(p) if p.extension().is_some_and(|e| e == "binpb") => {
            let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let mut w = BufWriter::new(f);
            let mut write = |resource_spans| -> io::Result<()> {
                let req =
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                        resource_spans,
                    };
                let bytes = prost::Message::encode_to_vec(&req);
                w.write_all(&(bytes.len() as u32).to_be_bytes())?;
                w.write_all(&bytes)
            };
            let mut chunk = Vec::new();
            let mut written = Ok(());
            for (i, req) in simulate::generate(&cfg).enumerate() {
                chunk.extend(req.resource_spans);
                if i % 20 == 19 {
                    written = written.and_then(|()| write(std::mem::take(&mut chunk)));
                }
            }
            if !chunk.is_empty() {
                written = written.and_then(|()| write(chunk));
            }
            written
                .and_then(|()| w.flush())
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Some(p) if p.extension().is_some_and(|e| e == "pb") => {
            // One serialized ExportTraceServiceRequest holding every trace.
            let all = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                resource_spans: simulate::generate(&cfg)
                    .flat_map(|r| r.resource_spans)
                    .collect(),
            };
            std::fs::write(p, prost::Message::encode_to_vec(&all))
                .with_context(|| format!("cannot write {}", p.display()))?;
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
