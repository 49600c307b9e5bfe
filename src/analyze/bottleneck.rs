//! Bottleneck scores: who the end-to-end latency waits on, from the window's sums, as typed
//! values (words and cures are added by `findings`).
//!
//! Three signals, each with its own reference, and the strongest decides:
//! - **change** (with a baseline): each node's critical-path time per request, against what
//!   the baseline spent on it for requests of the same entry operation *and shape* (the same
//!   set of operations reached), weighted by today's mix. Only the excess is charged, and it
//!   is scored by how sudden it is (its ratio), so a small service's 10× jump outranks a big
//!   one's everyday drift.
//! - **waiting**: the wait outside a callee's server span, against the system's typical wait
//!   (network and framework overhead, the median over edges). A saturated or starved service
//!   shows here: requests wait before its spans start while its own spans stay short. A
//!   caller that waits long on *all* its callees is itself slow to send and receive, and the
//!   wait is its own.
//! - **share**: the node's share of critical-path time. Where time goes, not by itself a
//!   problem: it scores at most [`SHARE_WEIGHT`] of itself.
//!
//! Asynchronous hops have their own signal: a consumer whose queue delay is long and growing
//! can't keep up ([`Backlog`]). And a node running near its capacity
//! ([`super::capacity`]) is one whatever the rest says: more load and it gives out.

use rustc_hash::FxHashMap;

use super::capacity::{Capacity, Certainty};
use super::facts::OpKey;
use super::graph::{ConnType, EdgeAgg, GraphAgg, LOAD_BUCKET_NS};
use super::node::NodeId;
use super::stats::fit_line;
use super::thresholds::*;
use crate::analyze::hist::Hist;
use crate::model::NodeType;

/// What made a node a bottleneck, with the evidence that decided it (a cause cannot be
/// without its evidence). `name` is its spelling on the wire.
#[derive(Debug, Clone, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Cause {
    /// Its critical-path time jumped against the baseline.
    Change(ChangeEvidence),
    /// Callers wait long outside its spans: it queues (saturated, starved, a slow network).
    Waiting(WaitEvidence),
    /// It waits long on all its callees: its own process is slow to send and receive.
    SlowCaller(WaitEvidence),
    /// Its latency climbs with load.
    Saturation(Saturation),
    /// It holds the largest part of request time ([`BottleneckScore::share`]).
    Share,
    /// As a consumer, it can't keep up with its queue.
    Backlog(Backlog),
    /// It runs within [`CAPACITY_NEAR`] of its capacity, or beyond it.
    Capacity(Capacity),
}

impl Cause {
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

/// A node's part of the critical path.
#[derive(Debug, Clone, Default)]
pub struct ShareEvidence {
    /// Of all requests' end-to-end time, the part spent on this node on the critical path.
    pub share: f64,
    pub own_share: f64,
    /// The part spent by callers waiting outside its spans.
    pub queue_share: f64,
    /// Its share over the next largest (for the largest), or over the largest.
    pub dominance: f64,
    pub traces_on_path: u64,
    /// Per trace, its critical-path time.
    pub per_trace_p50_ms: f64,
    pub per_trace_p99_ms: f64,
    /// Its share of each entry operation's time (up to five, largest first).
    pub per_operation: Vec<(OpKey, f64, u64)>,
}

/// Critical-path time per request now and as the baseline predicts for today's requests.
#[derive(Debug, Clone)]
pub struct ChangeEvidence {
    pub baseline_ms_per_request: f64,
    pub now_ms_per_request: f64,
    pub ratio: f64,
    pub excess_ms_per_request: f64,
    /// The excess as a part of today's end-to-end latency.
    pub explains_share_of_latency: f64,
    /// Requests compared (same entry operation and shape in both windows).
    pub compared_traces: u64,
    /// True when shapes did not match and whole entry operations were compared instead.
    pub by_operation_only: bool,
    pub baseline_e2e_ms_per_request: f64,
    pub now_e2e_ms_per_request: f64,
    /// Of the requests that put it on the critical path, the part slower than the
    /// baseline's p90 for the same operation.
    pub consistency: f64,
}

/// Waiting outside the node's spans, against the typical wait of the system.
#[derive(Debug, Clone)]
pub struct WaitEvidence {
    /// The median wait of its slowest incoming edge (for a slow caller: of its outgoing
    /// edges, their median).
    pub gap_p50_ms: f64,
    pub typical_gap_ms: f64,
    pub ratio: f64,
    pub excess_ms_per_request: f64,
    pub calls: u64,
    /// Of those calls, the part that waited more than twice the typical gap.
    pub consistency: f64,
    /// The typical gap came from the baseline.
    pub typical_from_baseline: bool,
}

#[derive(Debug, Clone)]
pub struct Saturation {
    pub buckets: usize,
    pub correlation: f64,
    pub ms_per_extra_request_per_s: f64,
    /// Mean latency in the busiest third of the load buckets over the quietest third.
    pub busy_over_quiet: f64,
    pub saturating: bool,
}

/// End-to-end latency now and if the node were twice as fast (CRISP's projection over a
/// sample of traces; a parallel branch that would become critical is not modelled).
#[derive(Debug, Clone)]
pub struct WhatIf {
    /// Traces the projection ran over; 0 when it was estimated from sums (see
    /// `what_if_from_sums`).
    pub sampled_traces: usize,
    pub p50_ms_now: f64,
    pub p99_ms_now: f64,
    pub p50_ms_if_2x_faster: f64,
    pub p99_ms_if_2x_faster: f64,
    /// Per entry operation, the share of its median request that twice the speed would save,
    /// and the saving (ms), each averaged over the operations by their traffic.
    pub saves_share_of_median: f64,
    pub saves_median_ms: f64,
}

impl WhatIf {
    pub fn saves_p50_ms(&self) -> f64 {
        self.p50_ms_now - self.p50_ms_if_2x_faster
    }

    pub fn saves_p99_ms(&self) -> f64 {
        self.p99_ms_now - self.p99_ms_if_2x_faster
    }
}

/// A consumer's queue delay.
#[derive(Debug, Clone)]
pub struct Backlog {
    pub via: NodeId,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub messages: u64,
    pub growth_ms_per_s: f64,
    pub growth_over_window_ms: f64,
    pub growing: bool,
    pub baseline_p99_ms: Option<f64>,
}

/// One node's bottleneck score and everything behind it.
#[derive(Debug, Clone)]
pub struct BottleneckScore {
    pub node: NodeId,
    /// How strongly the evidence points at this node, 0..=1 (ranks findings).
    pub score: f64,
    pub cause: Cause,
    /// Its critical-path time jumped against the baseline: it slows requests now.
    pub active: bool,
    /// Evidence that it slows the system (a jump, growing waits, latency climbing with
    /// load, a what-if that saves real time), beyond being where time goes.
    pub harm: bool,
    /// Traces or calls behind the deciding signal, and the part of them that show it.
    pub evidence_units: u64,
    pub consistency: f64,
    pub share: ShareEvidence,
    pub what_if: Option<WhatIf>,
    /// Signals seen beside the cause (the cause's own evidence is in [`Cause`]); read them
    /// through the methods, which see both.
    change: Option<ChangeEvidence>,
    waiting: Option<WaitEvidence>,
    saturation: Option<Saturation>,
    backlog: Option<Backlog>,
    capacity: Option<Capacity>,
}

impl BottleneckScore {
    /// A node that only one signal names (no share of the critical path, nothing beside
    /// it), its evidence `units` all consistent; `(active, harm)` as the signal says.
    fn alone(
        node: NodeId,
        score: f64,
        cause: Cause,
        units: u64,
        (active, harm): (bool, bool),
    ) -> Self {
        BottleneckScore {
            node,
            score,
            cause,
            active,
            harm,
            evidence_units: units,
            consistency: 1.0,
            share: ShareEvidence::default(),
            what_if: None,
            change: None,
            waiting: None,
            saturation: None,
            backlog: None,
            capacity: None,
        }
    }

    pub fn capacity(&self) -> Option<&Capacity> {
        match &self.cause {
            Cause::Capacity(c) => Some(c),
            _ => self.capacity.as_ref(),
        }
    }

    pub fn change(&self) -> Option<&ChangeEvidence> {
        match &self.cause {
            Cause::Change(c) => Some(c),
            _ => self.change.as_ref(),
        }
    }

    pub fn waiting(&self) -> Option<&WaitEvidence> {
        match &self.cause {
            Cause::Waiting(w) | Cause::SlowCaller(w) => Some(w),
            _ => self.waiting.as_ref(),
        }
    }

    pub fn saturation(&self) -> Option<&Saturation> {
        match &self.cause {
            Cause::Saturation(s) => Some(s),
            _ => self.saturation.as_ref(),
        }
    }

    pub fn backlog(&self) -> Option<&Backlog> {
        match &self.cause {
            Cause::Backlog(q) => Some(q),
            _ => self.backlog.as_ref(),
        }
    }

    /// Makes `cause` the cause; the old one's evidence stays, beside it.
    fn recause(&mut self, cause: Cause) {
        match std::mem::replace(&mut self.cause, cause) {
            Cause::Change(c) => self.change = Some(c),
            Cause::Waiting(w) | Cause::SlowCaller(w) => self.waiting = Some(w),
            Cause::Saturation(s) => self.saturation = Some(s),
            Cause::Share => {}
            Cause::Backlog(q) => self.backlog = Some(q),
            Cause::Capacity(c) => self.capacity = Some(c),
        }
    }
}

/// A ratio as a score: tanh of its log2 over [`LOG2_RATIO_SCALE`], so 2× scores 0.25, 4×
/// 0.46, 8× 0.64 and 16× 0.76, and a larger jump always scores higher (never saturates).
fn log_ratio_score(ratio: f64) -> f64 {
    (ratio.max(1.0).log2() / LOG2_RATIO_SCALE).tanh()
}

/// The system's typical wait outside a callee's span (ns): the median over synchronous
/// edges (with enough calls) of each edge's median gap.
fn typical_gap_ns(g: &GraphAgg) -> Option<f64> {
    let mut meds: Vec<f64> = g
        .edges
        .iter()
        .filter(|(k, e)| {
            k.conn == ConnType::Sync && k.from != k.to && e.gap.count() >= TYPICAL_GAP_MIN_CALLS
        })
        .map(|(_, e)| e.gap.quantile_ns(0.5) as f64)
        .collect();
    if meds.is_empty() {
        return None;
    }
    meds.sort_by(f64::total_cmp);
    Some(meds[meds.len() / 2].max(MIN_TYPICAL_GAP_NS))
}

/// Waits per node, with sick callers found and their waits moved to them.
struct Waits {
    /// Callers slow to send and receive → median of their edges' median gaps (ns).
    sick: FxHashMap<NodeId, f64>,
    per_node: FxHashMap<NodeId, WaitEvidence>,
}

fn waits(cur: &GraphAgg, base: Option<&GraphAgg>) -> Option<Waits> {
    let edges: Vec<_> = cur
        .edges
        .iter()
        .filter(|(k, e)| k.conn == ConnType::Sync && k.from != k.to && e.gap.count() > 0)
        .collect();
    if edges.is_empty() {
        return None;
    }
    let median = |v: &mut Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let baseline_typical = base.and_then(typical_gap_ns);
    // The typical gap as seen from other callers' calls: a starved caller must not set the
    // yardstick it is measured with.
    let typical_without = |caller: Option<NodeId>| -> Option<f64> {
        if let Some(t) = baseline_typical {
            return Some(t);
        }
        let mut v: Vec<f64> = edges
            .iter()
            .filter(|(k, e)| Some(k.from) != caller && e.gap.count() >= TYPICAL_GAP_MIN_CALLS)
            .map(|(_, e)| e.gap.quantile_ns(0.5) as f64)
            .collect();
        median(&mut v).map(|t| t.max(MIN_TYPICAL_GAP_NS))
    };
    let mut by_caller: FxHashMap<NodeId, Vec<f64>> = FxHashMap::default();
    for (k, e) in &edges {
        by_caller
            .entry(k.from)
            .or_default()
            .push(e.gap.quantile_ns(0.5) as f64);
    }
    let sick: FxHashMap<NodeId, f64> = by_caller
        .into_iter()
        .filter_map(|(caller, mut g)| {
            if g.len() < 2 {
                return None;
            }
            g.sort_by(f64::total_cmp);
            let (min, max, mid) = (g[0], g[g.len() - 1], g[g.len() / 2]);
            let typical = typical_without(Some(caller)).unwrap_or(MIN_TYPICAL_GAP_NS);
            (mid >= SICK_CALLER_RATIO * typical && min >= SICK_CALLER_SPREAD * max)
                .then_some((caller, mid))
        })
        .collect();
    let from_baseline = baseline_typical.is_some();
    let typical_ns = match baseline_typical {
        Some(t) => t,
        None => {
            let mut v: Vec<f64> = edges
                .iter()
                .filter(|(k, e)| {
                    !sick.contains_key(&k.from) && e.gap.count() >= TYPICAL_GAP_MIN_CALLS
                })
                .map(|(_, e)| e.gap.quantile_ns(0.5) as f64)
                .collect();
            median(&mut v)
                .unwrap_or(MIN_TYPICAL_GAP_NS)
                .max(MIN_TYPICAL_GAP_NS)
        }
    };
    let requests = cur.facts.traces.max(1) as f64;
    // An edge whose calls wait long is the callee's, unless the callee's other callers
    // wait normally while this caller has no other callees to compare with, or waits long
    // on all of them: then the caller is slow to send and receive.
    let elevated = |e: &EdgeAgg| e.gap.quantile_ns(0.5) as f64 >= WAIT_MIN_RATIO * typical_ns;
    let mut callers_of: FxHashMap<NodeId, Vec<(NodeId, bool)>> = FxHashMap::default();
    let mut callees_of: FxHashMap<NodeId, Vec<(NodeId, bool)>> = FxHashMap::default();
    for (k, e) in &edges {
        callers_of
            .entry(k.to)
            .or_default()
            .push((k.from, elevated(e)));
        callees_of
            .entry(k.from)
            .or_default()
            .push((k.to, elevated(e)));
    }
    let blame = |from: NodeId, to: NodeId| -> NodeId {
        if sick.contains_key(&from) {
            return from;
        }
        let others_in: Vec<bool> = callers_of[&to]
            .iter()
            .filter(|c| c.0 != from)
            .map(|c| c.1)
            .collect();
        let others_out: Vec<bool> = callees_of[&from]
            .iter()
            .filter(|c| c.0 != to)
            .map(|c| c.1)
            .collect();
        let callee_fine_elsewhere = !others_in.is_empty() && others_in.iter().all(|e| !e);
        let caller_fine_elsewhere = !others_out.is_empty() && others_out.iter().all(|e| !e);
        if callee_fine_elsewhere && !caller_fine_elsewhere {
            from
        } else {
            to
        }
    };
    let mut per_node: FxHashMap<NodeId, WaitEvidence> = FxHashMap::default();
    for (k, e) in &edges {
        let target = if elevated(e) {
            blame(k.from, k.to)
        } else {
            k.to
        };
        let med = e.gap.quantile_ns(0.5) as f64;
        let slow = e.gap.count() - e.gap.count_le_ns((WAIT_SLOW_RATIO * typical_ns) as u64);
        let excess = e.gap.count() as f64 * (med - typical_ns).max(0.0) / 1e6 / requests;
        let w = per_node.entry(target).or_insert(WaitEvidence {
            gap_p50_ms: 0.0,
            typical_gap_ms: typical_ns / 1e6,
            ratio: 1.0,
            excess_ms_per_request: 0.0,
            calls: 0,
            consistency: 0.0,
            typical_from_baseline: from_baseline,
        });
        let ratio = med / typical_ns;
        if ratio > w.ratio {
            w.ratio = ratio;
            w.gap_p50_ms = med / 1e6;
        }
        w.excess_ms_per_request += excess;
        // `consistency` holds slow calls until normalized below.
        w.consistency += slow as f64;
        w.calls += e.gap.count();
    }
    for (n, w) in per_node.iter_mut() {
        w.consistency /= w.calls.max(1) as f64;
        if let Some(mid) = sick.get(n) {
            w.gap_p50_ms = mid / 1e6;
            w.ratio = mid / typical_ns;
        }
    }
    Some(Waits { sick, per_node })
}

/// Per-node critical-path totals (ns): own work and waits outside its spans, with the waits
/// of sick callers moved to them.
fn node_cp(cur: &GraphAgg, sick: &FxHashMap<NodeId, f64>) -> FxHashMap<NodeId, (f64, f64)> {
    let mut cp: FxHashMap<NodeId, (f64, f64)> = FxHashMap::default();
    for ((op, n), c) in &cur.facts.cp {
        if op.background {
            continue;
        }
        let e = cp.entry(*n).or_default();
        e.0 += c.own_ns as f64;
        e.1 += c.queue_ns as f64;
    }
    for ((caller, callee), ns) in &cur.facts.waits {
        if sick.contains_key(caller) && caller != callee {
            let ns = *ns as f64;
            let e = cp.entry(*callee).or_default();
            e.1 = (e.1 - ns).max(0.0);
            cp.entry(*caller).or_default().0 += ns;
        }
    }
    cp
}

/// Critical-path time per node now and as the baseline predicts for today's requests.
struct Compared {
    actual: FxHashMap<NodeId, f64>,
    expected: FxHashMap<NodeId, f64>,
    traces: u64,
    e2e_ns: f64,
    baseline_e2e_ns: f64,
    by_operation_only: bool,
}

/// Compares like with like: the same entry operation and shape; if too few requests match,
/// whole entry operations.
fn compare(cur: &GraphAgg, base: &GraphAgg) -> Option<Compared> {
    let (c, b) = (&cur.facts, &base.facts);
    let mut out = Compared {
        actual: FxHashMap::default(),
        expected: FxHashMap::default(),
        traces: 0,
        e2e_ns: 0.0,
        baseline_e2e_ns: 0.0,
        by_operation_only: false,
    };
    let mut matched: FxHashMap<(OpKey, u64), (u64, u64)> = FxHashMap::default();
    for (k, s) in &c.shapes {
        if let Some(bs) = b.shapes.get(k).filter(|_| !k.0.background && k.1 != 0) {
            matched.insert(*k, (s.traces, bs.traces));
            out.traces += s.traces;
            out.e2e_ns += s.e2e_ns as f64;
            out.baseline_e2e_ns += s.traces as f64 * bs.e2e_ns as f64 / bs.traces.max(1) as f64;
        }
    }
    if out.traces >= CHANGE_MIN_TRACES {
        for ((op, shape, n), (own, q)) in &c.shape_cp {
            if matched.contains_key(&(*op, *shape)) {
                *out.actual.entry(*n).or_default() += (own + q) as f64;
            }
        }
        for ((op, shape, n), (own, q)) in &b.shape_cp {
            if let Some((now, then)) = matched.get(&(*op, *shape)) {
                *out.expected.entry(*n).or_default() +=
                    *now as f64 * (own + q) as f64 / (*then).max(1) as f64;
            }
        }
        return Some(out);
    }
    // Shapes differ (names with ids in them, a changed flow): compare whole operations.
    out = Compared {
        by_operation_only: true,
        ..out
    };
    out.traces = 0;
    out.e2e_ns = 0.0;
    out.baseline_e2e_ns = 0.0;
    let mut ops: FxHashMap<OpKey, (u64, u64)> = FxHashMap::default();
    for (op, o) in &c.ops {
        if let Some(bo) = b.ops.get(op).filter(|_| !op.background) {
            ops.insert(*op, (o.traces, bo.traces));
            out.traces += o.traces;
            out.e2e_ns += o.e2e_total_ns as f64;
            out.baseline_e2e_ns += o.traces as f64 * bo.e2e_total_ns as f64 / bo.traces as f64;
        }
    }
    if out.traces < CHANGE_MIN_TRACES {
        return None;
    }
    for ((op, n), a) in &c.cp {
        if ops.contains_key(op) {
            *out.actual.entry(*n).or_default() += (a.own_ns + a.queue_ns) as f64;
        }
    }
    for ((op, n), a) in &b.cp {
        if let Some((now, then)) = ops.get(op) {
            *out.expected.entry(*n).or_default() +=
                *now as f64 * (a.own_ns + a.queue_ns) as f64 / (*then).max(1) as f64;
        }
    }
    Some(out)
}

/// With a baseline: each node's change, with the excess waits of sick callers on their
/// callees charged to the callers.
fn changes(
    cur: &GraphAgg,
    base: &GraphAgg,
    sick: &FxHashMap<NodeId, f64>,
) -> FxHashMap<NodeId, ChangeEvidence> {
    let Some(mut cmp) = compare(cur, base) else {
        return FxHashMap::default();
    };
    let n = cmp.traces as f64;
    let per = |w: &FxHashMap<(NodeId, NodeId), u128>, t: u64, k: &(NodeId, NodeId)| {
        w.get(k).copied().unwrap_or(0) as f64 / t.max(1) as f64
    };
    let mut moves: Vec<(NodeId, NodeId, f64)> = Vec::new();
    for k in cur.facts.waits.keys() {
        if sick.contains_key(&k.0) && k.0 != k.1 {
            let d = per(&cur.facts.waits, cur.facts.traces, k)
                - per(&base.facts.waits, base.facts.traces, k);
            if d > 0.0 {
                moves.push((k.0, k.1, d * n));
            }
        }
    }
    for (caller, callee, ns) in moves {
        let a = cmp.actual.entry(callee).or_default();
        let moved = ns.min(*a);
        *a -= moved;
        *cmp.actual.entry(caller).or_default() += moved;
    }
    let consistency = |node: NodeId| -> f64 {
        let (mut above, mut total) = (0u64, 0u64);
        for ((op, nd), a) in &cur.facts.cp {
            if *nd != node || op.background {
                continue;
            }
            let Some(b) = base.facts.cp.get(&(*op, node)) else {
                continue;
            };
            let p90 = b.per_trace.quantile_ns(0.9);
            total += a.per_trace.count();
            above += a.per_trace.count() - a.per_trace.count_le_ns(p90);
        }
        if total == 0 {
            0.0
        } else {
            above as f64 / total as f64
        }
    };
    let mut nodes: Vec<NodeId> = cmp
        .actual
        .keys()
        .chain(cmp.expected.keys())
        .copied()
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|node| {
            let act = cmp.actual.get(&node).copied().unwrap_or(0.0) / n / 1e6;
            let exp = cmp.expected.get(&node).copied().unwrap_or(0.0) / n / 1e6;
            let ch = ChangeEvidence {
                baseline_ms_per_request: exp,
                now_ms_per_request: act,
                ratio: (act + RATIO_FLOOR_MS) / (exp + RATIO_FLOOR_MS),
                excess_ms_per_request: act - exp,
                explains_share_of_latency: (act - exp) * 1e6 * n / cmp.e2e_ns.max(1.0),
                compared_traces: cmp.traces,
                by_operation_only: cmp.by_operation_only,
                baseline_e2e_ms_per_request: cmp.baseline_e2e_ns / n / 1e6,
                now_e2e_ms_per_request: cmp.e2e_ns / n / 1e6,
                consistency: consistency(node),
            };
            (node, ch)
        })
        .collect()
}

/// Per entry operation, what twice the speed of `node` saves its median request, as a share
/// of that median and in ms, averaged over operations by their traffic. The median request
/// saves half the node's median critical-path time when the node is on the path of most of
/// the operation's requests, else half its mean over them.
fn relative_saving(cur: &GraphAgg, node: NodeId) -> (f64, f64) {
    let f = &cur.facts;
    let total = f.traces.max(1) as f64;
    let (mut share, mut ms) = (0.0, 0.0);
    for (op, o) in &f.ops {
        if op.background || o.traces == 0 {
            continue;
        }
        let Some(c) = f.cp.get(&(*op, node)) else {
            continue;
        };
        let p50 = o.e2e.quantile_ms(0.5);
        if p50 <= 0.0 {
            continue;
        }
        let save = if c.traces * 2 >= o.traces {
            c.per_trace.quantile_ms(0.5) / 2.0
        } else {
            (c.own_ns + c.queue_ns) as f64 / o.traces as f64 / 2.0 / 1e6
        };
        let w = o.traces as f64 / total;
        share += w * (save / p50).min(1.0);
        ms += w * save.min(p50);
    }
    (share, ms)
}

/// Projected end-to-end p50/p99 if `node` were twice as fast.
fn what_if(cur: &GraphAgg, node: NodeId) -> Option<WhatIf> {
    let mut w = what_if_overall(cur, node)?;
    (w.saves_share_of_median, w.saves_median_ms) = relative_saving(cur, node);
    Some(w)
}

fn what_if_overall(cur: &GraphAgg, node: NodeId) -> Option<WhatIf> {
    let mut now: Vec<f64> = Vec::new();
    let mut then: Vec<f64> = Vec::new();
    for s in cur.facts.samples.items() {
        let mine: u64 = s.cp.iter().filter(|c| c.0 == node).map(|c| c.1).sum();
        now.push(s.e2e_ns as f64);
        then.push(s.e2e_ns as f64 - mine as f64 / 2.0);
    }
    if now.is_empty() {
        return what_if_from_sums(cur, node);
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize] / 1e6
    };
    Some(WhatIf {
        sampled_traces: now.len(),
        p50_ms_now: q(&mut now, 0.5),
        p99_ms_now: q(&mut now, 0.99),
        p50_ms_if_2x_faster: q(&mut then, 0.5),
        p99_ms_if_2x_faster: q(&mut then, 0.99),
        saves_share_of_median: 0.0,
        saves_median_ms: 0.0,
    })
}

/// The projection without a trace sample (aggregates summed across instances carry none: a
/// trace lives in one instance), estimated from sums, `sampled_traces` 0. The median request
/// saves half the node's median critical-path time when the node is on the path of most
/// requests, else half its mean over all requests; the p99 request saves half the node's p99
/// when the node is on the path of at least 1% of requests. It overstates the saving when
/// the slowest requests are slow elsewhere; the sampled projection does not.
fn what_if_from_sums(cur: &GraphAgg, node: NodeId) -> Option<WhatIf> {
    let mut e2e = crate::analyze::hist::Hist::default();
    for (op, o) in &cur.facts.ops {
        if !op.background {
            e2e.add(&o.e2e);
        }
    }
    if e2e.count() == 0 {
        return None;
    }
    let mut per_trace = crate::analyze::hist::Hist::default();
    let (mut total_ns, mut on_path) = (0u128, 0u64);
    for ((_, n), c) in &cur.facts.cp {
        if *n == node {
            per_trace.add(&c.per_trace);
            total_ns += c.own_ns + c.queue_ns;
            on_path += c.traces;
        }
    }
    let traces = cur.facts.traces.max(1);
    let (p50, p99) = (e2e.quantile_ms(0.5), e2e.quantile_ms(0.99));
    let save50 = if on_path * 2 >= traces {
        per_trace.quantile_ms(0.5) / 2.0
    } else {
        total_ns as f64 / traces as f64 / 2.0 / 1e6
    };
    let save99 = if on_path * 100 >= traces {
        per_trace.quantile_ms(0.99) / 2.0
    } else {
        save50
    };
    Some(WhatIf {
        sampled_traces: 0,
        p50_ms_now: p50,
        p99_ms_now: p99,
        p50_ms_if_2x_faster: (p50 - save50).max(0.0),
        p99_ms_if_2x_faster: (p99 - save99).max(0.0),
        saves_share_of_median: 0.0,
        saves_median_ms: 0.0,
    })
}

/// Does the node's latency rise with its request rate across load buckets?
fn saturation(cur: &GraphAgg, node: NodeId) -> Option<Saturation> {
    let load = &cur.nodes.get(&node)?.load;
    let mut pts: Vec<(f64, f64)> = load
        .values()
        .filter(|l| l.requests > 0)
        .map(|l| {
            (
                l.requests as f64,
                l.latency_ns as f64 / l.requests as f64 / 1e6,
            )
        })
        .collect();
    // The first and last buckets are usually cut by the window's edges: few requests, at
    // whatever latency the moment had. Left out when enough remain.
    if pts.len() >= SATURATION_MIN_BUCKETS + 2 {
        pts.pop();
        pts.remove(0);
    }
    if pts.len() < SATURATION_MIN_BUCKETS {
        return None;
    }
    let line = fit_line(&pts)?;
    let r = line.r;
    let per_s = LOAD_BUCKET_NS as f64 / 1e9;
    let mut by_load = pts.clone();
    by_load.sort_by(|a, b| a.0.total_cmp(&b.0));
    let third = (by_load.len() / 3).max(1);
    let mean = |v: &[(f64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len().max(1) as f64;
    let quiet = mean(&by_load[..third]);
    let busy = mean(&by_load[by_load.len() - third..]);
    Some(Saturation {
        buckets: pts.len(),
        correlation: r,
        ms_per_extra_request_per_s: line.sxy / line.sxx * per_s,
        busy_over_quiet: busy / quiet.max(1e-9),
        saturating: r >= SATURATION_MIN_CORRELATION && line.sxy > 0.0,
    })
}

fn share_evidence(
    cur: &GraphAgg,
    node: NodeId,
    cp: (f64, f64),
    dominance: f64,
    total: f64,
) -> ShareEvidence {
    let f = &cur.facts;
    let mut per_trace = Hist::default();
    let mut on_path = 0;
    let mut ops: Vec<(OpKey, f64, u64)> = Vec::new();
    for ((op, n), a) in &f.cp {
        if *n != node || op.background {
            continue;
        }
        per_trace.add(&a.per_trace);
        on_path += a.traces;
        if let Some(o) = f.ops.get(op) {
            let s = (a.own_ns + a.queue_ns) as f64 / o.e2e_total_ns.max(1) as f64;
            ops.push((*op, s, o.traces));
        }
    }
    ops.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ops.truncate(SHARE_MAX_OPS);
    ShareEvidence {
        share: (cp.0 + cp.1) / total,
        own_share: cp.0 / total,
        queue_share: cp.1 / total,
        dominance,
        traces_on_path: on_path,
        per_trace_p50_ms: per_trace.quantile_ns(0.5) as f64 / 1e6,
        per_trace_p99_ms: per_trace.quantile_ns(0.99) as f64 / 1e6,
        per_operation: ops,
    }
}

/// Bottleneck scores of every node on the critical path (and of consumers with a queue).
/// `caps` are the window's capacities ([`super::capacity::estimate`]): near or beyond its
/// capacity, a node is a bottleneck whatever else is seen.
pub fn score(
    cur: &GraphAgg,
    base: Option<&GraphAgg>,
    ty: &dyn Fn(NodeId) -> NodeType,
    caps: &[Capacity],
) -> Vec<BottleneckScore> {
    let f = &cur.facts;
    let mut out: FxHashMap<NodeId, BottleneckScore> = FxHashMap::default();
    if f.traces > 0 && f.e2e_total_ns > 0 {
        let waits = waits(cur, base);
        let empty = FxHashMap::default();
        let sick = waits.as_ref().map_or(&empty, |w| &w.sick);
        let cp = node_cp(cur, sick);
        let changes = base.map(|b| changes(cur, b, sick)).unwrap_or_default();
        let total = f.e2e_total_ns as f64;
        let mut shares: Vec<(NodeId, f64)> =
            cp.iter().map(|(n, c)| (*n, (c.0 + c.1) / total)).collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut nodes: Vec<NodeId> = cp.keys().copied().collect();
        if let Some(w) = &waits {
            nodes.extend(w.per_node.keys());
        }
        nodes.extend(changes.keys());
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let c = cp.get(&node).copied().unwrap_or_default();
            let share = (c.0 + c.1) / total;
            let rank = shares.iter().position(|s| s.0 == node);
            let other = match rank {
                Some(0) => shares.get(1).map_or(0.0, |s| s.1),
                _ => shares.first().map_or(0.0, |s| s.1),
            };
            let dominance = (share / other.max(1e-9)).min(1e6);
            let share_ev = share_evidence(cur, node, c, dominance, total);
            let share_score = share.min(1.0) * SHARE_WEIGHT;
            let mut waiting = waits.as_ref().and_then(|w| w.per_node.get(&node).cloned());
            let wait_fires = waiting.as_ref().is_some_and(|w| {
                w.ratio >= WAIT_MIN_RATIO && w.excess_ms_per_request >= WAIT_MIN_EXCESS_MS
            });
            let wait_score = if wait_fires {
                waiting.as_ref().map_or(0.0, |w| log_ratio_score(w.ratio))
            } else {
                0.0
            };
            if waiting
                .as_ref()
                .is_some_and(|w| w.excess_ms_per_request <= 0.0)
            {
                waiting = None;
            }
            let change = changes.get(&node).cloned();
            let change_fires = change.as_ref().is_some_and(|c| {
                c.excess_ms_per_request >= CHANGE_MIN_EXCESS_MS && c.ratio >= CHANGE_MIN_RATIO
            });
            let change_score = if change_fires {
                change.as_ref().map_or(0.0, |c| log_ratio_score(c.ratio))
            } else {
                0.0
            };
            let saturation = saturation(cur, node);
            // Latency that climbs with load: scored by how much slower it is when busy.
            let sat_score = saturation
                .as_ref()
                .filter(|s| s.saturating)
                .map_or(0.0, |s| log_ratio_score(s.busy_over_quiet));
            let own = wait_score.max(share_score).max(sat_score);
            let score = if change.is_some() || base.is_some() {
                change_score.max(OWN_SIGNALS_WITH_BASELINE * own)
            } else {
                own
            };
            let is_sick = sick.contains_key(&node);
            let saturating = saturation.as_ref().is_some_and(|s| s.saturating);
            // The deciding signal's evidence moves into the cause; the rest stays beside it.
            let mut change = change;
            let mut saturation = saturation;
            let decided = if change_fires && change_score >= OWN_SIGNALS_WITH_BASELINE * own {
                change.take().map(Cause::Change)
            } else if wait_fires && wait_score >= share_score.max(sat_score) {
                waiting.take().map(|w| {
                    if is_sick {
                        Cause::SlowCaller(w)
                    } else {
                        Cause::Waiting(w)
                    }
                })
            } else if sat_score > share_score {
                saturation.take().map(Cause::Saturation)
            } else {
                None
            };
            let cause = decided.unwrap_or(Cause::Share);
            let (units, consistency) = match &cause {
                Cause::Change(c) => (c.compared_traces, c.consistency),
                Cause::Waiting(w) | Cause::SlowCaller(w) => (w.calls, w.consistency),
                Cause::Saturation(_) => (cur.nodes.get(&node).map_or(0, |n| n.requests), 1.0),
                Cause::Share => (
                    f.traces,
                    share_ev.traces_on_path as f64 / f.traces.max(1) as f64,
                ),
                Cause::Backlog(q) => (q.messages, 1.0),
                Cause::Capacity(_) => (0, 1.0),
            };
            let what_if = what_if(cur, node);
            let saves = what_if.as_ref().is_some_and(|w| {
                w.saves_p50_ms() >= WHAT_IF_P50_MS
                    || w.saves_p99_ms() >= WHAT_IF_P99_MS
                    || (w.saves_share_of_median >= WHAT_IF_RELATIVE
                        && w.saves_median_ms >= WHAT_IF_RELATIVE_MIN_MS)
            });
            let harm = change_fires || wait_fires || saturating || saves;
            out.insert(
                node,
                BottleneckScore {
                    node,
                    score: score.clamp(0.0, 1.0),
                    cause,
                    active: change_fires,
                    harm,
                    evidence_units: units,
                    consistency,
                    share: share_ev,
                    change,
                    waiting,
                    saturation,
                    what_if,
                    backlog: None,
                    capacity: None,
                },
            );
        }
    }
    backlogs(cur, base, ty, &mut out);
    capacities(cur, caps, &mut out);
    let mut v: Vec<BottleneckScore> = out.into_values().collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.node.cmp(&b.node)));
    v
}

/// Asynchronous hops: a consumer whose queue delay is long and growing can't keep up, even
/// though no request waits on it.
fn backlogs(
    cur: &GraphAgg,
    base: Option<&GraphAgg>,
    ty: &dyn Fn(NodeId) -> NodeType,
    out: &mut FxHashMap<NodeId, BottleneckScore>,
) {
    let mut edges: Vec<_> = cur.edges.iter().collect();
    edges.sort_by_key(|(k, _)| **k);
    for (k, e) in edges {
        if k.conn != ConnType::Messaging || e.queue.count() < BACKLOG_MIN_MESSAGES {
            continue;
        }
        if ty(k.to) != NodeType::Service {
            continue;
        }
        let p50 = e.queue.quantile_ns(0.5) as f64 / 1e6;
        let p99 = e.queue.quantile_ns(0.99) as f64 / 1e6;
        let slope = e.queue_trend.slope().unwrap_or(0.0);
        let span_s = e.queue_trend.max_x - e.queue_trend.min_x;
        let growth = slope * span_s;
        let growing = growth > BACKLOG_GROWTH_MS && growth > 0.5 * p50;
        let level = ((p99 / BACKLOG_FLOOR_MS).log10() / BACKLOG_LOG10_FULL).clamp(0.0, 1.0);
        let mut score = level * if growing { 1.0 } else { 0.6 };
        let baseline_p99 = base
            .and_then(|b| b.edges.get(k))
            .map(|b| b.queue.quantile_ns(0.99) as f64 / 1e6);
        if let Some(bp99) = baseline_p99 {
            if bp99 > 0.0 && p99 < 2.0 * bp99 {
                score *= 0.3; // as backed up as it always is
            }
        }
        let backlog = Backlog {
            via: k.from,
            p50_ms: p50,
            p99_ms: p99,
            messages: e.queue.count(),
            growth_ms_per_s: slope,
            growth_over_window_ms: growth,
            growing,
            baseline_p99_ms: baseline_p99,
        };
        match out.get_mut(&k.to) {
            Some(c) if c.score >= score => {
                c.backlog = Some(backlog);
            }
            Some(c) => {
                c.score = score;
                c.harm |= growing;
                c.evidence_units = backlog.messages;
                c.consistency = 1.0;
                c.recause(Cause::Backlog(backlog));
            }
            None => {
                let units = backlog.messages;
                let cause = Cause::Backlog(backlog);
                let b = BottleneckScore::alone(k.to, score, cause, units, (false, growing));
                out.insert(k.to, b);
            }
        }
    }
}

/// Nodes near or beyond their capacity: high, and critical (active) when asked more than
/// they complete now. The capacity becomes the cause; what else was seen stays beside it.
fn capacities(cur: &GraphAgg, caps: &[Capacity], out: &mut FxHashMap<NodeId, BottleneckScore>) {
    for c in caps.iter().cloned() {
        let Some(headroom) = c.headroom() else {
            continue;
        };
        if headroom > CAPACITY_NEAR || c.certainty == Certainty::Low {
            continue;
        }
        let beyond = headroom * CAPACITY_BEYOND < 1.0 || c.queue_growing;
        let score = if beyond {
            CAPACITY_BEYOND_SCORE
        } else {
            CAPACITY_NEAR_SCORE
        };
        let units = cur.nodes.get(&c.node).map_or(0, |n| n.requests);
        let node = c.node;
        match out.get_mut(&node) {
            Some(b) => {
                b.score = b.score.max(score);
                b.harm = true;
                b.active |= beyond;
                b.evidence_units = units;
                b.consistency = 1.0;
                b.recause(Cause::Capacity(c));
            }
            None => {
                let b =
                    BottleneckScore::alone(node, score, Cause::Capacity(c), units, (beyond, true));
                out.insert(node, b);
            }
        }
    }
}
