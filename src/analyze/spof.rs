//! Single-point-of-failure scores: fan-in without redundancy, from the window's sums.
//!
//! - **reach**: the share of an entry operation's requests that wait on the node
//!   synchronously (in the root's blocking subtree, not behind an asynchronous hop); the
//!   operation where it is highest counts.
//! - **redundancy**: distinct instances (addresses, for peers). One is none; *unknown* (no
//!   instance identity at all) is scored between and lowers the confidence.
//! - **hardness**: when the node fails, how often the entry request fails too. Failures the
//!   callers absorb (retries elsewhere, fallbacks) make it a soft dependency.
//! - **structure**: the dominator tree of the synchronous service graph from a synthetic
//!   entry: what becomes unreachable if the node fails (its blast radius); and its fan-in.

use petgraph::algo::dominators::simple_fast;
use petgraph::graph::{DiGraph, NodeIndex};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Map, Value};

use super::graph::{ConnType, GraphAgg, NodeId};
use crate::findings::{pct, r3, Confidence, Context, Finding, FindingKind, Severity};
use crate::model::NodeType;

/// Share of entry traffic below which an operation does not decide a node's reach.
const MIN_OP_SHARE: f64 = 0.05;
/// Failures needed before hardness is measured rather than assumed.
const MIN_FAILURES: u64 = 3;
/// Hardness assumed for a node never seen failing: fairly hard, but short of what an
/// observed outage shows, so an untested single instance is "high" at most.
const UNTESTED_HARDNESS: f64 = 0.55;
/// Hardness at least assumed for a node that lost its last replica in the window.
const DEGRADED_HARDNESS: f64 = 0.75;
/// The part of a SPOF's score that does not depend on its blast radius: a leaf that every
/// request waits on scores this fraction of one that also dominates the rest of the graph.
const STRUCTURE_FLOOR: f64 = 0.65;

/// For each node, how many other nodes it dominates in the synchronous graph from the
/// entry, and how many nodes that graph reaches.
fn blast_radius(cur: &GraphAgg, ctx: &Context<'_>) -> (FxHashMap<NodeId, usize>, usize) {
    let mut g: DiGraph<Option<NodeId>, ()> = DiGraph::new();
    let entry = g.add_node(None);
    let mut ix: FxHashMap<NodeId, NodeIndex> = FxHashMap::default();
    let mut node = |g: &mut DiGraph<Option<NodeId>, ()>, n: NodeId| {
        *ix.entry(n).or_insert_with(|| g.add_node(Some(n)))
    };
    let mut entries: Vec<NodeId> = cur
        .facts
        .ops
        .keys()
        .filter(|o| !o.background)
        .map(|o| o.service)
        .collect();
    entries.sort_unstable();
    entries.dedup();
    for e in entries {
        let i = node(&mut g, e);
        g.add_edge(entry, i, ());
    }
    let mut edges: Vec<_> = cur.edges.keys().copied().collect();
    edges.sort_unstable();
    for k in edges {
        // Into a consumer is asynchronous: the producer doesn't wait on it.
        let into_consumer =
            k.conn == ConnType::Messaging && ctx.node_type(k.to) == NodeType::Service;
        if into_consumer || k.from == k.to {
            continue;
        }
        let (a, b) = (node(&mut g, k.from), node(&mut g, k.to));
        g.add_edge(a, b, ());
    }
    let doms = simple_fast(&g, entry);
    let mut dominated: FxHashMap<NodeId, usize> = FxHashMap::default();
    let mut reachable = 0;
    for v in g.node_indices() {
        if v == entry || doms.immediate_dominator(v).is_none() {
            continue;
        }
        reachable += 1;
        let mut d = doms.immediate_dominator(v);
        while let Some(u) = d {
            if let Some(Some(n)) = g.node_weight(u) {
                *dominated.entry(*n).or_default() += 1;
            }
            d = doms.immediate_dominator(u);
        }
    }
    (dominated, reachable)
}

fn remediation(ty: NodeType) -> &'static str {
    match ty {
        NodeType::Service => {
            "Run several instances behind a load balancer (in different zones), keep any \
             state they hold (a saga orchestrator's, say) in a fault-tolerant store, and give \
             callers timeouts and a fallback."
        }
        NodeType::Database => {
            "Add a replica with automatic failover (Patroni, a managed failover cluster such as \
             Aurora) and have clients reconnect to the new primary."
        }
        NodeType::Messaging => {
            "Run a broker cluster (three brokers, replication factor 3, min.insync.replicas 2) \
             so losing one broker loses no topic."
        }
        NodeType::External => {
            "Add a fallback (a second provider, a cached or degraded answer) and guard the call \
             with timeouts, retries with backoff and a circuit breaker."
        }
    }
}

pub fn score(cur: &GraphAgg, base: Option<&GraphAgg>, ctx: &Context<'_>) -> Vec<Finding> {
    let f = &cur.facts;
    if f.traces == 0 {
        return Vec::new();
    }
    let (dominated, reachable) = blast_radius(cur, ctx);
    let mut callers: FxHashMap<NodeId, FxHashSet<NodeId>> = FxHashMap::default();
    for k in cur.edges.keys() {
        if k.from != k.to {
            callers.entry(k.to).or_default().insert(k.from);
        }
    }
    // Reach per node: overall, and the highest over significant entry operations.
    let mut reach_all: FxHashMap<NodeId, u64> = FxHashMap::default();
    let mut reach_op: FxHashMap<NodeId, (f64, String, u64)> = FxHashMap::default();
    let mut reach_keys: Vec<_> = f.reach.iter().collect();
    reach_keys.sort_by_key(|(k, _)| **k);
    for ((op, n), count) in reach_keys {
        if op.background {
            continue;
        }
        *reach_all.entry(*n).or_default() += count;
        let Some(o) = f.ops.get(op) else { continue };
        if (o.traces as f64) < MIN_OP_SHARE * f.traces as f64 {
            continue;
        }
        let r = *count as f64 / o.traces as f64;
        let name = format!("{} {}", ctx.name(op.service), ctx.names.resolve(op.name));
        let e = reach_op.entry(*n).or_insert((0.0, String::new(), 0));
        if r > e.0 || (r == e.0 && o.traces > e.2) {
            *e = (r, name, o.traces);
        }
    }
    let mut out = Vec::new();
    let mut nodes: Vec<NodeId> = reach_op.keys().copied().collect();
    nodes.sort_unstable();
    for n in nodes {
        let (reach, op, op_traces) = reach_op[&n].clone();
        let all = reach_all.get(&n).copied().unwrap_or(0) as f64 / f.traces as f64;
        let ty = ctx.node_type(n);
        let agg = cur.nodes.get(&n);
        // Redundancy is what serves now; the window's union is evidence beside it.
        let instances = agg.and_then(|a| a.instances.serving_count());
        let seen = agg.and_then(|a| a.instances.count());
        let more = agg.is_some_and(|a| a.instances.overflow);
        let redundancy = match instances {
            None => 0.6,
            Some(1) => 1.0,
            Some(2) => 0.15,
            Some(_) => 0.05,
        };
        let fails = f.fail.get(&n).copied().unwrap_or_default();
        let hardness = (fails.traces_failed >= MIN_FAILURES)
            .then(|| fails.entry_failed_too as f64 / fails.traces_failed as f64);
        let mut hard_factor = hardness.map_or(UNTESTED_HARDNESS, |h| h.max(0.05));
        // A replica it had is gone: one failure now takes down whatever waits on it, and
        // failures that were absorbed while the replica served say nothing about that.
        let degraded = instances == Some(1) && seen.is_some_and(|k| k > 1);
        if degraded {
            hard_factor = hard_factor.max(DEGRADED_HARDNESS);
        }
        let blast = if reachable > 1 {
            dominated.get(&n).copied().unwrap_or(0) as f64 / (reachable - 1) as f64
        } else {
            0.0
        };
        // What its loss takes down beyond the requests that wait on it: the nodes nothing
        // else leads to. Where every service runs one instance, this is what ranks them.
        let score =
            reach * redundancy * hard_factor * (STRUCTURE_FLOOR + (1.0 - STRUCTURE_FLOOR) * blast);
        let Some(severity) = Severity::of(score) else {
            continue;
        };
        let mut confidence = Confidence::of_traces(op_traces);
        if instances.is_none() {
            confidence = confidence.lower();
        }
        if hardness.is_none() && confidence == Confidence::High {
            confidence = Confidence::Medium;
        }
        let mut ev = Map::new();
        ev.insert("reach".into(), json!(r3(reach)));
        ev.insert("reach_operation".into(), json!(op));
        ev.insert("reach_all_traffic".into(), json!(r3(all)));
        ev.insert(
            "instances".into(),
            match instances {
                Some(k) => json!(k),
                None => Value::Null,
            },
        );
        ev.insert(
            "instances_seen_in_window".into(),
            seen.map_or(Value::Null, |k| json!(k)),
        );
        ev.insert("instances_more".into(), json!(more));
        ev.insert("lost_redundancy".into(), json!(degraded));
        ev.insert(
            "redundancy".into(),
            json!(match instances {
                None => "unknown",
                Some(1) => "none",
                Some(_) => "replicated",
            }),
        );
        ev.insert("failures_seen".into(), json!(fails.traces_failed));
        ev.insert(
            "hardness".into(),
            hardness.map_or(Value::Null, |h| json!(r3(h))),
        );
        ev.insert("blast_radius".into(), json!(r3(blast)));
        ev.insert(
            "dominated_nodes".into(),
            json!(dominated.get(&n).copied().unwrap_or(0)),
        );
        ev.insert(
            "fan_in".into(),
            json!(callers.get(&n).map_or(0, |c| c.len())),
        );
        if let Some(b) = base {
            if let Some(v) = vanished(cur, b, n) {
                ev.insert("calls_vanished_vs_baseline".into(), v);
            }
        }
        let name = ctx.name(n);
        let inst = match (instances, seen) {
            (Some(1), Some(k)) if k > 1 => {
                format!("one instance serves it now (of {k} seen in the window)")
            }
            (Some(1), _) => "it runs as a single instance".to_owned(),
            (Some(k), _) => format!("it runs as {k}{} instances", if more { "+" } else { "" }),
            (None, _) => {
                "nothing identifies its instances, so its redundancy is unknown".to_owned()
            }
        };
        let hard = match hardness {
            Some(h) => format!("{} of the requests in which it failed failed too", pct(h)),
            None => "no failure of it was seen".to_owned(),
        };
        let summary = format!(
            "{name}: {} of {op} requests wait on it synchronously, {inst}, and {hard}",
            pct(reach)
        );
        let mut exemplars: Vec<_> = f
            .failures
            .get(&n)
            .map(|e| e.items().copied().collect())
            .unwrap_or_default();
        if exemplars.is_empty() {
            exemplars = f
                .slowest
                .get(&n)
                .map(|e| e.items().copied().collect())
                .unwrap_or_default();
        }
        out.push(Finding {
            kind: FindingKind::Spof,
            node: n,
            node_name: name,
            node_type: ty,
            score: r3(score.min(1.0)),
            severity,
            confidence,
            summary,
            evidence: ev,
            exemplars,
            remediation: remediation(ty).into(),
        });
    }
    out
}

/// Against a baseline: for the operation where the node was reached most reliably, how its
/// presence and the trace size changed. Traces that stop short are failures even when no
/// status says so.
fn vanished(cur: &GraphAgg, base: &GraphAgg, n: NodeId) -> Option<Value> {
    let mut best: Option<(f64, Value)> = None;
    for ((op, node), count) in &base.facts.reach {
        if *node != n {
            continue;
        }
        let (Some(bo), Some(co)) = (base.facts.ops.get(op), cur.facts.ops.get(op)) else {
            continue;
        };
        let before = *count as f64 / bo.traces as f64;
        let now = cur.facts.reach.get(&(*op, n)).copied().unwrap_or(0) as f64 / co.traces as f64;
        let drop = before - now;
        if before >= 0.5 && drop > best.as_ref().map_or(0.1, |b| b.0) {
            best = Some((
                drop,
                json!({
                    "presence_before": r3(before),
                    "presence_now": r3(now),
                    "spans_per_trace_before": r3(bo.spans as f64 / bo.traces as f64),
                    "spans_per_trace_now": r3(co.spans as f64 / co.traces as f64),
                }),
            ));
        }
    }
    best.map(|b| b.1)
}
