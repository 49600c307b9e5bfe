//! The command line's flags, and nothing that runs them: each command's arguments as clap
//! types, parsed and checked before any work starts.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use chokepoint::analyze::engine::EngineConfig;

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
    /// What if entry traffic were this many times today's (e.g. 2): list every node with a
    /// known capacity at that load, those over it, and their expected latency.
    #[arg(long, value_parser = parse_load)]
    pub load: Option<f64>,
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

/// When a trace read from files is complete.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionArg {
    /// As idle while the input is in time order (read once, analysed as it is read); at the
    /// first span of a trace already completed (files concatenated per process, shuffled),
    /// the input is read again as with end. Same findings as end, in any order.
    Auto,
    /// At the end of the input, whatever order the spans are in (concatenated per-process
    /// files, reversed, shuffled give the same findings). Past the in-flight limits, spans
    /// are spilled to temporary files ($TMPDIR) split by trace id, and each part is
    /// assembled at the end: memory stays bounded, and the disk holds about 100 bytes a span.
    End,
    /// When no span of it came for --trace-idle of span time: holds less and spills nothing,
    /// but a file not in time order splits traces into fragments.
    Idle,
}

/// Assembly limits shared by the commands that read traces.
#[derive(Parser, Debug)]
pub struct EngineArgs {
    /// When a trace is complete: after --trace-idle, or at the end of the input if the input
    /// turns out not to be in time order (auto); at the end always (end); after --trace-idle
    /// always (idle).
    #[arg(long, value_enum, default_value_t = CompletionArg::Auto)]
    pub completion: CompletionArg,
    /// With --completion auto or idle: a trace is complete when no span arrived for this long, in span
    /// time (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration_ns)]
    pub trace_idle: u64,
    /// Traces held in assembly at once; past it, holding to the end, spans are spilled to disk,
    /// and otherwise the least recently touched trace is completed early (counted).
    #[arg(long, default_value_t = 100_000)]
    pub max_traces_in_flight: usize,
    /// Spans held in assembly at once, over all traces (as for traces).
    #[arg(long, default_value_t = 2_000_000)]
    pub max_spans_in_flight: usize,
    /// Spans kept for one trace; later ones are dropped (and counted).
    #[arg(long, default_value_t = 100_000)]
    pub max_spans_per_trace: usize,
}

impl EngineArgs {
    pub fn config(&self) -> EngineConfig {
        let mut cfg = EngineConfig {
            completion: match self.completion {
                CompletionArg::Auto => chokepoint::analyze::engine::Completion::Auto,
                CompletionArg::End => chokepoint::analyze::engine::Completion::AtEnd,
                CompletionArg::Idle => chokepoint::analyze::engine::Completion::Idle,
            },
            ..Default::default()
        };
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
    /// Number of entry requests (traces) [default: 300; the capacity labs, which need minutes
    /// of span time: worker-slots 4000, worker-slots-light 2000, slow-consumer 1600].
    #[arg(long)]
    pub traces: Option<usize>,
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
    chokepoint::clock::parse_duration(s).map(|d| d.as_nanos() as u64)
}

/// A what-if factor on entry traffic: positive and finite.
fn parse_load(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a positive factor on today's entry traffic (2 = twice)"
        )),
    }
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
