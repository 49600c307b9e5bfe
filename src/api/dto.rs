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
    /// Instances serving now, at the node's last sighting (addresses, for backends); `null`
    /// when none was identified: redundancy unknown, not one.
    pub instances: Option<usize>,
    /// Distinct instances seen over the whole window (replicas lost since included).
    pub instances_seen: Option<usize>,
    /// True when more instances were seen than are tracked: `instances` is a lower bound.
    pub instances_more: bool,
    /// Up to ten names of the instances serving now.
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
                    instances: n.instances.serving_count(),
                    instances_seen: n.instances.count(),
                    instances_more: n.instances.overflow,
                    instance_names: {
                        // By name, not by first sighting, so arrival order cannot show.
                        let mut v: Vec<String> = n
                            .instances
                            .serving()
                            .into_iter()
                            .map(|s| names.resolve(s).to_owned())
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

/// The findings document: `chokepoint replay --format json` and the daemon's `/findings`.
#[derive(Serialize, Debug, Clone)]
pub struct FindingsDoc {
    pub window: WindowDto,
    pub traces: u64,
    /// Of those, user requests (the rest is background work).
    pub requests: u64,
    pub spans: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineDto>,
    pub findings: Vec<FindingDto>,
    /// What concerns the whole system rather than one node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Background work (traces whose root serves no user), kept out of the findings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub background_operations: Vec<BackgroundOpDto>,
}

#[derive(Serialize, Debug, Clone)]
pub struct BackgroundOpDto {
    pub operation: String,
    pub traces: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct WindowDto {
    pub start: String,
    pub end: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct BaselineDto {
    pub traces: u64,
    pub window: WindowDto,
}

#[derive(Serialize, Debug, Clone)]
pub struct FindingDto {
    pub id: String,
    pub kind: &'static str,
    pub node: String,
    pub node_type: &'static str,
    pub score: f64,
    pub severity: &'static str,
    pub confidence: &'static str,
    pub summary: String,
    pub evidence: serde_json::Map<String, serde_json::Value>,
    pub exemplar_trace_ids: Vec<String>,
    pub remediation: String,
}

impl From<&crate::findings::Finding> for FindingDto {
    fn from(f: &crate::findings::Finding) -> Self {
        FindingDto {
            id: f.id(),
            kind: f.kind.as_str(),
            node: f.node_name.clone(),
            node_type: f.node_type.as_str(),
            score: f.score,
            severity: f.severity.as_str(),
            confidence: f.confidence.as_str(),
            summary: f.summary.clone(),
            evidence: f.evidence.clone(),
            exemplar_trace_ids: f.exemplars.iter().map(|t| t.to_string()).collect(),
            remediation: f.remediation.clone(),
        }
    }
}

impl WindowDto {
    pub fn new(start_ns: u64, end_ns: u64) -> WindowDto {
        WindowDto {
            start: rfc3339(start_ns),
            end: rfc3339(end_ns),
        }
    }
}

/// RFC 3339 in UTC with millisecond precision, from Unix nanoseconds.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_768_471_200_123_000_000),
            "2026-01-15T10:00:00.123Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }
}

/// `GET /nodes/{name}`: a node over time, its neighbours, findings and exemplars.
#[derive(Serialize, Debug, Clone)]
pub struct NodeDetail {
    pub node: NodeDto,
    /// One point per time bucket kept in history.
    pub history: Vec<NodePoint>,
    pub callers: Vec<EdgeDto>,
    pub callees: Vec<EdgeDto>,
    pub findings: Vec<FindingDto>,
    pub exemplar_trace_ids: Vec<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct NodePoint {
    pub start: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A critical path as `chokepoint critical-path --format json` prints it.
pub fn path_json(
    p: &crate::analyze::critical_path::PathRecord,
    names: &Interner,
) -> serde_json::Value {
    let segs: Vec<serde_json::Value> = p
        .segments
        .iter()
        .map(|s| {
            serde_json::json!({
                "span_id": s.span_id.to_string(),
                "node": names.resolve(s.node),
                "service": names.resolve(s.service),
                "operation": names.resolve(s.operation),
                "part": s.part,
                "start_unix_nano": s.start_ns,
                "end_unix_nano": s.end_ns,
            })
        })
        .collect();
    serde_json::json!({
        "trace_id": p.trace_id.to_string(),
        "duration_ns": p.duration_ns,
        "segments": segs,
    })
}

impl FindingsDoc {
    /// The document of a window's findings. `empty` is the window to show when `cur` holds
    /// no span (its span-time bounds are then unset).
    pub fn new(
        cur: &GraphAgg,
        baseline: Option<&GraphAgg>,
        report: &crate::findings::Report,
        empty: (u64, u64),
    ) -> FindingsDoc {
        let window = |g: &GraphAgg| {
            if g.start_ns <= g.end_ns {
                WindowDto::new(g.start_ns, g.end_ns)
            } else {
                WindowDto::new(empty.0, empty.1)
            }
        };
        FindingsDoc {
            window: window(cur),
            traces: cur.traces,
            requests: cur.facts.traces,
            spans: cur.spans,
            baseline: baseline.map(|b| BaselineDto {
                traces: b.traces,
                window: window(b),
            }),
            findings: report.findings.iter().map(FindingDto::from).collect(),
            notes: report.notes.clone(),
            background_operations: report
                .background
                .iter()
                .map(|b| BackgroundOpDto {
                    operation: b.operation.clone(),
                    traces: b.traces,
                    p50_ms: b.p50_ms,
                    p99_ms: b.p99_ms,
                })
                .collect(),
        }
    }

    /// Before the first refresh: no window, no findings.
    pub fn empty() -> FindingsDoc {
        FindingsDoc {
            window: WindowDto::new(0, 0),
            traces: 0,
            requests: 0,
            spans: 0,
            baseline: None,
            findings: Vec::new(),
            notes: Vec::new(),
            background_operations: Vec::new(),
        }
    }
}
