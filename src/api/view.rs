//! The published snapshot: at each refresh the pipeline builds one immutable [`View`] of
//! everything the API and the dashboard show (findings, graph, per-node details, series,
//! entry operations, finding history, the graph's metrics) and publishes it behind a
//! `watch`. Reads serve from it and never wait on ingest, whatever their rate.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::analyze::graph::GraphAgg;
use crate::analyze::hist::Hist;
use crate::analyze::identity::Resolution;
use crate::analyze::node::{NodeId, NodeTable};
use crate::api::dto::{node_id, rfc3339, FindingDto, FindingsDoc, GraphDoc, NodeDetail, NodePoint};
use crate::model::{Interner, NodeType};
use crate::report::finding::Context;
use crate::report::format::r3;

/// Everything the API serves for the default window, built once per refresh.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// When this view was built (wall clock).
    pub refreshed_at: String,
    #[serde(skip)]
    pub refreshed_ns: u64,
    pub findings: FindingsDoc,
    pub graph: GraphDoc,
    #[serde(skip)]
    pub details: BTreeMap<String, NodeDetail>,
    #[serde(skip)]
    pub series: SeriesDoc,
    pub operations: Vec<OperationDto>,
    #[serde(skip)]
    pub history: Vec<FindingHistoryDto>,
    /// The graph part of `/metrics` (Prometheus text).
    #[serde(skip)]
    pub metrics: bytes::Bytes,
    /// The aggregates since start as series (empty unless `export.aggregates`), for
    /// remote-write; `/metrics` has them in `metrics` already.
    #[serde(skip)]
    pub aggregates: std::sync::Arc<Vec<crate::api::prom::Sample>>,
}

/// Estimated bytes of aggregate series: each sample, its labels and their text.
pub fn series_bytes(s: &[crate::api::prom::Sample]) -> usize {
    s.iter()
        .map(|x| {
            std::mem::size_of_val(x)
                + x.labels.capacity() * std::mem::size_of::<(&str, String)>()
                + x.labels.iter().map(|l| l.1.capacity()).sum::<usize>()
        })
        .sum()
}

/// Counts what is written to it.
struct Counting(usize);

impl std::io::Write for Counting {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of `v` as JSON: near what its strings and vectors hold.
fn json_bytes(v: &impl serde::Serialize) -> usize {
    let mut c = Counting(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

impl View {
    /// Estimated bytes held (for the memory budget), without the aggregate series (see
    /// [`series_bytes`]): each part's JSON size, near what its strings and vectors hold.
    pub fn approx_bytes(&self) -> usize {
        json_bytes(&self.findings)
            + json_bytes(&self.graph)
            + json_bytes(&self.details)
            + json_bytes(&self.series)
            + json_bytes(&self.operations)
            + json_bytes(&self.history)
            + self.metrics.len()
    }

    /// Before the first refresh.
    pub fn empty() -> View {
        View {
            refreshed_at: rfc3339(0),
            refreshed_ns: 0,
            findings: FindingsDoc::empty(),
            graph: GraphDoc {
                traces: 0,
                spans: 0,
                fragmented_traces: 0,
                nodes: Vec::new(),
                edges: Vec::new(),
            },
            details: BTreeMap::new(),
            series: SeriesDoc::default(),
            operations: Vec::new(),
            history: Vec::new(),
            metrics: bytes::Bytes::new(),
            aggregates: Default::default(),
        }
    }

    /// A node's detail by id or name.
    pub fn detail(&self, key: &str) -> Option<&NodeDetail> {
        self.details.get(key).or_else(|| {
            let id = self.graph.nodes.iter().find(|n| n.name == key)?.id.clone();
            self.details.get(&id)
        })
    }
}

/// Time series at the resolution of the history's buckets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeriesDoc {
    pub bucket_seconds: f64,
    pub nodes: BTreeMap<String, Vec<NodeSeriesPoint>>,
    pub edges: BTreeMap<String, Vec<EdgeSeriesPoint>>,
}

/// One node in one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSeriesPoint {
    /// Bucket start, Unix milliseconds.
    pub t: u64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub error_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Its share of the bucket's requests' critical-path time.
    pub critical_path_share: f64,
    /// Instances serving at the end of the bucket; `null`: unknown.
    pub instances: Option<usize>,
}

/// One edge in one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeSeriesPoint {
    pub t: u64,
    pub calls: u64,
    pub calls_per_s: f64,
    pub error_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub queue_p50_ms: Option<f64>,
}

/// The key of an edge's series: `from_id>to_id`.
pub fn edge_key(from: &str, to: &str) -> String {
    format!("{from}>{to}")
}

/// An entry operation: how much, how fast, and where its critical-path time goes.
#[derive(Debug, Clone, Serialize)]
pub struct OperationDto {
    pub operation: String,
    pub service_id: String,
    pub traces: u64,
    pub rate_per_s: f64,
    pub error_pct: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub baseline_e2e_mean_ms: Option<f64>,
    pub e2e_mean_ms: f64,
    /// Critical-path time per request by node, largest first, with the baseline's.
    pub breakdown: Vec<BreakdownDto>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakdownDto {
    pub node: String,
    pub node_id: String,
    pub ms_per_request: f64,
    pub baseline_ms_per_request: Option<f64>,
}

/// A finding over time.
#[derive(Debug, Clone, Serialize)]
pub struct FindingHistoryDto {
    pub id: String,
    pub first_seen: String,
    pub points: Vec<HistoryPointDto>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct HistoryPointDto {
    /// Unix milliseconds.
    pub t: u64,
    pub score: f64,
    pub severity: &'static str,
    pub active: bool,
}

/// The findings' history the pipeline keeps between refreshes: bounded per finding, and
/// findings not seen for longer than the history are forgotten.
#[derive(Debug, Default)]
pub struct FindingHistory {
    entries: BTreeMap<String, (u64, VecDeque<HistoryPointDto>)>,
}

impl FindingHistory {
    /// Points kept per finding.
    pub const MAX_POINTS: usize = 720;
    /// Findings kept.
    pub const MAX_FINDINGS: usize = 2000;

    pub fn record(&mut self, now_ns: u64, findings: &[FindingDto], forget_after_ns: u64) {
        for f in findings {
            if !self.entries.contains_key(&f.id) && self.entries.len() >= Self::MAX_FINDINGS {
                continue;
            }
            let e = self
                .entries
                .entry(f.id.clone())
                .or_insert_with(|| (now_ns, VecDeque::new()));
            e.1.push_back(HistoryPointDto {
                t: now_ns / 1_000_000,
                score: f.score,
                severity: f.severity,
                active: f.active,
            });
            while e.1.len() > Self::MAX_POINTS {
                e.1.pop_front();
            }
        }
        let cutoff = now_ns.saturating_sub(forget_after_ns) / 1_000_000;
        self.entries
            .retain(|_, (_, pts)| pts.back().is_some_and(|p| p.t >= cutoff));
    }

    pub fn first_seen_ns(&self, id: &str) -> Option<u64> {
        self.entries.get(id).map(|e| e.0)
    }

    pub fn dto(&self) -> Vec<FindingHistoryDto> {
        self.entries
            .iter()
            .map(|(id, (first, pts))| FindingHistoryDto {
                id: id.clone(),
                first_seen: rfc3339(*first),
                points: pts.iter().copied().collect(),
            })
            .collect()
    }
}

/// What a view is built from.
pub struct ViewInput<'a> {
    pub now_ns: u64,
    /// The default window and its baseline, resolved.
    pub cur: &'a GraphAgg,
    pub base: Option<&'a GraphAgg>,
    pub findings: FindingsDoc,
    pub nodes: &'a NodeTable,
    pub names: &'a Interner,
    /// Raw buckets of the history and the resolution that names their nodes.
    pub buckets: Vec<(u64, &'a GraphAgg)>,
    pub bucket_ns: u64,
    pub resolution: &'a Resolution,
    pub history: &'a FindingHistory,
    pub metrics: String,
    pub aggregates: std::sync::Arc<Vec<crate::api::prom::Sample>>,
}

impl View {
    pub fn build(i: ViewInput<'_>) -> View {
        let ctx = Context {
            nodes: i.nodes,
            names: i.names,
        };
        let graph = GraphDoc::new(i.cur, i.nodes, i.names);
        let id_of = |n: NodeId| node_id(i.nodes.key(n).ty.as_str(), &ctx.name(n));
        let series = series(&i, &id_of);
        let by_id: BTreeMap<String, NodeId> = i.cur.nodes.keys().map(|n| (id_of(*n), *n)).collect();
        // Grouped once: filtering every edge and finding for every node is quadratic, and a
        // flood of names makes ten thousand nodes.
        let mut callers: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        let mut callees: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for e in &graph.edges {
            callers.entry(&e.to_id).or_default().push(e.clone());
            callees.entry(&e.from_id).or_default().push(e.clone());
        }
        let mut by_node: BTreeMap<&str, Vec<FindingDto>> = BTreeMap::new();
        for f in &i.findings.findings {
            by_node.entry(&f.node_id).or_default().push(f.clone());
        }
        let mut details = BTreeMap::new();
        for n in &graph.nodes {
            let node_findings = by_node.remove(n.id.as_str()).unwrap_or_default();
            let history = series
                .nodes
                .get(&n.id)
                .map(|pts| {
                    pts.iter()
                        .map(|p| NodePoint {
                            start: rfc3339(p.t * 1_000_000),
                            requests: p.requests,
                            errors: (p.error_pct / 100.0 * p.requests as f64).round() as u64,
                            p50_ms: p.p50_ms,
                            p99_ms: p.p99_ms,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let node = by_id.get(&n.id).copied();
            details.insert(
                n.id.clone(),
                NodeDetail {
                    node: n.clone(),
                    history,
                    callers: callers.remove(n.id.as_str()).unwrap_or_default(),
                    callees: callees.remove(n.id.as_str()).unwrap_or_default(),
                    findings: node_findings,
                    exemplar_trace_ids: node
                        .and_then(|id| i.cur.facts.slowest.get(&id))
                        .map(|e| e.items().map(|t| t.to_string()).collect())
                        .unwrap_or_default(),
                },
            );
        }
        let operations = operations(&i, &ctx, &id_of);
        View {
            refreshed_at: rfc3339(i.now_ns),
            refreshed_ns: i.now_ns,
            findings: i.findings,
            graph,
            details,
            series,
            operations,
            history: i.history.dto(),
            metrics: bytes::Bytes::from(i.metrics),
            aggregates: i.aggregates,
        }
    }
}

/// Per-bucket points of every node and edge, named as the window names them.
fn series(i: &ViewInput<'_>, id_of: &dyn Fn(NodeId) -> String) -> SeriesDoc {
    let secs = (i.bucket_ns as f64 / 1e9).max(1e-9);
    let mut out = SeriesDoc {
        bucket_seconds: secs,
        ..SeriesDoc::default()
    };
    let mut ids: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut id = |n: NodeId| -> String { ids.entry(n).or_insert_with(|| id_of(n)).clone() };
    for (start, raw) in &i.buckets {
        let g = i.resolution.apply(raw);
        let t = start / 1_000_000;
        let mut cp: BTreeMap<NodeId, f64> = BTreeMap::new();
        for ((op, n), c) in &g.facts.cp {
            if !op.background {
                *cp.entry(*n).or_default() += (c.own_ns + c.queue_ns) as f64;
            }
        }
        let total = g.facts.e2e_total_ns.max(1) as f64;
        let mut nodes: Vec<_> = g.nodes.iter().collect();
        nodes.sort_by_key(|(n, _)| **n);
        for (n, a) in nodes {
            let p = NodeSeriesPoint {
                t,
                requests: a.requests,
                requests_per_s: r3(a.requests as f64 / secs),
                error_pct: r3(pct(a.errors, a.requests)),
                p50_ms: r3(a.latency.quantile_ms(0.5)),
                p99_ms: r3(a.latency.quantile_ms(0.99)),
                critical_path_share: r3(cp.get(n).copied().unwrap_or(0.0) / total),
                instances: a.instances.serving_count(),
            };
            out.nodes.entry(id(*n)).or_default().push(p);
        }
        let mut edges: Vec<_> = g.edges.iter().collect();
        edges.sort_by_key(|(k, _)| **k);
        for (k, e) in edges {
            let lat: &Hist = if e.client.count() > 0 {
                &e.client
            } else {
                &e.server
            };
            let p = EdgeSeriesPoint {
                t,
                calls: e.calls,
                calls_per_s: r3(e.calls as f64 / secs),
                error_pct: r3(pct(e.errors, e.calls)),
                p50_ms: r3(lat.quantile_ms(0.5)),
                p99_ms: r3(lat.quantile_ms(0.99)),
                queue_p50_ms: (e.queue.count() > 0).then(|| r3(e.queue.quantile_ms(0.5))),
            };
            out.edges
                .entry(edge_key(&id(k.from), &id(k.to)))
                .or_default()
                .push(p);
        }
    }
    out
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Entry operations of the window, with where their critical-path time goes, now and in
/// the baseline.
fn operations(
    i: &ViewInput<'_>,
    ctx: &Context<'_>,
    id_of: &dyn Fn(NodeId) -> String,
) -> Vec<OperationDto> {
    let f = &i.cur.facts;
    let secs = if i.cur.start_ns <= i.cur.end_ns {
        ((i.cur.end_ns - i.cur.start_ns) as f64 / 1e9).max(1.0)
    } else {
        1.0
    };
    let mut out: Vec<OperationDto> = f
        .ops
        .iter()
        .filter(|(k, _)| !k.background)
        .map(|(k, o)| {
            let base_op = i.base.and_then(|b| b.facts.ops.get(k));
            let mut breakdown: Vec<BreakdownDto> =
                f.cp.iter()
                    .filter(|((op, _), _)| op == k)
                    .map(|((_, n), c)| {
                        let base = i.base.and_then(|b| {
                            let bo = base_op?;
                            let bc = b.facts.cp.get(&(*k, *n));
                            Some(
                                bc.map_or(0.0, |c| (c.own_ns + c.queue_ns) as f64)
                                    / bo.traces.max(1) as f64
                                    / 1e6,
                            )
                        });
                        BreakdownDto {
                            node: ctx.name(*n),
                            node_id: id_of(*n),
                            ms_per_request: r3((c.own_ns + c.queue_ns) as f64
                                / o.traces.max(1) as f64
                                / 1e6),
                            baseline_ms_per_request: base.map(r3),
                        }
                    })
                    .collect();
            breakdown.sort_by(|a, b| {
                b.ms_per_request
                    .total_cmp(&a.ms_per_request)
                    .then(a.node.cmp(&b.node))
            });
            OperationDto {
                operation: ctx.op_name(k),
                service_id: node_id(NodeType::Service.as_str(), &ctx.name(k.service)),
                traces: o.traces,
                rate_per_s: r3(o.traces as f64 / secs),
                error_pct: r3(pct(o.errors, o.traces)),
                e2e_p50_ms: r3(o.e2e.quantile_ms(0.5)),
                e2e_p99_ms: r3(o.e2e.quantile_ms(0.99)),
                e2e_mean_ms: r3(o.e2e_total_ns as f64 / o.traces.max(1) as f64 / 1e6),
                baseline_e2e_mean_ms: base_op
                    .map(|b| r3(b.e2e_total_ns as f64 / b.traces.max(1) as f64 / 1e6)),
                breakdown,
            }
        })
        .collect();
    out.sort_by(|a, b| b.traces.cmp(&a.traces).then(a.operation.cmp(&b.operation)));
    out
}

// Fields in alphabetical order, as the hand-built JSON of these replies had them.

/// A node's time series (`/series/nodes/{id}`).
#[derive(Serialize, Debug, Clone)]
pub struct NodeSeriesDoc {
    pub bucket_seconds: f64,
    pub node_id: String,
    pub points: Vec<NodeSeriesPoint>,
}

/// An edge's time series (`/series/edges/{caller}/{callee}`).
#[derive(Serialize, Debug, Clone)]
pub struct EdgeSeriesDoc {
    pub bucket_seconds: f64,
    pub from_id: String,
    pub points: Vec<EdgeSeriesPoint>,
    pub to_id: String,
}

/// A range of a series: points with `from <= t < to` (Unix ms), merged into steps of
/// `step_ms` (a multiple of the bucket; counts add, rates are the mean of the step's
/// buckets, percents and p50 are weighted by traffic, p99 is the largest of the merged
/// buckets: an upper bound).
pub fn node_range(
    pts: &[NodeSeriesPoint],
    from: u64,
    to: u64,
    step_ms: u64,
) -> Vec<NodeSeriesPoint> {
    let mut out: Vec<NodeSeriesPoint> = Vec::new();
    let mut merged: Vec<usize> = Vec::new();
    for p in pts.iter().filter(|p| p.t >= from && p.t < to) {
        let slot = if step_ms > 0 {
            p.t - p.t % step_ms
        } else {
            p.t
        };
        match out.last_mut() {
            Some(last) if last.t == slot => {
                let (a, b) = (last.requests as f64, p.requests as f64);
                let w = |x: f64, y: f64| {
                    if a + b > 0.0 {
                        (x * a + y * b) / (a + b)
                    } else {
                        x
                    }
                };
                last.p50_ms = r3(w(last.p50_ms, p.p50_ms));
                last.error_pct = r3(w(last.error_pct, p.error_pct));
                last.critical_path_share = r3(w(last.critical_path_share, p.critical_path_share));
                last.p99_ms = last.p99_ms.max(p.p99_ms);
                last.requests += p.requests;
                last.requests_per_s += p.requests_per_s;
                last.instances = p.instances.or(last.instances);
                if let Some(m) = merged.last_mut() {
                    *m += 1;
                }
            }
            _ => {
                out.push(NodeSeriesPoint {
                    t: slot,
                    ..p.clone()
                });
                merged.push(1);
            }
        }
    }
    for (o, n) in out.iter_mut().zip(merged) {
        o.requests_per_s = r3(o.requests_per_s / n as f64);
    }
    out
}

/// Like [`node_range`], for an edge.
pub fn edge_range(
    pts: &[EdgeSeriesPoint],
    from: u64,
    to: u64,
    step_ms: u64,
) -> Vec<EdgeSeriesPoint> {
    let mut out: Vec<EdgeSeriesPoint> = Vec::new();
    let mut merged: Vec<usize> = Vec::new();
    for p in pts.iter().filter(|p| p.t >= from && p.t < to) {
        let slot = if step_ms > 0 {
            p.t - p.t % step_ms
        } else {
            p.t
        };
        match out.last_mut() {
            Some(last) if last.t == slot => {
                let (a, b) = (last.calls as f64, p.calls as f64);
                let w = |x: f64, y: f64| {
                    if a + b > 0.0 {
                        (x * a + y * b) / (a + b)
                    } else {
                        x
                    }
                };
                last.p50_ms = r3(w(last.p50_ms, p.p50_ms));
                last.error_pct = r3(w(last.error_pct, p.error_pct));
                last.p99_ms = last.p99_ms.max(p.p99_ms);
                last.queue_p50_ms = match (last.queue_p50_ms, p.queue_p50_ms) {
                    (Some(x), Some(y)) => Some(r3(w(x, y))),
                    (x, y) => x.or(y),
                };
                last.calls += p.calls;
                last.calls_per_s = r3(last.calls_per_s + p.calls_per_s);
                if let Some(m) = merged.last_mut() {
                    *m += 1;
                }
            }
            _ => {
                out.push(EdgeSeriesPoint {
                    t: slot,
                    ..p.clone()
                });
                merged.push(1);
            }
        }
    }
    for (o, n) in out.iter_mut().zip(merged) {
        o.calls_per_s = r3(o.calls_per_s / n as f64);
    }
    out
}
