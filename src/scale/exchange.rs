//! The aggregates as Prometheus series, both ways: [`encode`] turns what the scorers read
//! into `chokepoint_*` counters and gauges (for `/metrics` and remote-write), [`decode`]
//! rebuilds a window's aggregates from those series as a store returns them (summed across
//! instances, over a range of time). Every field of [`GraphAgg`] that travels is mapped here
//! and nowhere else, so the two directions cannot drift apart.
//!
//! What travels, and how:
//! - Sums (requests, errors, critical-path time, reach, failures, shapes, request kinds,
//!   backend usage) are counters: a window is the increase over it, and instances add.
//! - Histograms are counters per bin (8 per power of two, [`Hist::bins`]) named by their
//!   upper bound, not cumulative `le` buckets: instances that used different bins still sum
//!   right. Read back, a quantile is within half a bin (about ±5%); the sum is exact and the
//!   maximum is the largest any instance reported.
//! - What is a function of time (load per 10 s for saturation, sightings of each instance,
//!   the queue delay's trend) is not a label: it is rebuilt from the series' own samples,
//!   each sample's increase in the 10 s slot of the time it was written (so by write time,
//!   not span time: live traffic has the two close; a replay burst is one slot).
//! - Instances serving a node carry when each was first and last seen (span time) as gauges.
//! - When a node's failed requests began and were last seen is rebuilt the same way, from the
//!   times of the increases of `chokepoint_failed_with_entry_total`.
//!
//! What does not travel: exemplar trace ids and the what-if's trace sample are per instance
//! (a trace lives in one instance); decoded aggregates have none, and the findings built on
//! them say so by having no exemplars. Hashes that travel (a request's shape and route, a
//! backend usage) are built from names ([`crate::model::stable_hash`]), never from symbol
//! numbers, so instances agree on them.
//!
//! Aggregates are exported raw (backends by address): the reader groups them into the nodes
//! users know with the same resolver, over everything it reads.

use std::collections::BTreeMap;

use crate::analyze::facts::{ClassKey, OpKey};
use crate::analyze::graph::{EdgeKey, GraphAgg, UsageKey, LOAD_BUCKET_NS};
use crate::analyze::hist::Hist;
use crate::analyze::node::{NodeId, NodeTable};
use crate::api::prom;
pub use crate::api::prom::Sample;
use crate::model::{Interner, NodeKey, NodeType, Sym};

/// Label names of a node: its name, type, and for a raw backend its system and the name its
/// callers gave it.
type NodeLabelNames = [&'static str; 4];
const NODE: NodeLabelNames = ["node", "node_type", "node_system", "node_db"];
const CALLER: NodeLabelNames = ["caller", "caller_type", "caller_system", "caller_db"];
const CALLEE: NodeLabelNames = ["callee", "callee_type", "callee_system", "callee_db"];
const SERVICE: NodeLabelNames = ["service", "service_type", "service_system", "service_db"];

/// One series over a range of time, as a store returns it: `(unix seconds, value)` points,
/// in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The gauge saying when an instance published its aggregates.
pub const HEARD: &str = "chokepoint_agg_heard_seconds";

/// The [`HEARD`] sample for a publication at `now_s` (Unix seconds).
pub fn heard(now_s: f64) -> Sample {
    Sample {
        name: HEARD,
        labels: Vec::new(),
        value: now_s,
    }
}

/// Every metric name [`encode`] writes, with its type and help, for the exposition format.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("chokepoint_agg_traces_total", "counter", "Traces analysed."),
    (
        "chokepoint_agg_spans_total",
        "counter",
        "Spans of the traces analysed.",
    ),
    (
        "chokepoint_agg_fragmented_traces_total",
        "counter",
        "Traces that arrived in pieces.",
    ),
    (
        HEARD,
        "gauge",
        "When this instance published these aggregates (Unix time): a global reader's 'last heard from', which a store's lookback would otherwise blur.",
    ),
    (
        "chokepoint_agg_span_time_first_seconds",
        "gauge",
        "Earliest span start analysed (Unix time).",
    ),
    (
        "chokepoint_agg_span_time_last_seconds",
        "gauge",
        "Latest span end analysed (Unix time).",
    ),
    (
        "chokepoint_node_spans_total",
        "counter",
        "Spans a service reported.",
    ),
    (
        "chokepoint_node_span_errors_total",
        "counter",
        "Of those, spans marked as errors.",
    ),
    (
        "chokepoint_node_requests_total",
        "counter",
        "Requests into a node.",
    ),
    (
        "chokepoint_node_errors_total",
        "counter",
        "Of those, failed.",
    ),
    (
        "chokepoint_node_serves_total",
        "counter",
        "Entry spans that serve someone.",
    ),
    (
        "chokepoint_node_latency_seconds_bin",
        "counter",
        "Request latency: counts per bin (upper bound `ub`, seconds; not cumulative).",
    ),
    (
        "chokepoint_node_latency_seconds_sum",
        "counter",
        "Request latency: sum.",
    ),
    (
        "chokepoint_node_latency_seconds_max",
        "gauge",
        "Request latency: largest.",
    ),
    (
        "chokepoint_node_self_time_seconds_bin",
        "counter",
        "Own time per request: counts per bin.",
    ),
    (
        "chokepoint_node_self_time_seconds_sum",
        "counter",
        "Own time per request: sum.",
    ),
    (
        "chokepoint_node_self_time_seconds_max",
        "gauge",
        "Own time per request: largest.",
    ),
    (
        "chokepoint_node_load_requests_total",
        "counter",
        "Requests counted for latency against load.",
    ),
    (
        "chokepoint_node_load_latency_seconds_total",
        "counter",
        "Their summed latency (own time for services).",
    ),
    (
        "chokepoint_node_instance_sightings_total",
        "counter",
        "Sightings of each instance of a node.",
    ),
    (
        "chokepoint_node_instance_first_seen_seconds",
        "gauge",
        "When an instance was first seen (span time).",
    ),
    (
        "chokepoint_node_instance_last_seen_seconds",
        "gauge",
        "When an instance was last seen (span time).",
    ),
    (
        "chokepoint_node_unidentified_sightings_total",
        "counter",
        "Sightings without an instance identity.",
    ),
    (
        "chokepoint_node_instances_overflowed",
        "gauge",
        "1 when more instances were seen than are kept.",
    ),
    (
        "chokepoint_edge_calls_total",
        "counter",
        "Calls from caller to callee.",
    ),
    (
        "chokepoint_edge_errors_total",
        "counter",
        "Of those, failed.",
    ),
    (
        "chokepoint_edge_client_seconds_bin",
        "counter",
        "Caller-side duration: counts per bin.",
    ),
    (
        "chokepoint_edge_client_seconds_sum",
        "counter",
        "Caller-side duration: sum.",
    ),
    (
        "chokepoint_edge_client_seconds_max",
        "gauge",
        "Caller-side duration: largest.",
    ),
    (
        "chokepoint_edge_server_seconds_bin",
        "counter",
        "Callee-side duration: counts per bin.",
    ),
    (
        "chokepoint_edge_server_seconds_sum",
        "counter",
        "Callee-side duration: sum.",
    ),
    (
        "chokepoint_edge_server_seconds_max",
        "gauge",
        "Callee-side duration: largest.",
    ),
    (
        "chokepoint_edge_queue_seconds_bin",
        "counter",
        "Messaging queue delay: counts per bin.",
    ),
    (
        "chokepoint_edge_queue_seconds_sum",
        "counter",
        "Messaging queue delay: sum.",
    ),
    (
        "chokepoint_edge_queue_seconds_max",
        "gauge",
        "Messaging queue delay: largest.",
    ),
    (
        "chokepoint_edge_gap_seconds_bin",
        "counter",
        "Wait outside the callee's span: counts per bin.",
    ),
    (
        "chokepoint_edge_gap_seconds_sum",
        "counter",
        "Wait outside the callee's span: sum.",
    ),
    (
        "chokepoint_edge_gap_seconds_max",
        "gauge",
        "Wait outside the callee's span: largest.",
    ),
    (
        "chokepoint_usage_calls_total",
        "counter",
        "Calls of a caller asking one thing of one backend address.",
    ),
    (
        "chokepoint_usage_dropped_total",
        "counter",
        "Usage entries past the bound.",
    ),
    (
        "chokepoint_user_requests_total",
        "counter",
        "User requests (traces serving someone).",
    ),
    (
        "chokepoint_user_request_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_background_traces_total",
        "counter",
        "Traces of background work.",
    ),
    (
        "chokepoint_op_traces_total",
        "counter",
        "Traces per entry operation.",
    ),
    (
        "chokepoint_op_errors_total",
        "counter",
        "Of those, failed at the entry.",
    ),
    ("chokepoint_op_spans_total", "counter", "Their spans."),
    (
        "chokepoint_op_e2e_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_op_e2e_seconds_bin",
        "counter",
        "End-to-end time: counts per bin.",
    ),
    (
        "chokepoint_op_e2e_seconds_sum",
        "counter",
        "End-to-end time: sum.",
    ),
    (
        "chokepoint_op_e2e_seconds_max",
        "gauge",
        "End-to-end time: largest.",
    ),
    (
        "chokepoint_cp_traces_total",
        "counter",
        "Requests of an entry operation with the node on the critical path.",
    ),
    (
        "chokepoint_cp_own_seconds_total",
        "counter",
        "Critical-path time of the node, working.",
    ),
    (
        "chokepoint_cp_queue_seconds_total",
        "counter",
        "Critical-path time of the node, waiting.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_bin",
        "counter",
        "Critical-path time per request: counts per bin.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_sum",
        "counter",
        "Critical-path time per request: sum.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_max",
        "gauge",
        "Critical-path time per request: largest.",
    ),
    (
        "chokepoint_cp_wait_seconds_total",
        "counter",
        "Critical-path waits of a caller on a callee.",
    ),
    (
        "chokepoint_reach_total",
        "counter",
        "Requests of an entry operation that waited on the node.",
    ),
    (
        "chokepoint_failed_traces_total",
        "counter",
        "Requests in which the node failed.",
    ),
    (
        "chokepoint_failed_with_entry_total",
        "counter",
        "Of those, requests that failed at the entry too.",
    ),
    (
        "chokepoint_shape_traces_total",
        "counter",
        "Requests per entry operation and shape.",
    ),
    (
        "chokepoint_shape_e2e_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_shape_cp_own_seconds_total",
        "counter",
        "Critical-path time per operation, shape and node, working.",
    ),
    (
        "chokepoint_shape_cp_queue_seconds_total",
        "counter",
        "The same, waiting.",
    ),
    (
        "chokepoint_class_requests_total",
        "counter",
        "Requests per kind (entry operation and route).",
    ),
    (
        "chokepoint_class_calls_total",
        "counter",
        "Requests of a kind in which caller called callee.",
    ),
    (
        "chokepoint_class_present_total",
        "counter",
        "Requests of a kind a service took part in.",
    ),
];

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

fn ns_s(ns: u128) -> f64 {
    ns as f64 / 1e9
}

/// Writes the series of one set of aggregates (everything since the process started: the
/// counters only grow).
struct Encoder<'a> {
    nodes: &'a NodeTable,
    names: &'a Interner,
    out: Vec<Sample>,
}

impl Encoder<'_> {
    fn push(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64) {
        self.out.push(Sample {
            name,
            labels,
            value,
        });
    }

    fn node(&self, l: &NodeLabelNames, id: NodeId) -> Vec<(&'static str, String)> {
        let k = self.nodes.key(id);
        let mut v = vec![
            (l[0], self.names.resolve(k.name).to_owned()),
            (l[1], k.ty.as_str().to_owned()),
        ];
        if let Some(s) = k.system {
            v.push((l[2], self.names.resolve(s).to_owned()));
        }
        if let Some(s) = k.label {
            v.push((l[3], self.names.resolve(s).to_owned()));
        }
        v
    }

    fn op(&self, op: &OpKey) -> Vec<(&'static str, String)> {
        let mut v = self.node(&SERVICE, op.service);
        v.push(("operation", self.names.resolve(op.name).to_owned()));
        v.push(("background", op.background.to_string()));
        v
    }

    fn class(&self, c: &ClassKey) -> Vec<(&'static str, String)> {
        let mut v = self.op(&c.op);
        v.push(("route", hex(c.route)));
        v
    }

    /// `<base>_bin{ub}`, `<base>_sum`, `<base>_max` (names from [`METRICS`]).
    fn hist(&mut self, base: [&'static str; 3], labels: &[(&'static str, String)], h: &Hist) {
        if h.count() == 0 {
            return;
        }
        for (ub, c) in h.bins() {
            let mut l = labels.to_vec();
            l.push(("ub", format!("{:.6}", ub as f64 / 1e6)));
            self.push(base[0], l, c as f64);
        }
        self.push(base[1], labels.to_vec(), h.sum_us() as f64 / 1e6);
        self.push(base[2], labels.to_vec(), h.max_ns() as f64 / 1e9);
    }
}

fn cat(
    a: Vec<(&'static str, String)>,
    b: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    let mut a = a;
    a.extend(b);
    a
}

/// The three series of one histogram: its bins, its sum and its maximum.
macro_rules! hist_names {
    ($base:literal) => {
        [
            concat!($base, "_bin"),
            concat!($base, "_sum"),
            concat!($base, "_max"),
        ]
    };
}

const NODE_LATENCY: [&str; 3] = hist_names!("chokepoint_node_latency_seconds");
const NODE_SELF: [&str; 3] = hist_names!("chokepoint_node_self_time_seconds");
const EDGE_CLIENT: [&str; 3] = hist_names!("chokepoint_edge_client_seconds");
const EDGE_SERVER: [&str; 3] = hist_names!("chokepoint_edge_server_seconds");
const EDGE_QUEUE: [&str; 3] = hist_names!("chokepoint_edge_queue_seconds");
const EDGE_GAP: [&str; 3] = hist_names!("chokepoint_edge_gap_seconds");
const OP_E2E: [&str; 3] = hist_names!("chokepoint_op_e2e_seconds");
const CP_PER_TRACE: [&str; 3] = hist_names!("chokepoint_cp_per_trace_seconds");

/// The series of `agg` (raw, unresolved aggregates since the process started).
pub fn encode(agg: &GraphAgg, nodes: &NodeTable, names: &Interner) -> Vec<Sample> {
    let mut e = Encoder {
        nodes,
        names,
        out: Vec::new(),
    };
    e.push("chokepoint_agg_traces_total", vec![], agg.traces as f64);
    e.push("chokepoint_agg_spans_total", vec![], agg.spans as f64);
    e.push(
        "chokepoint_agg_fragmented_traces_total",
        vec![],
        agg.fragmented_traces as f64,
    );
    if agg.start_ns <= agg.end_ns {
        e.push(
            "chokepoint_agg_span_time_first_seconds",
            vec![],
            agg.start_ns as f64 / 1e9,
        );
        e.push(
            "chokepoint_agg_span_time_last_seconds",
            vec![],
            agg.end_ns as f64 / 1e9,
        );
    }
    let mut ids: Vec<_> = agg.nodes.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let n = &agg.nodes[&id];
        let l = e.node(&NODE, id);
        e.push("chokepoint_node_spans_total", l.clone(), n.spans as f64);
        e.push(
            "chokepoint_node_span_errors_total",
            l.clone(),
            n.span_errors as f64,
        );
        e.push(
            "chokepoint_node_requests_total",
            l.clone(),
            n.requests as f64,
        );
        e.push("chokepoint_node_errors_total", l.clone(), n.errors as f64);
        e.push("chokepoint_node_serves_total", l.clone(), n.serves as f64);
        e.hist(NODE_LATENCY, &l, &n.latency);
        e.hist(NODE_SELF, &l, &n.self_time);
        let (c, sum) = n
            .load
            .values()
            .fold((0u64, 0u128), |(c, s), (n, l)| (c + n, s + u128::from(*l)));
        e.push("chokepoint_node_load_requests_total", l.clone(), c as f64);
        e.push(
            "chokepoint_node_load_latency_seconds_total",
            l.clone(),
            ns_s(sum),
        );
        for (i, seen) in &n.instances.known {
            let il = cat(
                l.clone(),
                vec![("service_instance", names.resolve(*i).to_owned())],
            );
            e.push(
                "chokepoint_node_instance_sightings_total",
                il.clone(),
                seen.count as f64,
            );
            e.push(
                "chokepoint_node_instance_first_seen_seconds",
                il.clone(),
                seen.first_ns as f64 / 1e9,
            );
            e.push(
                "chokepoint_node_instance_last_seen_seconds",
                il,
                seen.last_ns as f64 / 1e9,
            );
        }
        e.push(
            "chokepoint_node_unidentified_sightings_total",
            l.clone(),
            n.instances.unknown_observations as f64,
        );
        if n.instances.overflow {
            e.push("chokepoint_node_instances_overflowed", l, 1.0);
        }
    }
    let mut edges: Vec<_> = agg.edges.iter().collect();
    edges.sort_unstable_by_key(|(k, _)| **k);
    for (k, x) in edges {
        let l = cat(
            cat(e.node(&CALLER, k.from), e.node(&CALLEE, k.to)),
            vec![("connection_type", k.conn.as_str().to_owned())],
        );
        e.push("chokepoint_edge_calls_total", l.clone(), x.calls as f64);
        e.push("chokepoint_edge_errors_total", l.clone(), x.errors as f64);
        e.hist(EDGE_CLIENT, &l, &x.client);
        e.hist(EDGE_SERVER, &l, &x.server);
        e.hist(EDGE_QUEUE, &l, &x.queue);
        e.hist(EDGE_GAP, &l, &x.gap);
    }
    let mut usage: Vec<_> = agg.usage.iter().collect();
    usage.sort_unstable_by_key(|(k, _)| **k);
    for (k, n) in usage {
        let l = cat(
            cat(e.node(&CALLER, k.caller), e.node(&CALLEE, k.peer)),
            vec![("usage", hex(k.usage))],
        );
        e.push("chokepoint_usage_calls_total", l, *n as f64);
    }
    e.push(
        "chokepoint_usage_dropped_total",
        vec![],
        agg.usage_dropped as f64,
    );
    encode_facts(&mut e, agg);
    e.out
}

fn encode_facts(e: &mut Encoder<'_>, agg: &GraphAgg) {
    let f = &agg.facts;
    e.push("chokepoint_user_requests_total", vec![], f.traces as f64);
    e.push(
        "chokepoint_user_request_seconds_total",
        vec![],
        ns_s(f.e2e_total_ns),
    );
    e.push(
        "chokepoint_background_traces_total",
        vec![],
        f.background_traces as f64,
    );
    let mut ops: Vec<_> = f.ops.iter().collect();
    ops.sort_unstable_by_key(|(k, _)| **k);
    for (k, o) in ops {
        let l = e.op(k);
        e.push("chokepoint_op_traces_total", l.clone(), o.traces as f64);
        e.push("chokepoint_op_errors_total", l.clone(), o.errors as f64);
        e.push("chokepoint_op_spans_total", l.clone(), o.spans as f64);
        e.push(
            "chokepoint_op_e2e_seconds_total",
            l.clone(),
            ns_s(o.e2e_total_ns),
        );
        e.hist(OP_E2E, &l, &o.e2e);
    }
    let mut cp: Vec<_> = f.cp.iter().collect();
    cp.sort_unstable_by_key(|(k, _)| **k);
    for ((op, n), c) in cp {
        let l = cat(e.op(op), e.node(&NODE, *n));
        e.push("chokepoint_cp_traces_total", l.clone(), c.traces as f64);
        e.push("chokepoint_cp_own_seconds_total", l.clone(), ns_s(c.own_ns));
        e.push(
            "chokepoint_cp_queue_seconds_total",
            l.clone(),
            ns_s(c.queue_ns),
        );
        e.hist(CP_PER_TRACE, &l, &c.per_trace);
    }
    let mut waits: Vec<_> = f.waits.iter().collect();
    waits.sort_unstable_by_key(|(k, _)| **k);
    for ((a, b), ns) in waits {
        let l = cat(e.node(&CALLER, *a), e.node(&CALLEE, *b));
        e.push("chokepoint_cp_wait_seconds_total", l, ns_s(*ns));
    }
    let mut reach: Vec<_> = f.reach.iter().collect();
    reach.sort_unstable_by_key(|(k, _)| **k);
    for ((op, n), c) in reach {
        let l = cat(e.op(op), e.node(&NODE, *n));
        e.push("chokepoint_reach_total", l, *c as f64);
    }
    let mut fail: Vec<_> = f.fail.iter().collect();
    fail.sort_unstable_by_key(|(k, _)| **k);
    for (n, a) in fail {
        let l = e.node(&NODE, *n);
        e.push(
            "chokepoint_failed_traces_total",
            l.clone(),
            a.traces_failed as f64,
        );
        e.push(
            "chokepoint_failed_with_entry_total",
            l,
            a.entry_failed_too as f64,
        );
    }
    let mut shapes: Vec<_> = f.shapes.iter().collect();
    shapes.sort_unstable_by_key(|(k, _)| **k);
    for ((op, shape), s) in shapes {
        let l = cat(e.op(op), vec![("shape", hex(*shape))]);
        e.push("chokepoint_shape_traces_total", l.clone(), s.traces as f64);
        e.push("chokepoint_shape_e2e_seconds_total", l, ns_s(s.e2e_ns));
    }
    let mut shape_cp: Vec<_> = f.shape_cp.iter().collect();
    shape_cp.sort_unstable_by_key(|(k, _)| **k);
    for ((op, shape, n), (own, queue)) in shape_cp {
        let l = cat(
            cat(e.op(op), vec![("shape", hex(*shape))]),
            e.node(&NODE, *n),
        );
        e.push(
            "chokepoint_shape_cp_own_seconds_total",
            l.clone(),
            ns_s(*own),
        );
        e.push("chokepoint_shape_cp_queue_seconds_total", l, ns_s(*queue));
    }
    let mut classes: Vec<_> = f.classes.iter().collect();
    classes.sort_unstable_by_key(|(k, _)| **k);
    for (c, n) in classes {
        e.push("chokepoint_class_requests_total", e.class(c), *n as f64);
    }
    let mut calls: Vec<_> = f.calls.iter().collect();
    calls.sort_unstable_by_key(|(k, _)| **k);
    for ((c, a, b), n) in calls {
        let l = cat(cat(e.class(c), e.node(&CALLER, *a)), e.node(&CALLEE, *b));
        e.push("chokepoint_class_calls_total", l, *n as f64);
    }
    let mut present: Vec<_> = f.present.iter().collect();
    present.sort_unstable_by_key(|(k, _)| **k);
    for ((c, n), v) in present {
        let l = cat(e.class(c), e.node(&NODE, *n));
        e.push("chokepoint_class_present_total", l, *v as f64);
    }
}

/// Samples in the Prometheus text exposition format, grouped by metric with `# HELP` and
/// `# TYPE` lines.
pub fn write_text(samples: &[Sample], out: &mut String) {
    prom::write_samples(samples, METRICS, out);
}

/// How a series changed over `(from, to]`: its increase (counter resets handled as
/// Prometheus does: a drop means the counter restarted from zero) and the increase per
/// point, with the point's time.
fn increases(points: &[(f64, f64)], from: f64, to: f64) -> (f64, Vec<(f64, f64)>) {
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    let mut steps = Vec::new();
    for &(t, v) in points {
        if t <= from {
            prev = Some(v);
            continue;
        }
        if t > to {
            break;
        }
        let d = match prev {
            Some(p) if v >= p => v - p,
            _ => v,
        };
        prev = Some(v);
        if d > 0.0 {
            total += d;
            steps.push((t, d));
        }
    }
    (total, steps)
}

/// The last value at or before `to` (a gauge's reading for the window).
fn last_value(points: &[(f64, f64)], to: f64) -> Option<f64> {
    points
        .iter()
        .take_while(|(t, _)| *t <= to)
        .last()
        .map(|p| p.1)
}

fn count(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

fn ns(seconds: f64) -> u128 {
    (seconds * 1e9).round().max(0.0) as u128
}

/// Rebuilds the aggregates of `(from, to]` (Unix seconds) from series a store returned,
/// naming nodes in `nodes` and `names` (the reader's own tables). Series of unknown names
/// or with labels that don't parse are skipped and counted in the result.
pub fn decode(
    series: &[Series],
    from: f64,
    to: f64,
    nodes: &mut NodeTable,
    names: &mut Interner,
) -> Decoded {
    let mut d = Decoder {
        agg: GraphAgg::default(),
        nodes,
        names,
        skipped: 0,
        queue_steps: BTreeMap::new(),
    };
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    for s in series {
        match s.name.as_str() {
            "chokepoint_agg_span_time_first_seconds" => {
                if let Some(v) = last_value(&s.points, to) {
                    first = Some(first.map_or(v, |f: f64| f.min(v)));
                }
            }
            "chokepoint_agg_span_time_last_seconds" => {
                if let Some(v) = last_value(&s.points, to) {
                    last = Some(last.map_or(v, |l: f64| l.max(v)));
                }
            }
            HEARD => {}
            _ => {
                if d.series(s, from, to).is_none() {
                    d.skipped += 1;
                }
            }
        }
    }
    d.finish_queue_trends();
    if let (Some(f), Some(l)) = (first, last) {
        d.agg.start_ns = (f.max(from) * 1e9) as u64;
        d.agg.end_ns = (l.min(to) * 1e9) as u64;
    }
    prune(
        &mut d.agg,
        (from.max(0.0) * 1e9) as u64,
        (to.min(1e11) * 1e9) as u64,
    );
    Decoded {
        agg: d.agg,
        skipped: d.skipped,
    }
}

/// What [`decode`] rebuilt.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub agg: GraphAgg,
    /// Series whose name or labels this build does not read.
    pub skipped: u64,
}

struct Decoder<'a> {
    agg: GraphAgg,
    nodes: &'a mut NodeTable,
    names: &'a mut Interner,
    skipped: u64,
    /// Per messaging edge, the queue histogram's increase per step: `(count, sum s)` by time,
    /// from which the delay's trend is rebuilt.
    queue_steps: BTreeMap<EdgeKey, BTreeMap<u64, (f64, f64)>>,
}

impl Decoder<'_> {
    fn node(&mut self, s: &Series, l: &NodeLabelNames) -> Option<NodeId> {
        let name = s.labels.get(l[0])?;
        let ty: NodeType = s.labels.get(l[1])?.parse().ok()?;
        let mut opt = |k: &str| -> Option<Sym> {
            s.labels
                .get(k)
                .filter(|v| !v.is_empty())
                .map(|v| self.names.intern(v))
        };
        let system = opt(l[2]);
        let label = opt(l[3]);
        let key = NodeKey {
            ty,
            name: self.names.intern(name),
            system,
            label,
        };
        Some(self.nodes.id(key))
    }

    fn op(&mut self, s: &Series) -> Option<OpKey> {
        let service = self.node(s, &SERVICE)?;
        let name = self.names.intern(s.labels.get("operation")?);
        let background = s.labels.get("background")? == "true";
        Some(OpKey {
            service,
            name,
            background,
        })
    }

    fn class(&mut self, s: &Series) -> Option<ClassKey> {
        let op = self.op(s)?;
        let route = u64::from_str_radix(s.labels.get("route")?, 16).ok()?;
        Some(ClassKey { op, route })
    }

    fn edge(&mut self, s: &Series) -> Option<EdgeKey> {
        Some(EdgeKey {
            from: self.node(s, &CALLER)?,
            to: self.node(s, &CALLEE)?,
            conn: s.labels.get("connection_type")?.parse().ok()?,
        })
    }

    fn ub_us(s: &Series) -> Option<u64> {
        let ub: f64 = s.labels.get("ub")?.parse().ok()?;
        Some((ub * 1e6).round().max(0.0) as u64)
    }

    /// Reads one series into the aggregates; `None` if it can't be read.
    fn series(&mut self, s: &Series, from: f64, to: f64) -> Option<()> {
        let (inc, steps) = increases(&s.points, from, to);
        let gauge = last_value(&s.points, to).unwrap_or(0.0);
        let name = s.name.as_str();
        // Nothing happened in the window: nothing to add (a node idle over it is not shown).
        let is_gauge = name.ends_with("_max")
            || name.ends_with("_seen_seconds")
            || name == "chokepoint_node_instances_overflowed";
        if !is_gauge && inc == 0.0 {
            return Some(());
        }
        let a = &mut self.agg;
        match name {
            "chokepoint_agg_traces_total" => a.traces += count(inc),
            "chokepoint_agg_spans_total" => a.spans += count(inc),
            "chokepoint_agg_fragmented_traces_total" => a.fragmented_traces += count(inc),
            "chokepoint_usage_dropped_total" => a.usage_dropped += count(inc),
            "chokepoint_user_requests_total" => a.facts.traces += count(inc),
            "chokepoint_user_request_seconds_total" => a.facts.e2e_total_ns += ns(inc),
            "chokepoint_background_traces_total" => a.facts.background_traces += count(inc),
            n if n.starts_with("chokepoint_node_") => {
                return self.node_series(s, inc, &steps, gauge)
            }
            n if n.starts_with("chokepoint_edge_") => {
                return self.edge_series(s, inc, &steps, gauge)
            }
            "chokepoint_usage_calls_total" => {
                let k = UsageKey {
                    caller: self.node(s, &CALLER)?,
                    usage: u64::from_str_radix(s.labels.get("usage")?, 16).ok()?,
                    peer: self.node(s, &CALLEE)?,
                };
                *self.agg.usage.entry(k).or_default() += count(inc);
            }
            _ => return self.facts_series(s, inc, &steps, gauge),
        }
        Some(())
    }

    fn node_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let id = self.node(s, &NODE)?;
        let instance = s
            .labels
            .get("service_instance")
            .map(|i| self.names.intern(i));
        let n = self.agg.nodes.entry(id).or_default();
        match s.name.as_str() {
            "chokepoint_node_spans_total" => n.spans += count(inc),
            "chokepoint_node_span_errors_total" => n.span_errors += count(inc),
            "chokepoint_node_requests_total" => n.requests += count(inc),
            "chokepoint_node_errors_total" => n.errors += count(inc),
            "chokepoint_node_serves_total" => n.serves += count(inc),
            "chokepoint_node_latency_seconds_bin" => n.latency.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_node_latency_seconds_sum" => n.latency.add_totals(ns(inc) / 1000, 0),
            "chokepoint_node_latency_seconds_max" => n.latency.add_totals(0, (gauge * 1e6) as u64),
            "chokepoint_node_self_time_seconds_bin" => {
                n.self_time.add_bin(Self::ub_us(s)?, count(inc))
            }
            "chokepoint_node_self_time_seconds_sum" => n.self_time.add_totals(ns(inc) / 1000, 0),
            "chokepoint_node_self_time_seconds_max" => {
                n.self_time.add_totals(0, (gauge * 1e6) as u64)
            }
            "chokepoint_node_load_requests_total" => {
                for &(t, d) in steps {
                    n.load.entry(slot(t)).or_default().0 += count(d);
                }
            }
            "chokepoint_node_load_latency_seconds_total" => {
                for &(t, d) in steps {
                    let e = n.load.entry(slot(t)).or_default();
                    e.1 = e.1.saturating_add(ns(d).min(u128::from(u64::MAX)) as u64);
                }
            }
            "chokepoint_node_instance_sightings_total" => {
                let i = instance?;
                let e = n
                    .instances
                    .known
                    .entry(i)
                    .or_insert(crate::analyze::graph::Seen {
                        first_ns: u64::MAX,
                        last_ns: 0,
                        count: 0,
                    });
                e.count += count(inc);
                for &(t, d) in steps {
                    *n.instances.slots.entry(slot(t)).or_default() += count(d);
                }
            }
            "chokepoint_node_instance_first_seen_seconds" => {
                let i = instance?;
                if let Some(e) = n.instances.known.get_mut(&i) {
                    e.first_ns = e.first_ns.min((gauge * 1e9) as u64);
                }
            }
            "chokepoint_node_instance_last_seen_seconds" => {
                let i = instance?;
                if let Some(e) = n.instances.known.get_mut(&i) {
                    e.last_ns = e.last_ns.max((gauge * 1e9) as u64);
                }
            }
            "chokepoint_node_unidentified_sightings_total" => {
                n.instances.unknown_observations += count(inc)
            }
            "chokepoint_node_instances_overflowed" => n.instances.overflow |= gauge > 0.0,
            _ => return None,
        }
        Some(())
    }

    fn edge_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let k = self.edge(s)?;
        let e = self.agg.edges.entry(k).or_default();
        let max = (gauge * 1e6) as u64;
        match s.name.as_str() {
            "chokepoint_edge_calls_total" => e.calls += count(inc),
            "chokepoint_edge_errors_total" => e.errors += count(inc),
            "chokepoint_edge_client_seconds_bin" => e.client.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_client_seconds_sum" => e.client.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_client_seconds_max" => e.client.add_totals(0, max),
            "chokepoint_edge_server_seconds_bin" => e.server.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_server_seconds_sum" => e.server.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_server_seconds_max" => e.server.add_totals(0, max),
            "chokepoint_edge_queue_seconds_bin" => {
                e.queue.add_bin(Self::ub_us(s)?, count(inc));
                let q = self.queue_steps.entry(k).or_default();
                for &(t, d) in steps {
                    q.entry(t as u64).or_default().0 += d;
                }
            }
            "chokepoint_edge_queue_seconds_sum" => {
                e.queue.add_totals(ns(inc) / 1000, 0);
                let q = self.queue_steps.entry(k).or_default();
                for &(t, d) in steps {
                    q.entry(t as u64).or_default().1 += d;
                }
            }
            "chokepoint_edge_queue_seconds_max" => e.queue.add_totals(0, max),
            "chokepoint_edge_gap_seconds_bin" => e.gap.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_gap_seconds_sum" => e.gap.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_gap_seconds_max" => e.gap.add_totals(0, max),
            _ => return None,
        }
        Some(())
    }

    /// The queue delay's trend, one point per step: the step's mean delay at its time.
    fn finish_queue_trends(&mut self) {
        for (k, steps) in std::mem::take(&mut self.queue_steps) {
            let e = self.agg.edges.entry(k).or_default();
            for (t, (n, sum_s)) in steps {
                if n > 0.0 {
                    e.queue_trend.add_n(t as f64, sum_s / n * 1e3, count(n));
                }
            }
        }
    }

    fn facts_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let name = s.name.as_str();
        match name {
            n if n.starts_with("chokepoint_op_") => {
                let op = self.op(s)?;
                let o = self.agg.facts.ops.entry(op).or_default();
                match n {
                    "chokepoint_op_traces_total" => o.traces += count(inc),
                    "chokepoint_op_errors_total" => o.errors += count(inc),
                    "chokepoint_op_spans_total" => o.spans += count(inc),
                    "chokepoint_op_e2e_seconds_total" => o.e2e_total_ns += ns(inc),
                    "chokepoint_op_e2e_seconds_bin" => o.e2e.add_bin(Self::ub_us(s)?, count(inc)),
                    "chokepoint_op_e2e_seconds_sum" => o.e2e.add_totals(ns(inc) / 1000, 0),
                    "chokepoint_op_e2e_seconds_max" => o.e2e.add_totals(0, (gauge * 1e6) as u64),
                    _ => return None,
                }
            }
            n if n.starts_with("chokepoint_cp_") && n != "chokepoint_cp_wait_seconds_total" => {
                let op = self.op(s)?;
                let node = self.node(s, &NODE)?;
                let c = self.agg.facts.cp.entry((op, node)).or_default();
                match n {
                    "chokepoint_cp_traces_total" => c.traces += count(inc),
                    "chokepoint_cp_own_seconds_total" => c.own_ns += ns(inc),
                    "chokepoint_cp_queue_seconds_total" => c.queue_ns += ns(inc),
                    "chokepoint_cp_per_trace_seconds_bin" => {
                        c.per_trace.add_bin(Self::ub_us(s)?, count(inc))
                    }
                    "chokepoint_cp_per_trace_seconds_sum" => {
                        c.per_trace.add_totals(ns(inc) / 1000, 0)
                    }
                    "chokepoint_cp_per_trace_seconds_max" => {
                        c.per_trace.add_totals(0, (gauge * 1e6) as u64)
                    }
                    _ => return None,
                }
            }
            "chokepoint_cp_wait_seconds_total" => {
                let k = (self.node(s, &CALLER)?, self.node(s, &CALLEE)?);
                *self.agg.facts.waits.entry(k).or_default() += ns(inc);
            }
            "chokepoint_reach_total" => {
                let k = (self.op(s)?, self.node(s, &NODE)?);
                *self.agg.facts.reach.entry(k).or_default() += count(inc);
            }
            "chokepoint_failed_traces_total" => {
                let n = self.node(s, &NODE)?;
                self.agg.facts.fail.entry(n).or_default().traces_failed += count(inc);
            }
            "chokepoint_failed_with_entry_total" => {
                let n = self.node(s, &NODE)?;
                let a = self.agg.facts.fail.entry(n).or_default();
                a.entry_failed_too += count(inc);
                // When the failed requests were written: by write time, as for load.
                for &(t, _) in steps {
                    a.saw_failed_request((t * 1e9) as u64);
                }
            }
            "chokepoint_shape_traces_total" | "chokepoint_shape_e2e_seconds_total" => {
                let op = self.op(s)?;
                let shape = u64::from_str_radix(s.labels.get("shape")?, 16).ok()?;
                let sh = self.agg.facts.shapes.entry((op, shape)).or_default();
                if name == "chokepoint_shape_traces_total" {
                    sh.traces += count(inc);
                } else {
                    sh.e2e_ns += ns(inc);
                }
            }
            "chokepoint_shape_cp_own_seconds_total" | "chokepoint_shape_cp_queue_seconds_total" => {
                let op = self.op(s)?;
                let shape = u64::from_str_radix(s.labels.get("shape")?, 16).ok()?;
                let node = self.node(s, &NODE)?;
                let e = self
                    .agg
                    .facts
                    .shape_cp
                    .entry((op, shape, node))
                    .or_default();
                if name == "chokepoint_shape_cp_own_seconds_total" {
                    e.0 += ns(inc);
                } else {
                    e.1 += ns(inc);
                }
            }
            "chokepoint_class_requests_total" => {
                let c = self.class(s)?;
                *self.agg.facts.classes.entry(c).or_default() += count(inc);
            }
            "chokepoint_class_calls_total" => {
                let k = (
                    self.class(s)?,
                    self.node(s, &CALLER)?,
                    self.node(s, &CALLEE)?,
                );
                *self.agg.facts.calls.entry(k).or_default() += count(inc);
            }
            "chokepoint_class_present_total" => {
                let k = (self.class(s)?, self.node(s, &NODE)?);
                *self.agg.facts.present.entry(k).or_default() += count(inc);
            }
            _ => return None,
        }
        Some(())
    }
}

/// Drops what only gauges mentioned (a node, edge or instance idle over the window), and
/// bounds instances' first and last sightings by the window.
fn prune(a: &mut GraphAgg, from_ns: u64, to_ns: u64) {
    for n in a.nodes.values_mut() {
        n.instances.known.retain(|_, s| s.count > 0);
        for s in n.instances.known.values_mut() {
            s.first_ns = s.first_ns.max(from_ns).min(to_ns);
            s.last_ns = s.last_ns.clamp(s.first_ns, to_ns.max(s.first_ns));
        }
    }
    a.nodes.retain(|_, n| {
        n.spans + n.requests + n.serves + n.latency.count() + n.self_time.count() > 0
            || !n.instances.known.is_empty()
            || n.instances.unknown_observations > 0
            || !n.load.is_empty()
    });
    a.edges.retain(|_, e| {
        e.calls + e.client.count() + e.server.count() + e.queue.count() + e.gap.count() > 0
    });
    a.facts.ops.retain(|_, o| o.traces > 0);
    a.facts.cp.retain(|_, c| c.traces > 0);
}

/// The load slot a store's point falls in.
fn slot(t_s: f64) -> u64 {
    (t_s.max(0.0) * 1e9) as u64 / LOAD_BUCKET_NS
}

#[cfg(test)]
mod tests;
