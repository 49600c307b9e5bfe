//! The shapes chokepoint answers in: the graph document, the findings document with each
//! finding's evidence, critical paths, and the replies of the HTTP API (`openapi.json`
//! documents them). Every `--format json`, HTTP and dashboard reply is one of these types,
//! converted from the internal aggregates here, once; the gRPC API maps the same documents to
//! its protobuf messages.

use serde::Serialize;

use crate::analyze::bottleneck::BottleneckScore;
use crate::analyze::capacity::Capacity;
use crate::analyze::graph::{EdgeAgg, GraphAgg, NodeAgg};
use crate::analyze::hist::Hist;
use crate::analyze::node::{NodeId, NodeTable};
use crate::analyze::spof::SpofScore;
use crate::model::Interner;
use crate::report::finding::{Context, Evidence, Finding};
use crate::report::format::r3;

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
            mean: r3(h.mean_ns() / 1e6),
            p50: r3(h.quantile_ms(0.5)),
            p99: r3(h.quantile_ms(0.99)),
        })
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        r3(part as f64 / whole as f64)
    }
}

/// A node's id in the API: stable (from its type and name), URL-safe, and readable:
/// `database-orders_postgresql-5be2c1`. A service and a broker may share a name; their ids
/// differ.
pub fn node_id(ty: &str, name: &str) -> String {
    // FNV-1a: fixed, so the id is the same in every run and every version.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ty.bytes().chain([0]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    while slug.contains("__") {
        slug = slug.replace("__", "_");
    }
    format!("{ty}-{}-{:06x}", slug.trim_matches('_'), h & 0xff_ffff)
}

#[derive(Serialize, Debug, Clone)]
pub struct NodeDto {
    /// Stable, URL-safe id (see [`node_id`]).
    pub id: String,
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
    pub from_id: String,
    pub to_id: String,
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
                    id: node_id(nodes.key(*id).ty.as_str(), &name(*id)),
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
                from_id: node_id(nodes.key(k.from).ty.as_str(), &name(k.from)),
                to_id: node_id(nodes.key(k.to).ty.as_str(), &name(k.to)),
                to_type: nodes.key(k.to).ty.as_str(),
                connection_type: k.conn.grafana_label(),
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

    /// A node by name or id.
    pub fn node(&self, key: &str) -> Option<&NodeDto> {
        self.nodes.iter().find(|n| n.name == key || n.id == key)
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
    /// Every node's capacity and headroom (`capacity_rps` null when unknown).
    pub capacity: Vec<CapacityDto>,
    /// The node whose capacity entry traffic reaches first as it grows, and at which factor;
    /// null when no capacity is known.
    pub first_to_saturate: Option<FirstToSaturateDto>,
    /// With a what-if load (`replay --load`): every node with a known capacity at it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_if_load: Option<WhatIfAtLoad>,
}

#[derive(Serialize, Debug, Clone)]
pub struct WhatIfAtLoad {
    /// The factor on today's entry traffic.
    pub load: f64,
    /// Most loaded first.
    pub nodes: Vec<WhatIfLoadDto>,
}

/// One node's capacity (`GET /capacity`, and every findings document).
#[derive(Serialize, Debug, Clone)]
pub struct CapacityDto {
    pub node: String,
    pub node_id: String,
    pub node_type: &'static str,
    /// Requests sent to it per second, over the last half minute it was asked.
    pub rate_rps: f64,
    /// Requests it completed per second, over the same half minute.
    pub completed_rps: f64,
    pub capacity_rps: Option<f64>,
    /// capacity ÷ rate: the factor its load can grow by (below 1: beyond it now).
    pub headroom: Option<f64>,
    /// What bounds it: `concurrency`, `consumer`, `latency` or `unknown`.
    pub limit: &'static str,
    /// `high` (seen at capacity), `medium` (at half of it or more), `low` (extrapolated).
    pub confidence: &'static str,
    /// How the estimate was made, or why there is none.
    pub reason: String,
    pub instances: Option<usize>,
    pub slots_per_instance: Option<f64>,
    pub service_time_ms: Option<f64>,
    /// Requests in flight per instance, on average over the same half minute.
    pub concurrency: Option<f64>,
    /// Asked faster than it completes: its queue grows now.
    pub queue_growing: bool,
    /// Spans were counted by their adjusted count (a sampling threshold in `tracestate`).
    pub sampled: bool,
    #[serde(skip)]
    pub model: Option<crate::analyze::capacity::Model>,
}

#[derive(Serialize, Debug, Clone)]
pub struct FirstToSaturateDto {
    pub node: String,
    pub node_id: String,
    /// Entry traffic multiplied by this makes it reach its capacity.
    pub at_load_factor: f64,
}

/// `GET /capacity`: the capacity of every node and, for a what-if load, the nodes over
/// capacity at it.
#[derive(Serialize, Debug, Clone)]
pub struct CapacityDoc {
    pub window: WindowDto,
    pub capacity: Vec<CapacityDto>,
    pub first_to_saturate: Option<FirstToSaturateDto>,
    /// The what-if factor on entry traffic (`?load=`), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// At that load, every node with a known capacity, most loaded first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_if: Option<Vec<WhatIfLoadDto>>,
}

#[derive(Serialize, Debug, Clone)]
pub struct WhatIfLoadDto {
    pub node: String,
    pub node_id: String,
    pub rate_rps: f64,
    pub capacity_rps: f64,
    /// rate ÷ capacity at that load.
    pub utilisation: f64,
    pub over_capacity: bool,
    /// Expected latency at that load, waiting included; null over capacity (the queue grows
    /// without bound).
    pub expected_latency_ms: Option<f64>,
}

impl CapacityDoc {
    /// The findings document's capacity, and what `load` × today's entry traffic would do.
    pub fn new(doc: &FindingsDoc, load: Option<f64>) -> CapacityDoc {
        CapacityDoc {
            window: doc.window.clone(),
            capacity: doc.capacity.clone(),
            first_to_saturate: doc.first_to_saturate.clone(),
            load,
            what_if: load.map(|f| what_if_at(&doc.capacity, f)),
        }
    }
}

impl FindingsDoc {
    /// Adds what `load` × today's entry traffic would do to each node with a capacity.
    pub fn with_load(mut self, load: f64) -> FindingsDoc {
        self.what_if_load = Some(WhatIfAtLoad {
            load,
            nodes: what_if_at(&self.capacity, load),
        });
        self
    }
}

/// Every node with a known capacity at `load` × today's rate (a node's load grows with the
/// entry traffic by its calls per entry request, so its rate scales by the same factor),
/// most loaded first.
pub fn what_if_at(capacity: &[CapacityDto], load: f64) -> Vec<WhatIfLoadDto> {
    let mut v: Vec<WhatIfLoadDto> = capacity
        .iter()
        .filter_map(|c| {
            let cap = c.capacity_rps?;
            let rate = c.rate_rps * load;
            let latency = c.model.and_then(|m| m.latency_s(rate));
            Some(WhatIfLoadDto {
                node: c.node.clone(),
                node_id: c.node_id.clone(),
                rate_rps: r3(rate),
                capacity_rps: cap,
                utilisation: r3(rate / cap.max(1e-9)),
                over_capacity: rate >= cap,
                expected_latency_ms: latency.map(|l| r3(l * 1e3)),
            })
        })
        .collect();
    v.sort_by(|a, b| {
        b.utilisation
            .total_cmp(&a.utilisation)
            .then(a.node.cmp(&b.node))
    });
    v
}

fn capacity_dto(c: &Capacity, ctx: &Context<'_>) -> CapacityDto {
    let name = ctx.name(c.node);
    let ty = ctx.node_type(c.node).as_str();
    CapacityDto {
        node_id: node_id(ty, &name),
        node: name,
        node_type: ty,
        rate_rps: r3(c.rate_rps),
        completed_rps: r3(c.done_rps),
        capacity_rps: c.capacity_rps.map(r3),
        headroom: c.headroom().map(r3),
        limit: c.limit.as_str(),
        confidence: c.certainty.as_str(),
        reason: c.reason.clone(),
        instances: c.instances,
        slots_per_instance: c.slots.map(r3),
        service_time_ms: c.service_time_ms.map(r3),
        concurrency: c.concurrency.map(r3),
        queue_growing: c.queue_growing,
        sampled: c.sampled,
        model: c.model,
    }
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
    pub node_id: String,
    pub node_type: &'static str,
    pub score: f64,
    pub severity: &'static str,
    pub confidence: &'static str,
    /// It harms requests now: a jump against the baseline (bottleneck), failures failing
    /// entry requests (SPOF).
    pub active: bool,
    /// For an active SPOF: the requests it failed and when (absent otherwise).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub outage: Option<OutageDto>,
    pub summary: String,
    pub evidence: EvidenceDto,
    pub exemplar_trace_ids: Vec<String>,
    pub remediation: String,
}

/// What an active SPOF is doing to requests now.
#[derive(Serialize, Debug, Clone)]
pub struct OutageDto {
    /// Entry requests that failed because of it in the window.
    pub failed_requests: u64,
    /// Their share of all entry requests in the window.
    pub failed_share: f64,
    /// When its first failed request started (RFC 3339); `null` when the evidence has no
    /// time (calls that vanished against the baseline).
    pub since: Option<String>,
    /// When its last failed request started, once it has stopped failing; `null` while it
    /// lasts.
    pub until: Option<String>,
}

/// The numbers behind a finding, by kind (schemas in `openapi.json`).
#[derive(Serialize, Debug, Clone)]
#[serde(untagged)]
pub enum EvidenceDto {
    Bottleneck(Box<BottleneckEvidenceDto>),
    Spof(Box<SpofEvidenceDto>),
}

#[derive(Serialize, Debug, Clone)]
pub struct BottleneckEvidenceDto {
    /// What decided: "change", "waiting", "slow_caller", "saturation", "share", "backlog",
    /// "capacity".
    pub cause: &'static str,
    /// Evidence that it slows the system, beyond being where time goes.
    pub harm: bool,
    /// Traces or calls behind the deciding signal, and the part of them that show it.
    pub evidence_units: u64,
    pub consistency: f64,
    pub critical_path_share: f64,
    pub own_share: f64,
    pub queueing_share: f64,
    pub dominance_over_next: f64,
    pub traces_on_path: u64,
    pub per_trace_ms: P50P99,
    pub per_operation: Vec<OpShareDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_vs_load: Option<SaturationDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what_if_2x_faster: Option<WhatIfDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogDto>,
    /// Rate, capacity, headroom, limit and confidence (the same entry as in `capacity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityDto>,
}

#[derive(Serialize, Debug, Clone)]
pub struct P50P99 {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct OpShareDto {
    pub operation: String,
    pub share: f64,
    pub traces: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct ChangeDto {
    pub baseline_ms_per_request: f64,
    pub now_ms_per_request: f64,
    pub ratio: f64,
    pub excess_ms_per_request: f64,
    pub explains_share_of_latency: f64,
    pub compared_traces: u64,
    pub by_operation_only: bool,
    pub baseline_e2e_ms_per_request: f64,
    pub now_e2e_ms_per_request: f64,
    pub consistency: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct WaitingDto {
    pub gap_p50_ms: f64,
    pub typical_gap_ms: f64,
    pub ratio: f64,
    pub excess_ms_per_request: f64,
    pub calls: u64,
    pub consistency: f64,
    pub typical_from_baseline: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct SaturationDto {
    pub buckets: usize,
    pub correlation: f64,
    pub ms_per_extra_request_per_s: f64,
    pub busy_over_quiet: f64,
    pub saturating: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct WhatIfDto {
    pub sampled_traces: usize,
    pub e2e_p50_ms_now: f64,
    pub e2e_p99_ms_now: f64,
    pub e2e_p50_ms_if_2x_faster: f64,
    pub e2e_p99_ms_if_2x_faster: f64,
    pub saves_p50_ms: f64,
    pub saves_p99_ms: f64,
    /// Per entry operation, the share of its median request it would save, weighted by the
    /// operation's traffic.
    pub saves_share_of_median: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct BacklogDto {
    pub via: String,
    pub queue_delay_ms: P50P99,
    pub messages: u64,
    pub growth_ms_per_s: f64,
    pub growth_over_window_ms: f64,
    pub growing: bool,
    pub baseline_queue_delay_p99_ms: Option<f64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct SpofEvidenceDto {
    pub reach: f64,
    pub reach_operation: String,
    pub reach_all_traffic: f64,
    /// Instances serving now; `null`: unknown.
    pub instances: Option<usize>,
    pub instances_seen_in_window: Option<usize>,
    pub instances_more: bool,
    pub lost_redundancy: bool,
    /// "none", "unknown" or "replicated".
    pub redundancy: &'static str,
    pub failures_seen: u64,
    pub hardness: Option<f64>,
    /// Some of its failures were absorbed by its callers (the entry request succeeded).
    pub fallback_seen: bool,
    /// The share of entry requests (0..1) its loss would fail, given what callers were seen
    /// to do when it failed.
    pub requests_lost_share: f64,
    pub blast_radius: f64,
    pub dominated_nodes: usize,
    pub fan_in: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_now: Option<FailingNowDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_vanished_vs_baseline: Option<VanishedDto>,
}

#[derive(Serialize, Debug, Clone)]
pub struct FailingNowDto {
    pub rate: f64,
    pub baseline_rate: Option<f64>,
    pub failed_requests: u64,
    pub share_of_dependent: f64,
    pub rate_while_failing: f64,
    pub since: String,
    pub until: Option<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct VanishedDto {
    pub rate: f64,
    pub operation: String,
    pub as_caller: bool,
    pub calls: Vec<VanishedCallDto>,
    pub spans_per_request_before: f64,
    pub spans_per_request_now: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct VanishedCallDto {
    pub from: String,
    pub to: String,
    pub presence_before: f64,
    pub presence_now: f64,
}

impl FindingDto {
    pub fn new(f: &Finding, ctx: &Context<'_>) -> Self {
        FindingDto {
            id: f.id(),
            kind: f.kind.as_str(),
            node: f.node_name.clone(),
            node_id: node_id(f.node_type.as_str(), &f.node_name),
            node_type: f.node_type.as_str(),
            score: f.score,
            severity: f.severity.as_str(),
            confidence: f.confidence.as_str(),
            active: f.active,
            outage: outage_dto(f),
            summary: f.summary.clone(),
            evidence: match &f.evidence {
                Evidence::Bottleneck(b) => {
                    EvidenceDto::Bottleneck(Box::new(bottleneck_dto(b, ctx)))
                }
                Evidence::Spof(s) => EvidenceDto::Spof(Box::new(spof_dto(s, ctx))),
            },
            exemplar_trace_ids: f.exemplars.iter().map(|t| t.to_string()).collect(),
            remediation: f.remediation.clone(),
        }
    }
}

fn outage_dto(f: &Finding) -> Option<OutageDto> {
    let Evidence::Spof(s) = &f.evidence else {
        return None;
    };
    if !f.active {
        return None;
    }
    // By status, unless the calls that vanished account for more requests.
    let by_status = s.failing_now.as_ref().filter(|w| {
        s.vanished
            .as_ref()
            .is_none_or(|v| w.failed_requests >= v.requests)
    });
    Some(match (by_status, &s.vanished) {
        (Some(w), _) => OutageDto {
            failed_requests: w.failed_requests,
            failed_share: r3(w.rate),
            since: Some(rfc3339(w.since_ns)),
            until: w.until_ns.map(rfc3339),
        },
        (None, Some(v)) => OutageDto {
            failed_requests: v.requests,
            failed_share: r3(v.rate),
            since: None,
            until: None,
        },
        (None, None) => return None,
    })
}

fn bottleneck_dto(b: &BottleneckScore, ctx: &Context<'_>) -> BottleneckEvidenceDto {
    let s = &b.share;
    BottleneckEvidenceDto {
        cause: b.cause.name(),
        harm: b.harm,
        evidence_units: b.evidence_units,
        consistency: r3(b.consistency),
        critical_path_share: r3(s.share),
        own_share: r3(s.own_share),
        queueing_share: r3(s.queue_share),
        dominance_over_next: r3(s.dominance),
        traces_on_path: s.traces_on_path,
        per_trace_ms: P50P99 {
            p50: r3(s.per_trace_p50_ms),
            p99: r3(s.per_trace_p99_ms),
        },
        per_operation: s
            .per_operation
            .iter()
            .map(|(op, share, traces)| OpShareDto {
                operation: ctx.op_name(op),
                share: r3(*share),
                traces: *traces,
            })
            .collect(),
        change: b.change().map(|c| ChangeDto {
            baseline_ms_per_request: r3(c.baseline_ms_per_request),
            now_ms_per_request: r3(c.now_ms_per_request),
            ratio: r3(c.ratio),
            excess_ms_per_request: r3(c.excess_ms_per_request),
            explains_share_of_latency: r3(c.explains_share_of_latency),
            compared_traces: c.compared_traces,
            by_operation_only: c.by_operation_only,
            baseline_e2e_ms_per_request: r3(c.baseline_e2e_ms_per_request),
            now_e2e_ms_per_request: r3(c.now_e2e_ms_per_request),
            consistency: r3(c.consistency),
        }),
        waiting: b.waiting().map(|w| WaitingDto {
            gap_p50_ms: r3(w.gap_p50_ms),
            typical_gap_ms: r3(w.typical_gap_ms),
            ratio: r3(w.ratio),
            excess_ms_per_request: r3(w.excess_ms_per_request),
            calls: w.calls,
            consistency: r3(w.consistency),
            typical_from_baseline: w.typical_from_baseline,
        }),
        latency_vs_load: b.saturation().map(|s| SaturationDto {
            buckets: s.buckets,
            correlation: r3(s.correlation),
            ms_per_extra_request_per_s: r3(s.ms_per_extra_request_per_s),
            busy_over_quiet: r3(s.busy_over_quiet),
            saturating: s.saturating,
        }),
        what_if_2x_faster: b.what_if.as_ref().map(|w| WhatIfDto {
            sampled_traces: w.sampled_traces,
            e2e_p50_ms_now: r3(w.p50_ms_now),
            e2e_p99_ms_now: r3(w.p99_ms_now),
            e2e_p50_ms_if_2x_faster: r3(w.p50_ms_if_2x_faster),
            e2e_p99_ms_if_2x_faster: r3(w.p99_ms_if_2x_faster),
            saves_p50_ms: r3(w.saves_p50_ms()),
            saves_p99_ms: r3(w.saves_p99_ms()),
            saves_share_of_median: r3(w.saves_share_of_median),
        }),
        backlog: b.backlog().map(|q| BacklogDto {
            via: ctx.name(q.via),
            queue_delay_ms: P50P99 {
                p50: r3(q.p50_ms),
                p99: r3(q.p99_ms),
            },
            messages: q.messages,
            growth_ms_per_s: r3(q.growth_ms_per_s),
            growth_over_window_ms: r3(q.growth_over_window_ms),
            growing: q.growing,
            baseline_queue_delay_p99_ms: q.baseline_p99_ms.map(r3),
        }),
        capacity: b.capacity().map(|c| capacity_dto(c, ctx)),
    }
}

fn spof_dto(s: &SpofScore, ctx: &Context<'_>) -> SpofEvidenceDto {
    SpofEvidenceDto {
        reach: r3(s.reach),
        reach_operation: ctx.op_name(&s.reach_operation),
        reach_all_traffic: r3(s.reach_all_traffic),
        instances: s.instances,
        instances_seen_in_window: s.instances_seen,
        instances_more: s.instances_more,
        lost_redundancy: s.lost_redundancy,
        redundancy: match s.instances {
            None => "unknown",
            Some(1) => "none",
            Some(_) => "replicated",
        },
        failures_seen: s.failures_seen,
        hardness: s.hardness.map(r3),
        fallback_seen: s.fallback_seen,
        requests_lost_share: r3(s.requests_lost_share),
        blast_radius: r3(s.blast_radius),
        dominated_nodes: s.dominated_nodes,
        fan_in: s.fan_in,
        failing_now: s.failing_now.as_ref().map(|f| FailingNowDto {
            rate: r3(f.rate),
            baseline_rate: f.baseline_rate.map(r3),
            failed_requests: f.failed_requests,
            share_of_dependent: r3(f.share_of_dependent),
            rate_while_failing: r3(f.rate_while_failing),
            since: rfc3339(f.since_ns),
            until: f.until_ns.map(rfc3339),
        }),
        calls_vanished_vs_baseline: s.vanished.as_ref().map(|v| VanishedDto {
            rate: r3(v.rate),
            operation: ctx.op_name(&v.operation),
            as_caller: v.as_caller,
            calls: v
                .calls
                .iter()
                .map(|(a, b, before, now)| VanishedCallDto {
                    from: ctx.name(*a),
                    to: ctx.name(*b),
                    presence_before: r3(*before),
                    presence_now: r3(*now),
                })
                .collect(),
            spans_per_request_before: r3(v.spans_per_request_before),
            spans_per_request_now: r3(v.spans_per_request_now),
        }),
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

pub use crate::model::rfc3339;

#[cfg(test)]
mod tests {
    use super::{node_id, rfc3339};

    #[test]
    fn node_ids_are_stable_url_safe_and_tell_types_apart() {
        let a = node_id("database", "orders (postgresql)");
        assert!(a.starts_with("database-orders_postgresql-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
        assert_eq!(a, node_id("database", "orders (postgresql)"));
        assert_ne!(node_id("service", "kafka"), node_id("messaging", "kafka"));
    }

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

// The replies below were JSON objects built by hand before they had types, whose keys came
// out in alphabetical order; their fields are declared in that order so the bytes on the
// wire stay the same.

/// A critical path, as `/traces/{id}/critical-path` answers and `chokepoint critical-path
/// --format json` prints it.
#[derive(Serialize, Debug, Clone)]
pub struct PathDoc {
    pub duration_ns: u64,
    pub segments: Vec<SegmentDoc>,
    pub trace_id: String,
}

/// One segment of a critical path: whose time it was, and when.
#[derive(Serialize, Debug, Clone)]
pub struct SegmentDoc {
    pub end_unix_nano: u64,
    pub node: String,
    pub operation: String,
    pub part: &'static str,
    pub service: String,
    pub span_id: String,
    pub start_unix_nano: u64,
}

impl PathDoc {
    pub fn new(p: &crate::analyze::critical_path::PathRecord, names: &Interner) -> Self {
        PathDoc {
            duration_ns: p.duration_ns,
            segments: p
                .segments
                .iter()
                .map(|s| SegmentDoc {
                    end_unix_nano: s.end_ns,
                    node: names.resolve(s.node).to_owned(),
                    operation: names.resolve(s.operation).to_owned(),
                    part: s.part,
                    service: names.resolve(s.service).to_owned(),
                    span_id: s.span_id.to_string(),
                    start_unix_nano: s.start_ns,
                })
                .collect(),
            trace_id: p.trace_id.to_string(),
        }
    }
}

/// An error answer: `{"error": "..."}`.
#[derive(Serialize, Debug, Clone)]
pub struct ErrorDoc {
    pub error: String,
}

/// What the dashboard needs to know of the daemon's settings (`/ui-config`).
#[derive(Serialize, Debug, Clone)]
pub struct UiConfigDoc {
    pub refresh_ms: u64,
    pub trace_url: Option<String>,
    pub window_seconds: f64,
}

/// Ingest health (`/health`): the books of the pipeline.
#[derive(Serialize, Debug, Clone)]
pub struct HealthDoc {
    pub export_requests: u64,
    pub names_overflowed: u64,
    pub nodes_overflowed: u64,
    pub queue_depth: u64,
    pub ready: bool,
    pub requests_invalid: u64,
    pub spans_analysed: u64,
    pub spans_dropped: u64,
    pub spans_in_flight: u64,
    pub spans_received: u64,
    pub spans_refused: u64,
    pub spans_rejected: u64,
    pub traces_completed: u64,
    pub traces_in_flight: u64,
    pub view_refreshed_at: String,
    /// The aggregates' estimated size against `analysis.memory_budget_mb`, and the process's
    /// resident memory (Linux; `null` elsewhere), for the dashboard's ingest board.
    pub aggregate_bytes: u64,
    pub memory_budget_bytes: u64,
    pub rss_bytes: Option<u64>,
}

/// The `refresh` server-sent event: each finding's id, severity, score and whether it is
/// active, for the dashboard to update from.
#[derive(Serialize, Debug, Clone)]
pub struct RefreshEvent {
    pub findings: Vec<RefreshFinding>,
    pub refreshed_at: String,
    pub traces: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct RefreshFinding {
    pub active: bool,
    pub id: String,
    pub score: f64,
    pub severity: &'static str,
}

/// Grafana's Node Graph panel: both frames (`/node-graph`).
#[derive(Serialize, Debug, Clone)]
pub struct NodeGraphDoc {
    pub edges: Vec<NodeGraphEdge>,
    pub nodes: Vec<NodeGraphNode>,
}

/// A node of Grafana's Node Graph frame; the field names are the panel's.
#[derive(Serialize, Debug, Clone)]
pub struct NodeGraphNode {
    #[serde(rename = "arc__critical")]
    pub arc_critical: f64,
    #[serde(rename = "arc__high")]
    pub arc_high: f64,
    #[serde(rename = "arc__medium")]
    pub arc_medium: f64,
    #[serde(rename = "arc__ok")]
    pub arc_ok: f64,
    pub color: &'static str,
    #[serde(rename = "detail__active")]
    pub detail_active: bool,
    #[serde(rename = "detail__severity")]
    pub detail_severity: &'static str,
    pub id: String,
    pub mainstat: String,
    pub secondarystat: String,
    pub subtitle: String,
    pub title: String,
}

/// An edge of Grafana's Node Graph frame.
#[derive(Serialize, Debug, Clone)]
pub struct NodeGraphEdge {
    pub id: String,
    pub mainstat: String,
    pub secondarystat: String,
    pub source: String,
    pub target: String,
}

impl FindingsDoc {
    /// The document of a window's findings. `empty` is the window to show when `cur` holds
    /// no span (its span-time bounds are then unset).
    pub fn new(
        cur: &GraphAgg,
        baseline: Option<&GraphAgg>,
        report: &crate::report::finding::Report,
        ctx: &Context<'_>,
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
            findings: report
                .findings
                .iter()
                .map(|f| FindingDto::new(f, ctx))
                .collect(),
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
            capacity: {
                // By type and name, as the graph's nodes: node ids follow the order traces
                // completed in, which must not show.
                let mut v: Vec<CapacityDto> = report
                    .capacity
                    .iter()
                    .filter(|c| c.node != NodeTable::OVERFLOW)
                    .map(|c| capacity_dto(c, ctx))
                    .collect();
                v.sort_by(|a, b| (&a.node_type, &a.node).cmp(&(&b.node_type, &b.node)));
                v
            },
            first_to_saturate: report.first_to_saturate.map(|(n, f)| {
                let name = ctx.name(n);
                FirstToSaturateDto {
                    node_id: node_id(ctx.node_type(n).as_str(), &name),
                    node: name,
                    at_load_factor: r3(f),
                }
            }),
            what_if_load: None,
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
            capacity: Vec::new(),
            first_to_saturate: None,
            what_if_load: None,
        }
    }
}
