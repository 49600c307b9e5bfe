//! Per-trace facts that add up: each completed trace is reduced to its entry operation,
//! end-to-end latency, critical-path time per node, the nodes its entry request waits on
//! synchronously, and the nodes that failed in it. [`FactsAgg`] sums them; the findings are
//! computed from these sums alone, never from raw traces kept around.

use rustc_hash::FxHashMap;

use super::critical_path::{attribute, is_blocking_child, Part, Segment};
use super::graph::{resolve_peer, waited_peer, NodeId, NodeTable};
use super::stats::{BottomK, TopK};
use super::tree::{Ix, Trace};
use crate::hist::Hist;
use crate::model::{Interner, NodeKey, NodeType, Sym, TraceId};

/// An entry operation: the root span's service and name (`api-gateway`, `POST /checkout`).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct OpKey {
    pub service: NodeId,
    pub name: Sym,
}

/// Entry operations kept apart; past this, new ones fold into one per service.
pub const MAX_OPS: usize = 256;

/// One trace, reduced.
#[derive(Debug, Clone)]
pub struct TraceFacts {
    pub trace_id: TraceId,
    pub op: OpKey,
    pub e2e_ns: u64,
    pub entry_error: bool,
    pub spans: u32,
    /// Critical-path time per node: `(node, own ns, queue ns)`, by node.
    pub cp: Vec<(NodeId, u64, u64)>,
    /// Critical-path waits by `(caller, callee)`: the queue part, with who waited.
    pub waits: Vec<(NodeId, NodeId, u64)>,
    /// Nodes the entry request waited on synchronously (in the root's blocking subtree).
    pub reached: Vec<NodeId>,
    /// Of those, nodes with a failed span (or a failed call to them) in the trace.
    pub failed: Vec<NodeId>,
}

/// The node a span counts for when it is reached: its service, or for a client span that
/// nobody instrumented answered, the peer it called.
fn reached_node(t: &Trace, i: Ix, nodes: &mut NodeTable) -> (NodeId, Option<NodeId>) {
    let s = t.span(i);
    let own = nodes.id(NodeKey {
        ty: NodeType::Service,
        name: s.service,
    });
    let peer = waited_peer(t, i).map(|p| resolve_peer(nodes, p.node));
    (own, peer)
}

/// Reduces a trace, given its critical path (computed once by the caller, who may need it
/// too). `None` for an empty trace.
pub fn extract(t: &Trace, path: &[Segment], nodes: &mut NodeTable) -> Option<TraceFacts> {
    let root = t.main_root()?;
    let rs = t.span(root);
    let op = OpKey {
        service: nodes.id(NodeKey {
            ty: NodeType::Service,
            name: rs.service,
        }),
        name: rs.name,
    };
    let e2e_ns = match (path.first(), path.last()) {
        (Some(a), Some(b)) => b.end_ns - a.start_ns,
        _ => rs.duration_ns(),
    };
    let mut cp: Vec<(NodeId, u64, u64)> = Vec::new();
    let mut waits: Vec<(NodeId, NodeId, u64)> = Vec::new();
    for seg in path {
        let Some((key, part)) = attribute(t, seg) else {
            continue;
        };
        let node = resolve_peer(nodes, key);
        match part {
            Part::Own => cp.push((node, seg.len_ns(), 0)),
            Part::Queue => {
                cp.push((node, 0, seg.len_ns()));
                if let Some(i) = seg.span {
                    let caller = nodes.id(NodeKey {
                        ty: NodeType::Service,
                        name: t.span(i).service,
                    });
                    waits.push((caller, node, seg.len_ns()));
                }
            }
        }
    }
    cp.sort_unstable_by_key(|c| c.0);
    cp = fold(cp, |a, b| (a.0, a.1 + b.1, a.2 + b.2), |c| c.0);
    waits.sort_unstable_by_key(|w| (w.0, w.1));
    waits = fold(waits, |a, b| (a.0, a.1, a.2 + b.2), |w| (w.0, w.1));

    // The blocking subtree of the true roots: what the entry request waited on.
    let mut reached = Vec::new();
    let mut failed = Vec::new();
    let mut stack: Vec<Ix> = t
        .roots
        .iter()
        .copied()
        .filter(|&r| t.span(r).parent.is_none())
        .collect();
    while let Some(i) = stack.pop() {
        let (own, peer) = reached_node(t, i, nodes);
        let s = t.span(i);
        reached.push(own);
        if let Some(p) = peer {
            reached.push(p);
        }
        // A failure counts where it started: an erroring span none of whose blocking children
        // erred. Its callers' spans erring because of it are propagation, not failures of
        // theirs. A failed call that nobody answered is the callee's.
        let origin = s.error
            && !t
                .children(i)
                .iter()
                .any(|&c| t.span(c).error && is_blocking_child(t, i, c));
        if origin {
            failed.push(peer.unwrap_or(own));
        }
        stack.extend(
            t.children(i)
                .iter()
                .copied()
                .filter(|&c| is_blocking_child(t, i, c) && t.span(c).start_ns <= s.end_ns),
        );
    }
    reached.sort_unstable();
    reached.dedup();
    failed.sort_unstable();
    failed.dedup();
    Some(TraceFacts {
        trace_id: t.id,
        op,
        e2e_ns,
        entry_error: rs.error,
        spans: t.len() as u32,
        cp,
        waits,
        reached,
        failed,
    })
}

/// Merges adjacent items with the same key (input sorted by key).
fn fold<T: Copy, K: PartialEq>(
    v: Vec<T>,
    join: impl Fn(T, T) -> T,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        match out.last_mut() {
            Some(last) if key(last) == key(&x) => *last = join(*last, x),
            _ => out.push(x),
        }
    }
    out
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OpAgg {
    pub traces: u64,
    pub errors: u64,
    pub spans: u64,
    pub e2e: Hist,
    pub e2e_total_ns: u128,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CpAgg {
    /// Traces with the node on the critical path.
    pub traces: u64,
    pub own_ns: u128,
    pub queue_ns: u128,
    /// Per trace, the node's critical-path time (own + queue).
    pub per_trace: Hist,
}

/// Failures of a node and how often they took the entry request down with them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct FailAgg {
    pub traces_failed: u64,
    pub entry_failed_too: u64,
}

/// A sampled trace's critical path, for what-if projections.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpSample {
    pub op: OpKey,
    pub e2e_ns: u64,
    pub cp: Vec<(NodeId, u64)>,
}

/// Exemplar traces per node.
pub type Exemplars = TopK<TraceId, 3>;

/// The sums of [`TraceFacts`] over a window. Bounded: entry operations are capped at
/// [`MAX_OPS`], samples at [`FactsAgg::SAMPLES`], exemplars at three per node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FactsAgg {
    pub traces: u64,
    pub e2e_total_ns: u128,
    pub ops: FxHashMap<OpKey, OpAgg>,
    pub cp: FxHashMap<(OpKey, NodeId), CpAgg>,
    pub waits: FxHashMap<(NodeId, NodeId), u128>,
    pub reach: FxHashMap<(OpKey, NodeId), u64>,
    pub fail: FxHashMap<NodeId, FailAgg>,
    /// Traces where the node took the most critical-path time.
    pub slowest: FxHashMap<NodeId, Exemplars>,
    /// Traces where the node failed (entry failures first).
    pub failures: FxHashMap<NodeId, Exemplars>,
    pub samples: BottomK<CpSample>,
}

impl Default for FactsAgg {
    fn default() -> Self {
        FactsAgg {
            traces: 0,
            e2e_total_ns: 0,
            ops: FxHashMap::default(),
            cp: FxHashMap::default(),
            waits: FxHashMap::default(),
            reach: FxHashMap::default(),
            fail: FxHashMap::default(),
            slowest: FxHashMap::default(),
            failures: FxHashMap::default(),
            samples: BottomK::new(Self::SAMPLES),
        }
    }
}

impl FactsAgg {
    pub const SAMPLES: usize = 512;

    pub fn add(&mut self, f: &TraceFacts) {
        let op = if self.ops.len() >= MAX_OPS && !self.ops.contains_key(&f.op) {
            OpKey {
                service: f.op.service,
                name: Interner::OVERFLOW,
            }
        } else {
            f.op
        };
        self.traces += 1;
        self.e2e_total_ns += u128::from(f.e2e_ns);
        let o = self.ops.entry(op).or_default();
        o.traces += 1;
        o.errors += u64::from(f.entry_error);
        o.spans += u64::from(f.spans);
        o.e2e.record_ns(f.e2e_ns);
        o.e2e_total_ns += u128::from(f.e2e_ns);
        for &(node, own, queue) in &f.cp {
            let c = self.cp.entry((op, node)).or_default();
            c.traces += 1;
            c.own_ns += u128::from(own);
            c.queue_ns += u128::from(queue);
            c.per_trace.record_ns(own + queue);
            self.slowest
                .entry(node)
                .or_default()
                .offer(own + queue, f.trace_id);
        }
        for &(caller, callee, ns) in &f.waits {
            *self.waits.entry((caller, callee)).or_default() += u128::from(ns);
        }
        for &node in &f.reached {
            *self.reach.entry((op, node)).or_default() += 1;
        }
        for &node in &f.failed {
            let a = self.fail.entry(node).or_default();
            a.traces_failed += 1;
            a.entry_failed_too += u64::from(f.entry_error);
            self.failures
                .entry(node)
                .or_default()
                .offer(u64::from(f.entry_error), f.trace_id);
        }
        let key = f.trace_id.low_u64();
        if self.samples.wants(key) {
            self.samples.offer(
                key,
                CpSample {
                    op,
                    e2e_ns: f.e2e_ns,
                    cp: f.cp.iter().map(|&(n, a, b)| (n, a + b)).collect(),
                },
            );
        }
    }

    pub fn merge(&mut self, o: &FactsAgg) {
        self.traces += o.traces;
        self.e2e_total_ns += o.e2e_total_ns;
        for (k, v) in &o.ops {
            let m = self.ops.entry(*k).or_default();
            m.traces += v.traces;
            m.errors += v.errors;
            m.spans += v.spans;
            m.e2e.add(&v.e2e);
            m.e2e_total_ns += v.e2e_total_ns;
        }
        for (k, v) in &o.cp {
            let m = self.cp.entry(*k).or_default();
            m.traces += v.traces;
            m.own_ns += v.own_ns;
            m.queue_ns += v.queue_ns;
            m.per_trace.add(&v.per_trace);
        }
        for (k, v) in &o.waits {
            *self.waits.entry(*k).or_default() += v;
        }
        for (k, v) in &o.reach {
            *self.reach.entry(*k).or_default() += v;
        }
        for (k, v) in &o.fail {
            let m = self.fail.entry(*k).or_default();
            m.traces_failed += v.traces_failed;
            m.entry_failed_too += v.entry_failed_too;
        }
        for (k, v) in &o.slowest {
            self.slowest.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.failures {
            self.failures.entry(*k).or_default().merge(v);
        }
        self.samples.merge(&o.samples);
    }
}
