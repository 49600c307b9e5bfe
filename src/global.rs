//! The global view: findings from the aggregates several instances exported to a
//! Prometheus-compatible store (by scrape or remote-write), summed, run through the same
//! scorers as one instance's. Each instance's series are read over the window (a range
//! query), [`crate::exchange::decode`] adds them up, and the identity resolver and the
//! scorers see one graph, as if one chokepoint had been fed everything.
//!
//! Which instances contributed, and when each was last heard from, comes from the same
//! series: an instance whose last sample is older than `silent_after` before the window's
//! end is silent, and the findings say they are partial and name it.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::analyze::graph::{GraphAgg, NodeTable};
use crate::analyze::identity;
use crate::api::dto::FindingsDoc;
use crate::exchange::{decode, Series, HEARD};
use crate::findings::{compute, Context};
use crate::model::Interner;

/// The series the scorers read (not the daemon's own counters).
pub const SELECTOR: &str = r#"{__name__=~"chokepoint_(agg|node|edge|usage|user|background|op|cp|reach|failed|shape|class)_.+"}"#;
/// Points per series a range query may return (Prometheus refuses more than 11,000).
const MAX_POINTS: f64 = 5_000.0;

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

    /// Every aggregate series over `[from, to]` (Unix seconds), one point per step.
    pub async fn range(&self, from: f64, to: f64) -> Result<Vec<Series>, GlobalError> {
        let step = ((to - from) / MAX_POINTS).max(10.0).ceil();
        // The grid ends on `to`: a point a step short of it would miss the latest samples.
        let from = to - ((to - from) / step).ceil() * step;
        let url = format!(
            "{}/api/v1/query_range?query={}&start={from:.3}&end={to:.3}&step={step}",
            self.base,
            encode_query(SELECTOR)
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
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
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
    // Per instance: the latest publication time it wrote (exact), else its latest point
    // (a range query's step: a store's lookback keeps a dead writer's series answering
    // for minutes, so this is only the fallback for stores that hold no `HEARD` gauge).
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

/// A window's findings from the store's series: the window `(from, to]` and, if given, a
/// baseline range, decoded, resolved together and scored. Silent instances are named in the
/// notes, which then say the findings are partial.
pub fn findings(
    series: &[Series],
    window: (f64, f64),
    baseline: Option<(f64, f64)>,
    contributors: &[Contributor],
) -> FindingsDoc {
    let mut nodes = NodeTable::new(100_000);
    let mut names = Interner::default();
    let cur_raw = decode(series, window.0, window.1, &mut nodes, &mut names).agg;
    let base_raw: Option<GraphAgg> =
        baseline.map(|b| decode(series, b.0, b.1, &mut nodes, &mut names).agg);
    let mut all: Vec<&GraphAgg> = vec![&cur_raw];
    all.extend(base_raw.as_ref());
    let resolution = identity::resolve(&all, &mut nodes, &mut names);
    let cur = resolution.apply(&cur_raw);
    // As the daemon: a baseline of a few dozen requests compares noise.
    let base = base_raw
        .filter(|b| b.facts.traces >= 50)
        .map(|b| resolution.apply(&b));
    let ctx = Context {
        nodes: &nodes,
        names: &names,
    };
    let mut report = compute(&cur, base.as_ref(), &ctx);
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
    let to_ns = (window.1 * 1e9) as u64;
    let from_ns = (window.0 * 1e9) as u64;
    FindingsDoc::new(&cur, base.as_ref(), &report, &ctx, (from_ns, to_ns))
}
