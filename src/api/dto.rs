//! Wire types for the service graph (CLI `--format json` now, the HTTP API later).

use serde::Serialize;

use crate::analyze::graph::{EdgeAgg, GraphAgg, NodeAgg, NodeId, NodeTable};
use crate::hist::Hist;
use crate::model::Interner;

/// Percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(h: &Hist) -> Option<Percentiles> {
        (h.count() > 0).then(|| Percentiles {
            count: h.count(),
            mean: round3(h.mean_ns() / 1e6),
            p50: round3(h.quantile_ms(0.5)),
            p99: round3(h.quantile_ms(0.99)),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round3(part as f64 / whole as f64)
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct NodeDto {
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Spans the node reported, and how many were errors anywhere in its requests (Zipkin
    /// and OpenTracing often mark the failing inner span, not the server span).
    pub spans: u64,
    pub span_errors: u64,
    pub latency_ms: Option<Percentiles>,
    pub self_time_ms: Option<Percentiles>,
    /// Distinct instances (addresses, for virtual nodes); `null` when none was identified:
    /// redundancy unknown, not one.
    pub instances: Option<usize>,
    /// True when more instances were seen than are tracked: `instances` is a lower bound.
    pub instances_more: bool,
    /// Up to ten instance names.
    pub instance_names: Vec<String>,
    pub callers: usize,
    pub callees: usize,
}

#[derive(Serialize, Debug, Clone)]
pub struct EdgeDto {
    pub from: String,
    pub to: String,
    pub to_type: &'static str,
    /// Grafana's service-graph `connection_type`: "", "messaging_system", "database",
    /// "virtual_node".
    pub connection_type: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub client_ms: Option<Percentiles>,
    pub server_ms: Option<Percentiles>,
    pub queue_ms: Option<Percentiles>,
}

#[derive(Serialize, Debug, Clone)]
pub struct GraphDoc {
    pub traces: u64,
    pub spans: u64,
    pub fragmented_traces: u64,
    pub nodes: Vec<NodeDto>,
    pub edges: Vec<EdgeDto>,
}

impl GraphDoc {
    pub fn new(g: &GraphAgg, nodes: &NodeTable, names: &Interner) -> GraphDoc {
        let name = |id: NodeId| names.resolve(nodes.key(id).name).to_owned();
        let mut node_dtos: Vec<NodeDto> = g
            .nodes
            .iter()
            .map(|(id, n): (&NodeId, &NodeAgg)| {
                let mut callers: Vec<NodeId> = g
                    .edges
                    .keys()
                    .filter(|k| k.to == *id && k.from != *id)
                    .map(|k| k.from)
                    .collect();
                callers.sort_unstable();
                callers.dedup();
                let mut callees: Vec<NodeId> = g
                    .edges
                    .keys()
                    .filter(|k| k.from == *id && k.to != *id)
                    .map(|k| k.to)
                    .collect();
                callees.sort_unstable();
                callees.dedup();
                NodeDto {
                    name: name(*id),
                    node_type: nodes.key(*id).ty.as_str(),
                    requests: n.requests,
                    errors: n.errors,
                    error_rate: rate(n.errors, n.requests),
                    spans: n.spans,
                    span_errors: n.span_errors,
                    latency_ms: Percentiles::of(&n.latency),
                    self_time_ms: Percentiles::of(&n.self_time),
                    instances: n.instances.count(),
                    instances_more: n.instances.overflow,
                    instance_names: {
                        // By name, not by first sighting, so arrival order cannot show.
                        let mut v: Vec<String> = n
                            .instances
                            .known
                            .iter()
                            .map(|s| names.resolve(*s).to_owned())
                            .collect();
                        v.sort();
                        v.truncate(10);
                        v
                    },
                    callers: callers.len(),
                    callees: callees.len(),
                }
            })
            .collect();
        node_dtos.sort_by(|a, b| (a.node_type, &a.name).cmp(&(b.node_type, &b.name)));
        let mut edge_dtos: Vec<EdgeDto> = g
            .edges
            .iter()
            .map(|(k, e): (_, &EdgeAgg)| EdgeDto {
                from: name(k.from),
                to: name(k.to),
                to_type: nodes.key(k.to).ty.as_str(),
                connection_type: k.conn.as_str(),
                calls: e.calls,
                errors: e.errors,
                error_rate: rate(e.errors, e.calls),
                client_ms: Percentiles::of(&e.client),
                server_ms: Percentiles::of(&e.server),
                queue_ms: Percentiles::of(&e.queue),
            })
            .collect();
        edge_dtos.sort_by(|a, b| {
            (&a.from, &a.to, a.connection_type).cmp(&(&b.from, &b.to, b.connection_type))
        });
        GraphDoc {
            traces: g.traces,
            spans: g.spans,
            fragmented_traces: g.fragmented_traces,
            nodes: node_dtos,
            edges: edge_dtos,
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeDto> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn edge(&self, from: &str, to: &str) -> Option<&EdgeDto> {
        self.edges.iter().find(|e| e.from == from && e.to == to)
    }
}
