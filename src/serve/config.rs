//! The daemon's configuration: TOML in, a validated [`Config`] out, once, at the edge.
//!
//! Precedence: built-in defaults < the TOML file (`--config`) < `CHOKEPOINT_*` environment
//! variables < command-line flags. [`DEFAULT_TOML`] is what `chokepoint gen-config` prints and
//! what systemd/chokepoint.toml holds (a test keeps them equal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::parse_duration;
use crate::serve::listener::Limits;
use crate::serve::tls::TlsFiles;

/// Every key, with its default and what it does.
pub const DEFAULT_TOML: &str = r#"# chokepoint configuration. Every key is optional; these are the defaults.
# Each can be overridden by a flag of `chokepoint serve` or a CHOKEPOINT_* variable
# (e.g. CHOKEPOINT_GRPC_LISTEN=0.0.0.0:4317).

[receivers]
# OTLP/gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export); gzip and zstd accepted.
grpc_listen = "127.0.0.1:4317"
# OTLP/HTTP: POST /v1/traces, application/x-protobuf or application/json; gzip and zstd accepted.
http_listen = "127.0.0.1:4318"
# Largest request accepted, checked after decompression (bytes).
max_request_bytes = 16777216
# A file holding a bearer token that exporters must send (Authorization: Bearer <token>,
# gRPC metadata or HTTP header). Empty: no token (fine on loopback; a warning otherwise).
bearer_token_file = ""
# A client must finish its TLS handshake and request head within header_read_timeout; a
# connection with nothing moving for idle_timeout is closed (gRPC clients are pinged, so an
# idle exporter stays connected). Past max_connections, new connections are closed at once.
header_read_timeout = "10s"
idle_timeout = "2m"
max_connections = 1024
# An export must arrive whole within request_timeout, body included (HTTP answers 408, gRPC
# DEADLINE_EXCEEDED): a client dribbling a body a byte at a time is cut off.
request_timeout = "60s"

[receivers.tls]
# TLS for both OTLP receivers: PEM certificate chain and private key (both empty: plain
# text). Re-read when the files change, so certificates rotate without a restart.
cert_file = ""
key_file = ""
# PEM CA bundle: exporters must present a certificate it signed (mutual TLS).
client_ca_file = ""

[api]
# The dashboard (/) and HTTP API (/findings, /graph, /nodes, /series/..., /operations,
# /events, /metrics, ... see /openapi.json); and the gRPC query API (chokepoint.v1.Findings).
listen = "127.0.0.1:8787"
grpc_listen = "127.0.0.1:8788"
# Link for exemplar trace ids in the dashboard, {trace_id} replaced: e.g.
# "http://jaeger:16686/trace/{trace_id}" or Grafana Explore on Tempo. Empty: ids only.
trace_url = ""
# A file holding the bearer token the API and dashboard data require (separate from the
# receivers'); /healthz and /readyz stay open. Empty: no token.
bearer_token_file = ""
# Host names the API answers to, comma-separated (IP addresses and localhost always work):
# a web page cannot read the API through DNS rebinding. "*" allows any.
hosts = ""
# Web origins allowed to read the API from a browser (CORS), comma-separated, e.g.
# "https://grafana.example.com". Empty: none (a page elsewhere cannot read it).
cors_origins = ""
# As for the receivers (the dashboard's event stream sends a keep-alive every 15s).
header_read_timeout = "10s"
idle_timeout = "2m"
max_connections = 1024

[api.tls]
# TLS for the HTTP API and dashboard and the gRPC query API; as for the receivers.
cert_file = ""
key_file = ""
client_ca_file = ""

[pipeline]
# Export requests waiting for analysis; past this, exporters get a retryable answer
# (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After) and back off.
queue_batches = 512
# A trace is complete when no span of it arrived for this long (wall time).
trace_idle = "10s"
max_traces_in_flight = 100000
max_spans_in_flight = 2000000
max_spans_per_trace = 100000
# Spans lasting longer are rejected (with the reason, in the partial-success answer): an end
# time in the year 2554 must not poison percentiles. Live, spans starting before 2000 or more
# than a bucket ahead of the clock are rejected too.
max_span_duration = "6h"

[analysis]
# Time buckets of the live aggregates, and how much history is kept for change detection.
bucket = "1m"
history = "1h"
# The window /findings reports by default; older history is its baseline.
window = "5m"
# How often findings are recomputed.
refresh = "5s"
# Critical-path clock-skew tolerance, as a fraction of the parent span (CRISP uses 0.01).
skew_tolerance = 0.01
# Recent traces whose critical paths are kept for /traces/{id}/critical-path.
keep_traces = 5000
# Memory the windowed aggregates may use (estimated, MiB). Past it, the least-used nodes are
# folded into one overflow node and old history is coarsened, with a warning, counted in
# chokepoint_budget_folds_total.
memory_budget_mb = 256

[state]
# Directory for snapshots (restored at start); empty to keep no state.
dir = ""
snapshot_interval = "30s"

[export]
# The aggregates the findings are computed from, as chokepoint_* counters on /metrics, so a
# Prometheus-compatible store can sum several instances into one view (README "Scaling out").
aggregates = true
# Aggregate series exported at most; past it the rest are left out, counted in
# chokepoint_export_series_dropped.
max_series = 100000
# Prometheus remote-write endpoint, plain HTTP (e.g. http://127.0.0.1:9090/api/v1/write); empty
# for none.
remote_write_url = ""
remote_write_interval = "15s"
# The `chokepoint_instance` label remote-written series carry (scraped series get Prometheus'
# own `instance`); empty for this host's name and the OTLP/gRPC port.
instance = ""

[source]
# A Prometheus-compatible HTTP API (e.g. http://127.0.0.1:9090) holding what several instances
# exported: this daemon then serves the global view, their aggregates summed, instead of its
# own (README "Scaling out"). Empty: analyse what the receivers get.
prometheus_url = ""
# An instance not heard from for this long before the window's end makes the findings partial.
silent_after = "1m"
"#;

/// The file as written. Unknown keys are errors: a typo must not silently do nothing.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub receivers: RawReceivers,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub pipeline: RawPipeline,
    #[serde(default)]
    pub analysis: RawAnalysis,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub export: RawExport,
    #[serde(default)]
    pub source: RawSource,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub prometheus_url: Option<String>,
    pub silent_after: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub aggregates: Option<bool>,
    pub max_series: Option<usize>,
    pub remote_write_url: Option<String>,
    pub remote_write_interval: Option<String>,
    pub instance: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReceivers {
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    pub max_request_bytes: Option<usize>,
    pub bearer_token_file: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub request_timeout: Option<String>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: Option<String>,
    pub grpc_listen: Option<String>,
    pub trace_url: Option<String>,
    pub bearer_token_file: Option<String>,
    pub hosts: Option<String>,
    pub cors_origins: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub queue_batches: Option<usize>,
    pub trace_idle: Option<String>,
    pub max_traces_in_flight: Option<usize>,
    pub max_spans_in_flight: Option<usize>,
    pub max_spans_per_trace: Option<usize>,
    pub max_span_duration: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub bucket: Option<String>,
    pub history: Option<String>,
    pub window: Option<String>,
    pub refresh: Option<String>,
    pub skew_tolerance: Option<f64>,
    pub keep_traces: Option<usize>,
    pub memory_budget_mb: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub dir: Option<String>,
    pub snapshot_interval: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub max_request_bytes: usize,
    pub api_listen: SocketAddr,
    pub api_grpc_listen: SocketAddr,
    pub queue_batches: usize,
    pub trace_idle: Duration,
    pub max_traces_in_flight: usize,
    pub max_spans_in_flight: usize,
    pub max_spans_per_trace: usize,
    pub max_span_duration: Duration,
    pub bucket: Duration,
    pub history: Duration,
    pub window: Duration,
    pub refresh: Duration,
    pub skew_tolerance: f64,
    pub keep_traces: usize,
    pub memory_budget_mb: usize,
    pub state_dir: Option<PathBuf>,
    pub snapshot_interval: Duration,
    /// Template linking trace ids to a trace viewer (`{trace_id}` replaced), if any.
    pub trace_url: Option<String>,
    /// Token files: exporters' (receivers) and the API's.
    pub receivers_token_file: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    /// Host names the API answers to besides IP literals and localhost.
    pub api_hosts: Vec<String>,
    /// Origins allowed to read the API cross-origin (CORS); none by default.
    pub api_cors_origins: Vec<String>,
    /// TLS and connection limits: the receivers' and the API's.
    pub receivers_tls: Option<TlsFiles>,
    pub receivers_limits: Limits,
    /// How long one export may take, body included, on both OTLP receivers.
    pub receivers_request_timeout: Duration,
    pub api_tls: Option<TlsFiles>,
    pub api_limits: Limits,
    pub export: ExportConfig,
    /// Where the findings come from: this daemon's receivers, or a store (the global view).
    pub source: SourceConfig,
}

/// A store holding several instances' aggregates; `None` when the daemon analyses its own
/// receivers' spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceConfig {
    pub prometheus_url: Option<String>,
    pub silent_after: Duration,
}

/// Where the aggregates go besides this instance's own findings (see [`crate::scale::exchange`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub aggregates: bool,
    pub max_series: usize,
    pub remote_write_url: Option<String>,
    pub remote_write_interval: Duration,
    pub instance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
}

/// Values that override the file (from flags or the environment); `None` keeps the file's.
/// `set` holds generic `section.key=value` overrides, applied before the named ones.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub set: Vec<(String, String)>,
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    pub api_listen: Option<String>,
    pub api_grpc_listen: Option<String>,
    pub state_dir: Option<String>,
    pub window: Option<String>,
    pub refresh: Option<String>,
    pub trace_idle: Option<String>,
    pub queue_batches: Option<usize>,
}

/// Every `section.key` the file may hold (those of [`DEFAULT_TOML`]).
pub fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v.as_table() {
                Some(sub) => walk(&key, sub, out),
                None if !prefix.is_empty() => out.push(key),
                None => {}
            }
        }
    }
    let table: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
    let mut out = Vec::new();
    walk("", &table, &mut out);
    out
}

/// `CHOKEPOINT_<SECTION>_<KEY>` variables set in `vars`, as `section.key=value` overrides.
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let keys = known_keys();
    let mut out: Vec<(String, String)> = vars
        .filter_map(|(name, value)| {
            let key = keys.iter().find(|k| {
                format!("CHOKEPOINT_{}", k.replace('.', "_")).eq_ignore_ascii_case(&name)
            })?;
            Some((key.clone(), value))
        })
        .collect();
    out.sort();
    out
}

/// Sets `section.key` to `value`, typed like the default's value (a number stays a number).
fn set_key(table: &mut toml::Table, key: &str, value: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "--set",
        message,
    };
    if !known_keys().iter().any(|k| k == key) {
        return Err(invalid(format!(
            "unknown key {key:?}; see chokepoint gen-config"
        )));
    }
    let (section, name) = key
        .rsplit_once('.')
        .ok_or_else(|| invalid(format!("{key:?} is not section.key")))?;
    let defaults: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
    let default = section
        .split('.')
        .try_fold(&defaults, |t, s| t.get(s)?.as_table())
        .and_then(|t| t.get(name));
    let typed = match default {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .parse()
                .map_err(|_| invalid(format!("{key} wants a whole number, not {value:?}")))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            value
                .parse()
                .map_err(|_| invalid(format!("{key} wants a number, not {value:?}")))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match value {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(format!("{key} wants true or false, not {value:?}"))),
        }),
        _ => toml::Value::String(value.to_owned()),
    };
    let mut sec = table;
    for part in section.split('.') {
        sec = sec
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| invalid(format!("{section} is not a section")))?;
    }
    sec.insert(name.to_owned(), typed);
    Ok(())
}

/// A comma-separated list, blanks dropped.
fn list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

fn tls_files(section: &'static str, raw: &RawTls) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(PathBuf::from);
    match (path(&raw.cert_file), path(&raw.key_file)) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca: path(&raw.client_ca_file),
        })),
        (None, None) if path(&raw.client_ca_file).is_none() => Ok(None),
        _ => Err(ConfigError::Invalid {
            key: section,
            message: "cert_file and key_file go together (client_ca_file needs both)".into(),
        }),
    }
}

fn limits(
    section: &'static [&'static str; 3],
    header: &Option<String>,
    idle: &Option<String>,
    max: Option<usize>,
) -> Result<Limits, ConfigError> {
    Ok(Limits {
        header_read_timeout: dur(section[0], header.as_deref().unwrap_or("10s"))?,
        idle_timeout: dur(section[1], idle.as_deref().unwrap_or("2m"))?,
        max_connections: positive(section[2], max.unwrap_or(1024))?,
    })
}

fn addr(key: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("{v:?} is not an address like 127.0.0.1:4317"),
    })
}

fn dur(key: &'static str, v: &str) -> Result<Duration, ConfigError> {
    parse_duration(v).map_err(|message| ConfigError::Invalid { key, message })
}

fn positive(key: &'static str, v: usize) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid {
            key,
            message: "must be positive".into(),
        });
    }
    Ok(v)
}

impl Config {
    /// The defaults (the same as [`DEFAULT_TOML`]).
    pub fn default_config() -> Config {
        Config::from_toml(DEFAULT_TOML, &Overrides::default())
            .unwrap_or_else(|e| unreachable!("DEFAULT_TOML is valid: {e}"))
    }

    pub fn from_toml(text: &str, o: &Overrides) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text)?;
        for (key, value) in &o.set {
            set_key(&mut table, key, value)?;
        }
        let raw: RawConfig = table.try_into()?;
        Config::resolve(raw, o)
    }

    pub fn resolve(raw: RawConfig, o: &Overrides) -> Result<Config, ConfigError> {
        let pick = |over: &Option<String>, file: &Option<String>, default: &str| -> String {
            over.clone()
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_owned())
        };
        let r = &raw.receivers;
        let a = &raw.analysis;
        let p = &raw.pipeline;
        let cfg = Config {
            grpc_listen: addr(
                "receivers.grpc_listen",
                &pick(&o.grpc_listen, &r.grpc_listen, "127.0.0.1:4317"),
            )?,
            http_listen: addr(
                "receivers.http_listen",
                &pick(&o.http_listen, &r.http_listen, "127.0.0.1:4318"),
            )?,
            max_request_bytes: positive(
                "receivers.max_request_bytes",
                r.max_request_bytes.unwrap_or(16 << 20),
            )?,
            api_listen: addr(
                "api.listen",
                &pick(&o.api_listen, &raw.api.listen, "127.0.0.1:8787"),
            )?,
            api_grpc_listen: addr(
                "api.grpc_listen",
                &pick(&o.api_grpc_listen, &raw.api.grpc_listen, "127.0.0.1:8788"),
            )?,
            queue_batches: positive(
                "pipeline.queue_batches",
                o.queue_batches.or(p.queue_batches).unwrap_or(512),
            )?,
            trace_idle: dur(
                "pipeline.trace_idle",
                &pick(&o.trace_idle, &p.trace_idle, "10s"),
            )?,
            max_traces_in_flight: positive(
                "pipeline.max_traces_in_flight",
                p.max_traces_in_flight.unwrap_or(100_000),
            )?,
            max_spans_in_flight: positive(
                "pipeline.max_spans_in_flight",
                p.max_spans_in_flight.unwrap_or(2_000_000),
            )?,
            max_spans_per_trace: positive(
                "pipeline.max_spans_per_trace",
                p.max_spans_per_trace.unwrap_or(100_000),
            )?,
            max_span_duration: dur(
                "pipeline.max_span_duration",
                p.max_span_duration.as_deref().unwrap_or("6h"),
            )?,
            bucket: dur("analysis.bucket", a.bucket.as_deref().unwrap_or("1m"))?,
            history: dur("analysis.history", a.history.as_deref().unwrap_or("1h"))?,
            window: dur("analysis.window", &pick(&o.window, &a.window, "5m"))?,
            refresh: dur("analysis.refresh", &pick(&o.refresh, &a.refresh, "5s"))?,
            skew_tolerance: a.skew_tolerance.unwrap_or(0.01),
            keep_traces: a.keep_traces.unwrap_or(5000),
            memory_budget_mb: a.memory_budget_mb.unwrap_or(256),
            state_dir: {
                let d = pick(&o.state_dir, &raw.state.dir, "");
                (!d.is_empty()).then(|| PathBuf::from(d))
            },
            snapshot_interval: dur(
                "state.snapshot_interval",
                raw.state.snapshot_interval.as_deref().unwrap_or("30s"),
            )?,
            trace_url: raw.api.trace_url.clone().filter(|u| !u.is_empty()),
            receivers_token_file: r
                .bearer_token_file
                .as_deref()
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            api_token_file: raw
                .api
                .bearer_token_file
                .as_deref()
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            api_hosts: list(&raw.api.hosts),
            api_cors_origins: list(&raw.api.cors_origins)
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            receivers_tls: tls_files("receivers.tls", &r.tls)?,
            receivers_limits: limits(
                &[
                    "receivers.header_read_timeout",
                    "receivers.idle_timeout",
                    "receivers.max_connections",
                ],
                &r.header_read_timeout,
                &r.idle_timeout,
                r.max_connections,
            )?,
            receivers_request_timeout: {
                let t = dur(
                    "receivers.request_timeout",
                    r.request_timeout.as_deref().unwrap_or("60s"),
                )?;
                if t < Duration::from_secs(1) {
                    return Err(ConfigError::Invalid {
                        key: "receivers.request_timeout",
                        message: "must be at least 1s".into(),
                    });
                }
                t
            },
            api_tls: tls_files("api.tls", &raw.api.tls)?,
            api_limits: limits(
                &[
                    "api.header_read_timeout",
                    "api.idle_timeout",
                    "api.max_connections",
                ],
                &raw.api.header_read_timeout,
                &raw.api.idle_timeout,
                raw.api.max_connections,
            )?,
            export: {
                let e = &raw.export;
                let url = e.remote_write_url.clone().filter(|u| !u.is_empty());
                if let Some(u) = &url {
                    if !u.starts_with("http://") {
                        return Err(ConfigError::Invalid {
                            key: "export.remote_write_url",
                            message: format!("{u:?} is not an http:// URL (https is not supported yet: send to a local Prometheus agent or Collector)"),
                        });
                    }
                }
                ExportConfig {
                    aggregates: e.aggregates.unwrap_or(true),
                    max_series: positive("export.max_series", e.max_series.unwrap_or(100_000))?,
                    remote_write_url: url,
                    remote_write_interval: dur(
                        "export.remote_write_interval",
                        e.remote_write_interval.as_deref().unwrap_or("15s"),
                    )?,
                    instance: e.instance.clone().unwrap_or_default(),
                }
            },
            source: {
                let src = &raw.source;
                let url = src.prometheus_url.clone().filter(|u| !u.is_empty());
                if let Some(u) = &url {
                    if !u.starts_with("http://") {
                        return Err(ConfigError::Invalid {
                            key: "source.prometheus_url",
                            message: format!("{u:?} is not an http:// URL"),
                        });
                    }
                }
                SourceConfig {
                    prometheus_url: url,
                    silent_after: dur(
                        "source.silent_after",
                        src.silent_after.as_deref().unwrap_or("1m"),
                    )?,
                }
            },
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.bucket < Duration::from_secs(1) {
            return bad("analysis.bucket", "must be at least 1s");
        }
        if self.history < self.bucket
            || self.history.as_secs() / self.bucket.as_secs().max(1) > 10_000
        {
            return bad(
                "analysis.history",
                "must be at least one bucket and at most 10000 buckets",
            );
        }
        if self.window < self.bucket || self.window > self.history {
            return bad(
                "analysis.window",
                "must be between analysis.bucket and analysis.history",
            );
        }
        if self.refresh < Duration::from_millis(100) {
            return bad("analysis.refresh", "must be at least 100ms");
        }
        if !(0.0..=0.5).contains(&self.skew_tolerance) {
            return bad("analysis.skew_tolerance", "must be between 0 and 0.5");
        }
        if self.trace_idle.is_zero() {
            return bad("pipeline.trace_idle", "must be positive");
        }
        if self.snapshot_interval < Duration::from_secs(1) {
            return bad("state.snapshot_interval", "must be at least 1s");
        }
        for (section, l) in [
            ("receivers", &self.receivers_limits),
            ("api", &self.api_limits),
        ] {
            if l.header_read_timeout < Duration::from_millis(100)
                || l.idle_timeout < Duration::from_secs(1)
            {
                return bad(
                    if section == "api" {
                        "api.header_read_timeout"
                    } else {
                        "receivers.header_read_timeout"
                    },
                    "header_read_timeout must be at least 100ms and idle_timeout at least 1s",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_overrides_win() {
        let d = Config::default_config();
        assert_eq!(d.grpc_listen.port(), 4317);
        assert_eq!(d.http_listen.port(), 4318);
        assert_eq!(d.api_listen.port(), 8787);
        assert_eq!(d.window, Duration::from_secs(300));
        let o = Overrides {
            grpc_listen: Some("0.0.0.0:14317".into()),
            ..Default::default()
        };
        let c = Config::from_toml("[receivers]\ngrpc_listen = \"127.0.0.1:1\"\n", &o).unwrap();
        assert_eq!(c.grpc_listen.port(), 14317);
    }

    #[test]
    fn generic_overrides_and_environment() {
        let o = Overrides {
            set: vec![
                ("receivers.max_request_bytes".into(), "1000".into()),
                ("analysis.skew_tolerance".into(), "0.02".into()),
                ("export.aggregates".into(), "false".into()),
            ],
            ..Default::default()
        };
        let c = Config::from_toml("", &o).unwrap();
        assert_eq!((c.max_request_bytes, c.skew_tolerance), (1000, 0.02));
        assert!(
            !c.export.aggregates,
            "a boolean from --set or the environment"
        );
        let env = env_overrides(
            [
                (
                    "CHOKEPOINT_STATE_SNAPSHOT_INTERVAL".to_owned(),
                    "9s".to_owned(),
                ),
                ("CHOKEPOINT_NOT_A_KEY".to_owned(), "1".to_owned()),
            ]
            .into_iter(),
        );
        assert_eq!(
            env,
            vec![("state.snapshot_interval".to_owned(), "9s".to_owned())]
        );
        let bad = Overrides {
            set: vec![("receivers.max_request_bytes".into(), "lots".into())],
            ..Default::default()
        };
        assert!(Config::from_toml("", &bad).is_err());
        assert_eq!(known_keys().len(), 45);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[analysis]\nwindow = \"2h\"\n", &Overrides::default());
        assert!(e.unwrap_err().to_string().starts_with("analysis.window"));
        let e = Config::from_toml("[receivers]\ngrpc = 1\n", &Overrides::default());
        assert!(e.unwrap_err().to_string().contains("unknown field"));
        let e = Config::from_toml("[api]\nlisten = \"localhost\"\n", &Overrides::default());
        assert!(e.unwrap_err().to_string().starts_with("api.listen"));
    }

    #[test]
    fn tls_sections_nest_and_take_the_environment() {
        let c = Config::from_toml(
            "[receivers.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
            &Overrides::default(),
        )
        .unwrap();
        let t = c.receivers_tls.unwrap();
        assert_eq!((t.cert.to_str(), t.client_ca), (Some("c.pem"), None));
        assert_eq!(c.api_tls, None);
        let env = env_overrides(
            [(
                "CHOKEPOINT_API_TLS_CLIENT_CA_FILE".to_owned(),
                "ca.pem".to_owned(),
            )]
            .into_iter(),
        );
        assert_eq!(
            env,
            vec![("api.tls.client_ca_file".to_owned(), "ca.pem".to_owned())]
        );
        let o = Overrides {
            set: env,
            ..Default::default()
        };
        let e = Config::from_toml("", &o).unwrap_err().to_string();
        assert!(e.starts_with("api.tls"), "a CA alone is refused: {e}");
        let e = Config::from_toml("[api.tls]\ncert = \"x\"\n", &Overrides::default());
        assert!(e.unwrap_err().to_string().contains("unknown field"));
    }
}
