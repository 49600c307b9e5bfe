//! The global view: findings from the aggregates several instances exported to a
//! Prometheus-compatible store (by scrape or remote-write), summed, run through the same
//! scorers as one instance's. Each instance's samples are read over the window and its
//! baseline (raw, by a range selector), [`crate::scale::exchange::decode`] adds them up, and the
//! identity resolver and the scorers see one graph, as if one chokepoint had been fed
//! everything.
//!
//! Which instances contributed, and when each was last heard from, comes from the same
//! series: an instance whose last sample is older than `silent_after` before the window's
//! end is silent, and the findings say they are partial and name it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::analyze::graph::GraphAgg;
use crate::analyze::identity;
use crate::analyze::node::NodeTable;
use crate::analyze::thresholds::MIN_BASELINE_TRACES;
use crate::api::dto::FindingsDoc;
use crate::api::view::{FindingHistory, View, ViewInput};
use crate::model::Interner;
use crate::report::finding::{Context, Report};
use crate::report::findings::compute;
use crate::scale::exchange::{decode, Series, HEARD};

/// The series the scorers read (not the daemon's own counters).
pub const SELECTOR: &str = r#"{__name__=~"chokepoint_(agg|node|edge|usage|user|background|op|cp|reach|failed|shape|class)_.+"}"#;
/// How far before a range its samples are read too, so each counter has a reading at the
/// range's start to count from (Prometheus' own lookback, 5 minutes): a series with no
/// sample in it is new, and counted from zero.
const LOOKBACK_S: f64 = 300.0;
/// The largest answer read from the store (JSON; about 40 bytes a sample).
const MAX_ANSWER_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GlobalError {
    #[error("{url}: {message}")]
    Store { url: String, message: String },
    #[error("{0} is not an http:// URL")]
    Url(String),
}

/// One instance seen in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributor {
    /// Its `chokepoint_instance` label (remote-write) or `instance` (scrape).
    pub instance: String,
    /// Its latest sample (Unix seconds).
    pub last_s: f64,
    pub silent: bool,
}

/// A Prometheus-compatible HTTP API (`/api/v1/query_range`).
pub struct Store {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

#[derive(serde::Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(serde::Deserialize)]
struct Data {
    #[serde(default)]
    result: Vec<Matrix>,
}

#[derive(serde::Deserialize)]
struct Matrix {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn encode_query(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Store {
    pub fn new(url: &str) -> Result<Store, GlobalError> {
        if !url.starts_with("http://") {
            return Err(GlobalError::Url(url.to_owned()));
        }
        Ok(Store {
            base: url.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Every aggregate series' raw samples over `[from - LOOKBACK_S, to]` (Unix seconds),
    /// as written (a range selector, not a range query's steps: a step grid can miss the
    /// last value before a counter reset, and would blur when each instance was heard from).
    pub async fn range(&self, from: f64, to: f64) -> Result<Vec<Series>, GlobalError> {
        let secs = (to - from + LOOKBACK_S).max(1.0).ceil() as u64;
        let url = format!(
            "{}/api/v1/query?query={}&time={to:.3}",
            self.base,
            encode_query(&format!("{SELECTOR}[{secs}s]"))
        );
        let err = |message: String| GlobalError::Store {
            url: self.base.clone(),
            message,
        };
        let req = http::Request::get(&url)
            .body(Empty::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp.into_body();
        // A store holding far more than one view needs must not take this process with it.
        let body = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                err(format!(
                    "{e} (answers are read up to {} MiB: narrow the window or export fewer series)",
                    MAX_ANSWER_BYTES >> 20
                ))
            })?
            .to_bytes();
        let r: Response = serde_json::from_slice(&body).map_err(|e| {
            err(format!(
                "{status}: not a Prometheus API answer ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        if r.status != "success" {
            return Err(err(r.error.unwrap_or(r.status)));
        }
        Ok(r.data
            .map(|d| d.result)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut m| {
                let name = m.metric.remove("__name__")?;
                let points = m
                    .values
                    .iter()
                    .filter_map(|(t, v)| Some((*t, v.parse::<f64>().ok()?)))
                    .collect();
                Some(Series {
                    name,
                    labels: m.metric,
                    points,
                })
            })
            .collect())
    }
}

/// The instances behind `series`, with when each was last heard from; silent when that is
/// more than `silent_after` before `to`.
pub fn contributors(series: &[Series], to: f64, silent_after: Duration) -> Vec<Contributor> {
    // Per instance: the latest publication time it wrote, else (series scraped from an
    // older build) the time of its latest sample.
    let mut heard: BTreeMap<String, f64> = BTreeMap::new();
    let mut stepped: BTreeMap<String, f64> = BTreeMap::new();
    for s in series {
        let Some(i) = s
            .labels
            .get("chokepoint_instance")
            .or_else(|| s.labels.get("instance"))
        else {
            continue;
        };
        let (map, t) = if s.name == HEARD {
            let v = s.points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            (&mut heard, v)
        } else {
            let t = s.points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
            (&mut stepped, t)
        };
        let e = map.entry(i.clone()).or_insert(f64::MIN);
        *e = e.max(t);
    }
    for (i, t) in heard {
        stepped.insert(i, t);
    }
    stepped
        .into_iter()
        .map(|(instance, last_s)| Contributor {
            silent: last_s < to - silent_after.as_secs_f64(),
            instance,
            last_s,
        })
        .collect()
}

/// Says in the report's notes which instances contributed and, if any is silent, that the
/// findings are partial and which ones.
fn annotate(report: &mut Report, contributors: &[Contributor]) {
    let silent: Vec<String> = contributors
        .iter()
        .filter(|c| c.silent)
        .map(|c| c.instance.clone())
        .collect();
    let heard: Vec<String> = contributors
        .iter()
        .map(|c| {
            format!(
                "{} (last heard {})",
                c.instance,
                crate::api::dto::rfc3339((c.last_s * 1e9) as u64)
            )
        })
        .collect();
    if !silent.is_empty() {
        report.notes.insert(
            0,
            format!(
                "PARTIAL: {} of {} instances silent ({}); their traffic is missing from these findings",
                silent.len(),
                contributors.len(),
                silent.join(", ")
            ),
        );
    }
    report.notes.push(format!(
        "summed from {} instances: {}",
        contributors.len(),
        heard.join(", ")
    ));
    report.notes.push(
        "global view: no exemplar traces (each trace lives in one instance); the what-if is \
         estimated from summed critical-path time, and latency against load is per store step"
            .into(),
    );
}

/// A window's findings from the store's series: the window `(from, to]` and, if given, a
/// baseline range, decoded, resolved together and scored. Silent instances are named in the
/// notes, which then say the findings are partial.
pub fn findings(
    series: &[Series],
    window: (f64, f64),
    baseline: Option<(f64, f64)>,
    contributors: &[Contributor],
) -> FindingsDoc {
    let mut nodes = NodeTable::new(MAX_NODES);
    let mut names = Interner::default();
    let cur_raw = decode(series, window.0, window.1, &mut nodes, &mut names).agg;
    let base_raw: Option<GraphAgg> =
        baseline.map(|b| decode(series, b.0, b.1, &mut nodes, &mut names).agg);
    let scored = score(
        &cur_raw,
        base_raw.as_ref(),
        &mut nodes,
        &mut names,
        contributors,
    );
    let ctx = Context {
        nodes: &nodes,
        names: &names,
    };
    let to_ns = (window.1 * 1e9) as u64;
    let from_ns = (window.0 * 1e9) as u64;
    FindingsDoc::new(
        &scored.cur,
        scored.base.as_ref(),
        &scored.report,
        &ctx,
        (from_ns, to_ns),
    )
}

/// A window (and its baseline) resolved together and scored, as the daemon does.
struct Scored {
    resolution: identity::Resolution,
    cur: GraphAgg,
    base: Option<GraphAgg>,
    report: Report,
}

fn score(
    cur_raw: &GraphAgg,
    base_raw: Option<&GraphAgg>,
    nodes: &mut NodeTable,
    names: &mut Interner,
    contributors: &[Contributor],
) -> Scored {
    let mut all: Vec<&GraphAgg> = vec![cur_raw];
    all.extend(base_raw);
    let resolution = identity::resolve(&all, nodes, names);
    let cur = resolution.apply(cur_raw);
    // As the daemon: a baseline of a few dozen requests compares noise.
    let base = base_raw
        .filter(|b| b.facts.traces >= MIN_BASELINE_TRACES)
        .map(|b| resolution.apply(b));
    let mut report = compute(&cur, base.as_ref(), &Context { nodes, names });
    annotate(&mut report, contributors);
    Scored {
        resolution,
        cur,
        base,
        report,
    }
}

/// Nodes a global view names at most.
const MAX_NODES: usize = 100_000;

/// The windows of a global view, as the daemon's own (`analysis.*`) and `[source]` say.
#[derive(Debug, Clone, Copy)]
pub struct ViewSettings {
    pub window: Duration,
    pub history: Duration,
    pub bucket: Duration,
    pub refresh: Duration,
    pub silent_after: Duration,
}

/// The view a daemon publishes, from the store's series over the history ending at `now_s`:
/// the window's findings against the history before it, the graph, and the per-bucket
/// series the dashboard draws, each decoded from the same series.
pub fn build_view(
    series: &[Series],
    now_s: f64,
    s: &ViewSettings,
    history: &mut FindingHistory,
) -> View {
    let contributors = contributors(series, now_s, s.silent_after);
    let mut nodes = NodeTable::new(MAX_NODES);
    let mut names = Interner::default();
    let history_s = s.history.as_secs_f64();
    let from = now_s - s.window.min(s.history).as_secs_f64();
    let start = now_s - history_s;
    let cur_raw = decode(series, from, now_s, &mut nodes, &mut names).agg;
    let base_raw = decode(series, start, from, &mut nodes, &mut names).agg;
    let bucket_s = s.bucket.as_secs_f64().max(1.0);
    let mut buckets: Vec<(u64, GraphAgg)> = Vec::new();
    let mut b = (start / bucket_s).floor() * bucket_s;
    while b < now_s {
        let g = decode(series, b, b + bucket_s, &mut nodes, &mut names).agg;
        if g.traces > 0 {
            buckets.push(((b * 1e9) as u64, g));
        }
        b += bucket_s;
    }
    // The buckets are parts of these two: resolving these names every node they hold.
    let Scored {
        resolution,
        cur,
        base,
        report,
    } = score(
        &cur_raw,
        Some(&base_raw),
        &mut nodes,
        &mut names,
        &contributors,
    );
    let ctx = Context {
        nodes: &nodes,
        names: &names,
    };
    let now_ns = (now_s * 1e9) as u64;
    let doc = FindingsDoc::new(
        &cur,
        base.as_ref(),
        &report,
        &ctx,
        ((from * 1e9) as u64, now_ns),
    );
    history.record(now_ns, &doc.findings, s.history.as_nanos() as u64);
    View::build(ViewInput {
        now_ns,
        cur: &cur,
        base: base.as_ref(),
        findings: doc,
        nodes: &nodes,
        names: &names,
        buckets: buckets.iter().map(|(t, g)| (*t, g)).collect(),
        bucket_ns: s.bucket.as_nanos() as u64,
        resolution: &resolution,
        history,
        metrics: contributor_metrics(&contributors),
        aggregates: Default::default(),
    })
}

/// The global view's own series: who contributed and when each was last heard from. (It
/// exports no aggregates: a store scraping it would count every instance twice.)
fn contributor_metrics(contributors: &[Contributor]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# HELP chokepoint_source_instance_last_heard_seconds When each instance summed into \
         this global view last published its aggregates (Unix time).\n\
         # TYPE chokepoint_source_instance_last_heard_seconds gauge\n",
    );
    for c in contributors {
        let _ = writeln!(
            out,
            "chokepoint_source_instance_last_heard_seconds{{instance=\"{}\",silent=\"{}\"}} {}",
            c.instance.replace('\\', "\\\\").replace('"', "\\\""),
            c.silent,
            c.last_s
        );
    }
    out
}

/// Publishes the global view every `refresh` (at least 5 s: each is a range query over the
/// history) until every reader of `view_tx` is gone. A store that does not answer keeps the
/// last view and is logged (thinned).
pub async fn publish(store: Store, s: ViewSettings, view_tx: watch::Sender<Arc<View>>) {
    let mut history = FindingHistory::default();
    let mut tick = tokio::time::interval(s.refresh.max(Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failures = 0u64;
    loop {
        tick.tick().await;
        if view_tx.is_closed() {
            return;
        }
        let now = crate::clock::now_ns() as f64 / 1e9;
        let series = match store.range(now - s.history.as_secs_f64(), now).await {
            Ok(series) => series,
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "the store did not answer; the global view keeps its last state");
                }
                continue;
            }
        };
        let built = tokio::task::spawn_blocking(move || {
            let view = build_view(&series, now, &s, &mut history);
            (view, history)
        })
        .await;
        match built {
            Ok((view, h)) => {
                history = h;
                view_tx.send_replace(Arc::new(view));
            }
            Err(e) => {
                tracing::error!(error = %e, "building the global view failed");
                return;
            }
        }
    }
}
