//! Single-point-of-failure scores: fan-in without redundancy, from the window's sums, as
//! typed values (words and cures are added by `findings`).
//!
//! - **reach**: the share of an entry operation's requests that wait on the node
//!   synchronously (in the root's blocking subtree, not behind an asynchronous hop); the
//!   operation where it is highest counts.
//! - **redundancy**: instances serving now (addresses, for peers). One is none; *unknown*
//!   (no instance identity at all) is scored between and lowers the confidence.
//! - **hardness**: when the node fails, how often the entry request fails too. Failures the
//!   callers absorb (retries elsewhere, fallbacks) make it a soft dependency.
//! - **structure**: the dominator tree of the synchronous service graph from a synthetic
//!   entry: what becomes unreachable if the node fails (its blast radius); and its fan-in.
//! - **failing now**: its failures fail entry requests more than in the baseline (or, with
//!   no baseline, at a rate that would page someone). Failures don't always set a status:
//!   against a baseline, calls that requests always made and no longer make point at where
//!   the flow broke. Such a finding is *active*.

use petgraph::algo::dominators::simple_fast;
use petgraph::graph::{DiGraph, NodeIndex};
use rustc_hash::{FxHashMap, FxHashSet};

use super::facts::{ClassKey, OpKey};
use super::graph::{ConnType, GraphAgg};
use super::node::NodeId;
use super::thresholds::*;
use crate::model::NodeType;

/// Failures of the node failing entry requests now.
#[derive(Debug, Clone)]
pub struct FailingNow {
    /// Entry requests failed where this node's failure started, now and in the baseline,
    /// as shares of all requests.
    pub rate: f64,
    pub baseline_rate: Option<f64>,
    pub failed_requests: u64,
    /// Of the requests that waited on it, the share that failed because of it.
    pub share_of_dependent: f64,
    /// The same share while it was failing (from its first failed request to its last,
    /// at least [`OUTAGE_MIN_SPAN_NS`]), with traffic taken as even over the window: a short
    /// outage in a long window is still an outage.
    pub rate_while_failing: f64,
    /// Start of its first failed request, and of its last once it has stopped failing
    /// (`None` while it lasts). Unix ns.
    pub since_ns: u64,
    pub until_ns: Option<u64>,
}

/// Calls that requests made in the baseline and no longer make, pointing at this node.
#[derive(Debug, Clone)]
pub struct Vanished {
    /// The part of today's requests in which calls vanished because of it, and how many.
    pub rate: f64,
    pub requests: u64,
    /// The entry operation where it shows most.
    pub operation: OpKey,
    /// Calls that vanished: `(caller, callee, presence before, presence now)`.
    pub calls: Vec<(NodeId, NodeId, f64, f64)>,
    /// True when the node stopped making several of its calls (it failed midway); false
    /// when the one call to it stopped being answered.
    pub as_caller: bool,
    pub spans_per_request_before: f64,
    pub spans_per_request_now: f64,
}

/// One node's SPOF score and everything behind it.
#[derive(Debug, Clone)]
pub struct SpofScore {
    pub node: NodeId,
    pub score: f64,
    /// Its failures fail entry requests now.
    pub active: bool,
    pub reach: f64,
    pub reach_operation: OpKey,
    pub reach_operation_traces: u64,
    pub reach_all_traffic: f64,
    /// Instances serving now (`None`: unknown) and over the window.
    pub instances: Option<usize>,
    pub instances_seen: Option<usize>,
    pub instances_more: bool,
    /// A replica it had in the window is gone.
    pub lost_redundancy: bool,
    pub failures_seen: u64,
    pub hardness: Option<f64>,
    /// Some of its failures were absorbed: the entry request succeeded all the same.
    pub fallback_seen: bool,
    /// The share of entry requests its loss would fail: per entry operation, the requests
    /// that wait on it times its hardness (1 when never seen failing), summed over the
    /// operations by their traffic.
    pub requests_lost_share: f64,
    pub blast_radius: f64,
    pub dominated_nodes: usize,
    pub fan_in: usize,
    pub failing_now: Option<FailingNow>,
    pub vanished: Option<Vanished>,
}

/// The separate systems in a window: services joined by any call (or by an entry operation
/// reaching them) are one system. Applications that share nothing but the collector that
/// sends their traces here are apart, so one's traffic does not dilute the other's shares:
/// a flood of unrelated services must not hide the shop's database.
struct Systems {
    root: FxHashMap<NodeId, NodeId>,
    /// User requests entering each system, by its root.
    traces: FxHashMap<NodeId, u64>,
    /// User requests of every entry operation kept, over all systems.
    kept: u64,
    /// All user requests in the window (entry operations past the facts' bound included).
    all: u64,
}

impl Systems {
    fn of(g: &GraphAgg) -> Systems {
        let mut parent: FxHashMap<NodeId, NodeId> = FxHashMap::default();
        fn find(p: &mut FxHashMap<NodeId, NodeId>, n: NodeId) -> NodeId {
            let mut r = n;
            while let Some(&up) = p.get(&r) {
                if up == r {
                    break;
                }
                r = up;
            }
            let mut c = n;
            while c != r {
                let next = p.get(&c).copied().unwrap_or(r);
                p.insert(c, r);
                c = next;
            }
            r
        }
        fn union(p: &mut FxHashMap<NodeId, NodeId>, a: NodeId, b: NodeId) {
            let (ra, rb) = (find(p, a), find(p, b));
            // The smaller id roots, so the partition does not depend on map order.
            if ra != rb {
                p.insert(ra.max(rb), ra.min(rb));
            }
        }
        for k in g.edges.keys() {
            union(&mut parent, k.from, k.to);
        }
        for (op, n) in g.facts.reach.keys() {
            union(&mut parent, op.service, *n);
        }
        let mut traces: FxHashMap<NodeId, u64> = FxHashMap::default();
        let mut kept = 0;
        for (op, o) in &g.facts.ops {
            if op.background {
                continue;
            }
            let r = find(&mut parent, op.service);
            *traces.entry(r).or_default() += o.traces;
            kept += o.traces;
        }
        let root = parent
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|n| (n, find(&mut parent, n)))
            .collect();
        Systems {
            root,
            traces,
            kept,
            all: g.facts.traces,
        }
    }

    /// User requests of the system `n` belongs to: all of them, less those entering the
    /// other systems (so requests the facts' bound folded count for every system, and one
    /// system gets exactly the window's total). A node with no system of its own known is
    /// measured against the whole window.
    fn traces_of(&self, n: NodeId) -> u64 {
        let r = self.root.get(&n).copied().unwrap_or(n);
        match self.traces.get(&r) {
            Some(&own) if own > 0 => self.all.saturating_sub(self.kept - own).max(1),
            _ => self.all.max(1),
        }
    }
}

/// For each node, how many other nodes it dominates in the synchronous graph from the
/// entry, and how many nodes that graph reaches.
fn blast_radius(
    cur: &GraphAgg,
    ty: &dyn Fn(NodeId) -> NodeType,
) -> (FxHashMap<NodeId, usize>, usize) {
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
        let into_consumer = k.conn == ConnType::Messaging && ty(k.to) == NodeType::Service;
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

/// Against a baseline: calls that requests of a kind (entry operation and route) always
/// made and no longer make. A node that stopped making several of its calls failed midway;
/// a callee whose one call vanished stopped answering. Returns, per node, the requests
/// affected and the evidence.
fn vanished(cur: &GraphAgg, base: &GraphAgg, systems: &Systems) -> FxHashMap<NodeId, Vanished> {
    let (c, b) = (&cur.facts, &base.facts);
    let mut out: FxHashMap<NodeId, (f64, Vanished)> = FxHashMap::default();
    let share = |m: &FxHashMap<(ClassKey, NodeId), u64>, k: &ClassKey, n: NodeId, t: u64| {
        m.get(&(*k, n)).copied().unwrap_or(0) as f64 / t.max(1) as f64
    };
    let mut classes: Vec<(&ClassKey, u64, u64)> = c
        .classes
        .iter()
        .filter(|(k, _)| !k.op.background)
        .filter_map(|(k, now)| Some((k, *now, *b.classes.get(k)?)))
        .filter(|(_, now, then)| *now >= ACTIVE_MIN_FAILED && *then >= ACTIVE_MIN_FAILED)
        .collect();
    classes.sort_by_key(|k| *k.0);
    let spans = |o: Option<&super::facts::OpAgg>| {
        o.map_or(0.0, |o| o.spans as f64 / o.traces.max(1) as f64)
    };
    for (class, now_t, then_t) in classes {
        // Calls per caller that vanished, while the caller itself still runs.
        let mut dropped: FxHashMap<NodeId, Vec<(NodeId, f64, f64)>> = FxHashMap::default();
        for ((k, from, to), n) in &b.calls {
            if k != class {
                continue;
            }
            let before = *n as f64 / then_t as f64;
            let now =
                c.calls.get(&(*class, *from, *to)).copied().unwrap_or(0) as f64 / now_t as f64;
            let caller_before = share(&b.present, class, *from, then_t).max(before);
            let caller_now = share(&c.present, class, *from, now_t);
            if before >= VANISH_BASELINE_PRESENCE
                && before - now >= VANISH_DROP
                && caller_now >= VANISH_CALLER_KEPT * caller_before
            {
                dropped.entry(*from).or_default().push((*to, before, now));
            }
        }
        let mut callers: Vec<_> = dropped.into_iter().collect();
        callers.sort_by_key(|c| c.0);
        for (caller, mut calls) in callers {
            calls.sort_by_key(|c| c.0);
            let (blamed, as_caller) = match calls.as_slice() {
                [(callee, _, _)] => (*callee, false),
                _ => (caller, true),
            };
            let drop: f64 = calls.iter().map(|c| c.1 - c.2).fold(0.0, f64::max);
            let e = out.entry(blamed).or_insert_with(|| {
                (
                    0.0,
                    Vanished {
                        rate: 0.0,
                        requests: 0,
                        operation: class.op,
                        calls: Vec::new(),
                        as_caller,
                        spans_per_request_before: spans(b.ops.get(&class.op)),
                        spans_per_request_now: spans(c.ops.get(&class.op)),
                    },
                )
            });
            e.0 += drop * now_t as f64;
            if e.1.calls.len() < VANISH_MAX_CALLS {
                e.1.calls
                    .extend(calls.iter().map(|(to, b, n)| (caller, *to, *b, *n)));
            }
        }
    }
    out.into_iter()
        .map(|(n, (w, mut v))| {
            let total = systems.traces_of(n) as f64;
            v.rate = (w / total).min(1.0);
            v.requests = w.round().min(total) as u64;
            (n, v)
        })
        .collect()
}

/// The score of a single instance whose loss fails `lost` of the entry requests: rising to
/// `high` at [`HARM_HIGH`], then on to [`SPOF_FULL_HARM`] when every request needs it.
/// Critical is kept for one failing now.
fn harm_score(lost: f64) -> f64 {
    if lost < HARM_HIGH {
        SEVERITY[2] * lost / HARM_HIGH
    } else {
        SEVERITY[2] + (SPOF_FULL_HARM - SEVERITY[2]) * (lost - HARM_HIGH) / (1.0 - HARM_HIGH)
    }
}

/// SPOF scores of every node that entry requests wait on synchronously.
pub fn score(
    cur: &GraphAgg,
    base: Option<&GraphAgg>,
    ty: &dyn Fn(NodeId) -> NodeType,
) -> Vec<SpofScore> {
    let f = &cur.facts;
    if f.traces == 0 {
        return Vec::new();
    }
    let (dominated, reachable) = blast_radius(cur, ty);
    let mut callers: FxHashMap<NodeId, FxHashSet<NodeId>> = FxHashMap::default();
    for k in cur.edges.keys() {
        if k.from != k.to {
            callers.entry(k.to).or_default().insert(k.from);
        }
    }
    let systems = Systems::of(cur);
    let base_systems = base.map(Systems::of);
    let vanished = base.map(|b| vanished(cur, b, &systems)).unwrap_or_default();
    let window_ns = cur.end_ns.saturating_sub(cur.start_ns).max(1);
    // Reach per node: overall, and the highest over significant entry operations.
    let mut reach_all: FxHashMap<NodeId, u64> = FxHashMap::default();
    let mut reach_op: FxHashMap<NodeId, (f64, OpKey, u64)> = FxHashMap::default();
    let mut reach_keys: Vec<_> = f.reach.iter().collect();
    reach_keys.sort_by_key(|(k, _)| **k);
    for ((op, n), count) in reach_keys {
        if op.background {
            continue;
        }
        *reach_all.entry(*n).or_default() += count;
        let Some(o) = f.ops.get(op) else { continue };
        if (o.traces as f64) < MIN_OP_SHARE * systems.traces_of(op.service) as f64 {
            continue;
        }
        let r = *count as f64 / o.traces as f64;
        let e = reach_op.entry(*n).or_insert((0.0, *op, 0));
        if r > e.0 || (r == e.0 && o.traces > e.2) {
            *e = (r, *op, o.traces);
        }
    }
    let mut out = Vec::new();
    let mut nodes: Vec<NodeId> = reach_op.keys().chain(vanished.keys()).copied().collect();
    nodes.sort_unstable();
    nodes.dedup();
    for n in nodes {
        // A node that vanished from every request is still the one to name.
        let (reach, op, op_traces) = match (reach_op.get(&n), vanished.get(&n)) {
            (Some(r), _) => *r,
            (None, Some(v)) => (
                0.0,
                v.operation,
                f.ops.get(&v.operation).map_or(0, |o| o.traces),
            ),
            (None, None) => continue,
        };
        // Shares are of the requests entering the node's own system; a system apart with a
        // handful of requests is an anecdote, not a system to score.
        let traces = systems.traces_of(n);
        if traces < ANECDOTE_TRACES && traces < f.traces {
            continue;
        }
        let all = reach_all.get(&n).copied().unwrap_or(0) as f64 / traces as f64;
        let agg = cur.nodes.get(&n);
        // A service that serves nobody only sends traffic: not a dependency of anyone.
        if ty(n) == NodeType::Service && agg.is_some_and(|a| a.serves == 0) {
            continue;
        }
        // Redundancy is what serves now; the window's union is evidence beside it.
        let instances = agg.and_then(|a| a.instances.serving_count());
        let seen = agg.and_then(|a| a.instances.count());
        let more = agg.is_some_and(|a| a.instances.overflow);
        let redundancy = match instances {
            None => REDUNDANCY_UNKNOWN,
            Some(1) => REDUNDANCY_ONE,
            Some(2) => REDUNDANCY_TWO,
            Some(_) => REDUNDANCY_MORE,
        };
        let fails = f.fail.get(&n).copied().unwrap_or_default();
        let hardness = (fails.traces_failed >= MIN_FAILURES)
            .then(|| fails.entry_failed_too as f64 / fails.traces_failed as f64);
        let fallback_seen = hardness.is_some_and(|h| h < 1.0);
        // No failure seen is no evidence of a fallback: counted as hard (the confidence says
        // it is untested).
        let mut hard = hardness.unwrap_or(1.0);
        // A replica it had is gone: one failure now takes down whatever waits on it, and
        // failures that were absorbed while the replica served say nothing about that.
        let lost_redundancy = instances == Some(1) && seen.is_some_and(|k| k > 1);
        if lost_redundancy {
            hard = hard.max(DEGRADED_HARDNESS);
        }
        let blast = if reachable > 1 {
            dominated.get(&n).copied().unwrap_or(0) as f64 / (reachable - 1) as f64
        } else {
            0.0
        };
        // Harm: the entry requests its loss fails. Summed over operations, each operation's
        // requests that wait on it count, so this is the traffic-weighted share.
        let lost = (all * hard).clamp(0.0, 1.0);
        let mut score = redundancy * (harm_score(lost) + SPOF_BLAST_BONUS * blast);
        // Failing now, by status.
        let rate = fails.entry_failed_too as f64 / traces as f64;
        let baseline_rate = base.zip(base_systems.as_ref()).map(|(b, bs)| {
            let bf = b.facts.fail.get(&n).copied().unwrap_or_default();
            bf.entry_failed_too as f64 / bs.traces_of(n) as f64
        });
        let dependent = reach_all
            .get(&n)
            .copied()
            .unwrap_or(0)
            .max(fails.entry_failed_too);
        let failing_now = fails
            .failed_between
            .filter(|_| fails.entry_failed_too > 0)
            .map(|(first, last)| {
                let failed = fails.entry_failed_too as f64;
                let span = (last - first).max(OUTAGE_MIN_SPAN_NS) as f64;
                let expected = dependent as f64 * (span / window_ns as f64).min(1.0);
                // Over once it has been quiet for longer than several of its usual gaps.
                let gap = (last - first) as f64 / (failed - 1.0).max(1.0);
                let quiet = (OUTAGE_QUIET_GAPS * gap).max(OUTAGE_MIN_QUIET_NS as f64);
                FailingNow {
                    rate,
                    baseline_rate,
                    failed_requests: fails.entry_failed_too,
                    share_of_dependent: failed / dependent.max(1) as f64,
                    rate_while_failing: (failed / expected.max(1.0)).min(1.0),
                    since_ns: first,
                    until_ns: (cur.end_ns.saturating_sub(last) as f64 > quiet).then_some(last),
                }
            });
        let above_baseline = |r: f64| match baseline_rate {
            Some(b) => r - b >= ACTIVE_EXCESS_RATE && r >= ACTIVE_RATIO * b,
            None => r >= PAGE_RATE,
        };
        // An outage: while it lasted, most requests that needed it failed; not chronic.
        let outage = failing_now.as_ref().is_some_and(|w| {
            w.rate_while_failing >= OUTAGE_RATE
                && baseline_rate.is_none_or(|b| rate >= ACTIVE_RATIO * b)
        });
        let status_active =
            fails.entry_failed_too >= ACTIVE_MIN_FAILED && (above_baseline(rate) || outage);
        // Failing now, by vanished calls.
        let vanish = vanished.get(&n).cloned();
        // Vanishing is measured against the baseline already: its excess is the rate.
        let vanish_active = vanish.as_ref().is_some_and(|v| {
            v.rate >= ACTIVE_EXCESS_RATE && v.rate * traces as f64 >= ACTIVE_MIN_FAILED as f64
        });
        let active = status_active || vanish_active;
        if active {
            // Biting now outranks what could happen: the more requests it fails, the higher.
            let r = rate.max(vanish.as_ref().map_or(0.0, |v| v.rate));
            score = score.max(SEVERITY[3] + (1.0 - SEVERITY[3]) * (r / ACTIVE_FULL_RATE).min(1.0));
        }
        out.push(SpofScore {
            node: n,
            score: score.clamp(0.0, 1.0),
            active,
            reach,
            reach_operation: op,
            reach_operation_traces: op_traces,
            reach_all_traffic: all,
            instances,
            instances_seen: seen,
            instances_more: more,
            lost_redundancy,
            failures_seen: fails.traces_failed,
            hardness,
            fallback_seen,
            requests_lost_share: lost,
            blast_radius: blast,
            dominated_nodes: dominated.get(&n).copied().unwrap_or(0),
            fan_in: callers.get(&n).map_or(0, |c| c.len()),
            failing_now,
            vanished: vanish,
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.node.cmp(&b.node)));
    out
}
