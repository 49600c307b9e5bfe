//! Aggregates → series: every field of [`GraphAgg`] that travels, as counters and gauges.

use crate::analyze::facts::{ClassKey, OpKey};
use crate::analyze::graph::GraphAgg;
use crate::analyze::hist::Hist;
use crate::analyze::node::{NodeId, NodeTable};
use crate::api::prom::{self, Sample};
use crate::model::Interner;

// Every name is the encoder's and the decoder's alike.
use super::names::*;

/// The [`HEARD`] sample for a publication at `now_s` (Unix seconds).
pub fn heard(now_s: f64) -> Sample {
    Sample {
        name: HEARD,
        labels: Vec::new(),
        value: now_s,
    }
}

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
    /// Series kept at most; the rest are counted, never held (a flood of names must not
    /// build millions of series to keep a hundred thousand).
    max: usize,
    left_out: usize,
}

impl Encoder<'_> {
    fn push(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64) {
        if self.out.len() >= self.max {
            self.left_out += 1;
            return;
        }
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

/// The series of `agg` (raw, unresolved aggregates since the process started).
pub fn encode(agg: &GraphAgg, nodes: &NodeTable, names: &Interner) -> Vec<Sample> {
    encode_at_most(agg, nodes, names, usize::MAX).0
}

/// The first `max` series of `agg`, and how many more there were.
pub fn encode_at_most(
    agg: &GraphAgg,
    nodes: &NodeTable,
    names: &Interner,
    max: usize,
) -> (Vec<Sample>, usize) {
    let mut e = Encoder {
        nodes,
        names,
        out: Vec::new(),
        max,
        left_out: 0,
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
        e.push(
            TRACE_START_LAST,
            vec![],
            agg.last_trace_start_ns as f64 / 1e9,
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
        let mut t = crate::analyze::graph::LoadBucket::default();
        let mut latency_ns = 0u128;
        for b in n.load.values() {
            latency_ns += u128::from(b.latency_ns);
            t.merge_counts(b);
        }
        e.push(
            "chokepoint_node_load_requests_total",
            l.clone(),
            t.requests as f64,
        );
        e.push(
            "chokepoint_node_load_latency_seconds_total",
            l.clone(),
            ns_s(latency_ns),
        );
        for (name, v) in [
            (LOAD_DONE, t.done),
            (LOAD_BUSY, t.busy_ns / 1e9),
            (LOAD_ARRIVED, t.arrived),
            (LOAD_WAIT_KNOWN, t.wait_known),
            (LOAD_WAITED, t.waited),
            (LOAD_WAIT, t.wait_ns / 1e9),
            (LOAD_SAMPLED, t.sampled as f64),
        ] {
            e.push(name, l.clone(), v);
        }
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
    (e.out, e.left_out)
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
