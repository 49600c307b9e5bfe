//! Per-trace facts that add up: each completed trace is reduced to its entry operation,
//! end-to-end latency, critical-path time per node, the nodes its entry request waits on
//! synchronously, and the nodes that failed in it. [`FactsAgg`] sums them; the findings are
//! computed from these sums alone, never from raw traces kept around.

use rustc_hash::FxHashMap;

use super::critical_path::{attribute, is_blocking_child, Part, Segment};
use super::node::{resolve_peer, waited_peer, NodeId, NodeTable};
use super::stats::{BottomK, TopK};
use super::tree::{Ix, Trace};
use crate::analyze::hist::Hist;
use crate::model::{stable_combine, Interner, NodeKey, SpanKind, Sym, TraceId};

/// An entry operation: the root span's service and name (`api-gateway`, `POST /checkout`).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct OpKey {
    pub service: NodeId,
    pub name: Sym,
    /// Background work (a poller, a cron job, a worker's loop), not a user request: counted
    /// apart, and never part of critical-path shares or SPOF reach.
    pub background: bool,
}

/// Entry operations kept apart; past this, new ones fold into one per service.
pub const MAX_OPS: usize = 256;

/// One trace, reduced.
#[derive(Debug, Clone)]
pub struct TraceFacts {
    pub trace_id: TraceId,
    pub op: OpKey,
    /// When the request started (its root's start, Unix ns).
    pub start_ns: u64,
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
    /// The trace's shape: a hash of the set of operations (service and span name) it
    /// reached. Requests of one entry operation and one shape did the same work, so their
    /// times compare like with like.
    pub shape: u64,
    /// The request's route: a hash of the first operation it reached in another service
    /// than the entry's (0 if none). A gateway's one entry operation (`/*`) serves many
    /// kinds of request; what it routes to tells them apart, and is decided before anything
    /// downstream can fail.
    pub route: u64,
    /// Calls between nodes made in the trace, `(caller, callee)`, once each.
    pub calls: Vec<(NodeId, NodeId)>,
    /// Services that reported spans in the trace, once each.
    pub present: Vec<NodeId>,
}

/// A kind of request: its entry operation and route (see [`TraceFacts::route`]).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ClassKey {
    pub op: OpKey,
    pub route: u64,
}

/// The node a span counts for when it is reached: its service, or for a client span that
/// nobody instrumented answered, the peer it called.
fn reached_node(t: &Trace, i: Ix, nodes: &mut NodeTable) -> (NodeId, Option<NodeId>) {
    let s = t.span(i);
    let own = nodes.id(NodeKey::service(s.service));
    // Waiting for work is not depending on the polled node for a request.
    let peer = waited_peer(t, i)
        .filter(|p| !p.idle)
        .map(|p| resolve_peer(nodes, p.node));
    (own, peer)
}

/// Whether a trace is a user request. Its root serves someone: a SERVER or CONSUMER span, a
/// span of unknown kind (converted Jaeger and Zipkin data), or a client whose call an
/// instrumented service answered (a load generator, a mobile app). Anything else is
/// background work: a poller's or worker's loop, a cron job, a blocking pop or an empty poll
/// as a trace of its own.
pub fn is_request(t: &Trace, root: Ix) -> bool {
    let s = t.span(root);
    // A poll that got nothing is waiting; one whose messages are handled under it is the
    // entry of that work.
    if s.peer.is_some_and(|p| p.idle) && t.children(root).is_empty() {
        return false;
    }
    match s.kind {
        SpanKind::Server | SpanKind::Consumer | SpanKind::Unspecified => true,
        SpanKind::Client => t.children(root).iter().any(|&c| {
            let cs = t.span(c);
            cs.service != s.service && matches!(cs.kind, SpanKind::Server | SpanKind::Unspecified)
        }),
        SpanKind::Internal | SpanKind::Producer => false,
    }
}

/// Reduces a trace, given its critical path (computed once by the caller, who may need it
/// too). `None` for an empty trace.
pub fn extract(
    t: &Trace,
    path: &[Segment],
    nodes: &mut NodeTable,
    names: &Interner,
) -> Option<TraceFacts> {
    let root = t.main_root()?;
    let rs = t.span(root);
    let op = OpKey {
        service: nodes.id(NodeKey::service(rs.service)),
        name: rs.name,
        background: !is_request(t, root),
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
                    let caller = nodes.id(NodeKey::service(t.span(i).service));
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
        // theirs. A failed call that nobody answered is the callee's; an error whose message
        // names a known backend's address (a refused connection makes no client span) is
        // that backend's, which the request needed.
        let origin = s.error
            && !t
                .children(i)
                .iter()
                .any(|&c| t.span(c).error && is_blocking_child(t, i, c));
        if origin {
            let named = || {
                s.fault_addrs
                    .iter()
                    .flatten()
                    .find_map(|a| nodes.backend_at(*a))
            };
            let blamed = match peer {
                Some(p) => p,
                None => match named() {
                    Some(b) => {
                        reached.push(b);
                        b
                    }
                    None => own,
                },
            };
            failed.push(blamed);
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
    // Hashed by name, so instances that number names differently agree on a request's
    // shape and route and their counts sum.
    let op_hash = |s: &crate::model::Span| {
        stable_combine(names.stable_hash(s.service), names.stable_hash(s.name))
    };
    let mut ops: Vec<u64> = t.spans.iter().map(op_hash).collect();
    ops.sort_unstable();
    ops.dedup();
    let shape = ops.iter().fold(0, |h, &x| stable_combine(h, x)).max(1);
    let mut calls = Vec::new();
    for i in 0..t.len() as Ix {
        let s = t.span(i);
        if let Some(p) = t.parent[i as usize] {
            let ps = t.span(p);
            if ps.service != s.service {
                calls.push((
                    nodes.id(NodeKey::service(ps.service)),
                    nodes.id(NodeKey::service(s.service)),
                ));
            }
        }
        if let Some(peer) = waited_peer(t, i).filter(|p| !p.idle) {
            calls.push((
                nodes.id(NodeKey::service(s.service)),
                resolve_peer(nodes, peer.node),
            ));
        }
    }
    calls.sort_unstable();
    calls.dedup();
    let route = t
        .preorder()
        .into_iter()
        .map(|i| t.span(i))
        .filter(|s| s.service != rs.service)
        .min_by_key(|s| s.start_ns)
        .map_or(0, |s| op_hash(s).max(1));
    let mut present: Vec<NodeId> = t
        .spans
        .iter()
        .map(|s| nodes.id(NodeKey::service(s.service)))
        .collect();
    present.sort_unstable();
    present.dedup();
    Some(TraceFacts {
        trace_id: t.id,
        op,
        start_ns: rs.start_ns,
        e2e_ns,
        entry_error: rs.error,
        spans: t.len() as u32,
        cp,
        waits,
        reached,
        failed,
        shape,
        route,
        calls,
        present,
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

impl OpAgg {
    fn merge(&mut self, v: &OpAgg) {
        self.traces += v.traces;
        self.errors += v.errors;
        self.spans += v.spans;
        self.e2e.add(&v.e2e);
        self.e2e_total_ns += v.e2e_total_ns;
    }
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

impl CpAgg {
    fn merge(&mut self, v: &CpAgg) {
        self.traces += v.traces;
        self.own_ns += v.own_ns;
        self.queue_ns += v.queue_ns;
        self.per_trace.add(&v.per_trace);
    }
}

/// Failures of a node and how often they took the entry request down with them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct FailAgg {
    pub traces_failed: u64,
    pub entry_failed_too: u64,
    /// Start of the first and of the last of those failed requests (Unix ns): when the
    /// harm began and when it was last seen. Merges by min and max.
    pub failed_between: Option<(u64, u64)>,
}

impl FailAgg {
    fn merge(&mut self, v: &FailAgg) {
        self.traces_failed += v.traces_failed;
        self.entry_failed_too += v.entry_failed_too;
        if let Some((a, b)) = v.failed_between {
            self.saw_failed_request(a);
            self.saw_failed_request(b);
        }
    }

    /// Widens [`FailAgg::failed_between`] to take in a failed request starting at `t_ns`.
    pub fn saw_failed_request(&mut self, t_ns: u64) {
        self.failed_between = Some(match self.failed_between {
            Some((a, b)) => (a.min(t_ns), b.max(t_ns)),
            None => (t_ns, t_ns),
        });
    }
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
    /// User requests (traces of background work are in `background_traces`).
    pub traces: u64,
    pub background_traces: u64,
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
    /// Requests per entry operation and shape (see [`TraceFacts::shape`]); past
    /// [`MAX_SHAPES`], new shapes fold into shape 0 of their operation.
    pub shapes: FxHashMap<(OpKey, u64), ShapeAgg>,
    /// Critical-path time per entry operation, shape and node: `(own ns, queue ns)`.
    pub shape_cp: FxHashMap<(OpKey, u64, NodeId), (u128, u128)>,
    /// Requests of each kind.
    pub classes: FxHashMap<ClassKey, u64>,
    /// Requests of each kind in which a caller called a callee.
    pub calls: FxHashMap<(ClassKey, NodeId, NodeId), u64>,
    /// Requests of each kind in which a service took part.
    pub present: FxHashMap<(ClassKey, NodeId), u64>,
    /// Entries that did not fit the bounds above (this process's count, not snapshotted).
    #[serde(skip)]
    pub dropped: u64,
}

/// Requests of one entry operation and shape.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ShapeAgg {
    pub traces: u64,
    pub e2e_ns: u128,
}

/// Shapes kept apart per window.
pub const MAX_SHAPES: usize = 4096;
/// `(operation, shape, node)` entries kept per window; past it, the rest fold into shape 0.
pub const MAX_SHAPE_NODES: usize = 65_536;
/// `(operation, caller, callee)` entries kept per window; past it, new ones are not counted.
pub const MAX_OP_CALLS: usize = 65_536;

impl Default for FactsAgg {
    fn default() -> Self {
        FactsAgg {
            traces: 0,
            background_traces: 0,
            e2e_total_ns: 0,
            ops: FxHashMap::default(),
            cp: FxHashMap::default(),
            waits: FxHashMap::default(),
            reach: FxHashMap::default(),
            fail: FxHashMap::default(),
            slowest: FxHashMap::default(),
            failures: FxHashMap::default(),
            samples: BottomK::new(Self::SAMPLES),
            shapes: FxHashMap::default(),
            shape_cp: FxHashMap::default(),
            classes: FxHashMap::default(),
            calls: FxHashMap::default(),
            present: FxHashMap::default(),
            dropped: 0,
        }
    }
}

impl FactsAgg {
    pub const SAMPLES: usize = 512;

    pub fn add(&mut self, f: &TraceFacts) {
        // Past MAX_OPS, new operations fold into one per service. Never into one for all: the
        // service says which system a request entered (see `spof`), and a flood of services
        // sharing one operation with the real ones would join them into one. Services are
        // bounded by the node table, and the memory budget folds the least-used ones.
        let op = if self.ops.len() >= MAX_OPS && !self.ops.contains_key(&f.op) {
            OpKey {
                name: Interner::OVERFLOW,
                ..f.op
            }
        } else {
            f.op
        };
        let o = self.ops.entry(op).or_default();
        o.traces += 1;
        o.errors += u64::from(f.entry_error);
        o.spans += u64::from(f.spans);
        o.e2e.record_ns(f.e2e_ns);
        o.e2e_total_ns += u128::from(f.e2e_ns);
        if op.background {
            // Shown apart; nothing a user waits on.
            self.background_traces += 1;
            return;
        }
        self.traces += 1;
        self.e2e_total_ns += u128::from(f.e2e_ns);
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
            if f.entry_error {
                a.saw_failed_request(f.start_ns);
            }
            self.failures
                .entry(node)
                .or_default()
                .offer(u64::from(f.entry_error), f.trace_id);
        }
        let shape = if self.shapes.len() >= MAX_SHAPES && !self.shapes.contains_key(&(op, f.shape))
        {
            0
        } else {
            f.shape
        };
        let sh = self.shapes.entry((op, shape)).or_default();
        sh.traces += 1;
        sh.e2e_ns += u128::from(f.e2e_ns);
        for &(node, own, queue) in &f.cp {
            self.add_shape_cp((op, shape, node), (u128::from(own), u128::from(queue)));
        }
        let class = ClassKey { op, route: f.route };
        self.dropped += add_bounded(&mut self.classes, class, 1, MAX_OP_CALLS);
        if self.classes.contains_key(&class) {
            for &(a, b) in &f.calls {
                self.dropped += add_bounded(&mut self.calls, (class, a, b), 1, MAX_OP_CALLS);
            }
            for &n in &f.present {
                self.dropped += add_bounded(&mut self.present, (class, n), 1, MAX_OP_CALLS);
            }
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

    fn add_shape_cp(&mut self, k: (OpKey, u64, NodeId), v: (u128, u128)) {
        let k = if self.shape_cp.len() >= MAX_SHAPE_NODES && !self.shape_cp.contains_key(&k) {
            (k.0, 0, k.2)
        } else {
            k
        };
        let e = self.shape_cp.entry(k).or_default();
        e.0 += v.0;
        e.1 += v.1;
    }

    pub fn merge(&mut self, o: &FactsAgg) {
        self.traces += o.traces;
        self.background_traces += o.background_traces;
        self.e2e_total_ns += o.e2e_total_ns;
        for (k, v) in &o.ops {
            self.ops.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.cp {
            self.cp.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.waits {
            *self.waits.entry(*k).or_default() += v;
        }
        for (k, v) in &o.reach {
            *self.reach.entry(*k).or_default() += v;
        }
        for (k, v) in &o.fail {
            self.fail.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.slowest {
            self.slowest.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.failures {
            self.failures.entry(*k).or_default().merge(v);
        }
        self.samples.merge(&o.samples);
        self.dropped += o.dropped;
        self.merge_shapes(o, &|n| n, &|op| *op);
    }

    fn merge_shapes(
        &mut self,
        o: &FactsAgg,
        f: &impl Fn(NodeId) -> NodeId,
        op: &impl Fn(&OpKey) -> OpKey,
    ) {
        for ((k, shape), v) in &o.shapes {
            let shape =
                if self.shapes.len() >= MAX_SHAPES && !self.shapes.contains_key(&(op(k), *shape)) {
                    0
                } else {
                    *shape
                };
            let e = self.shapes.entry((op(k), shape)).or_default();
            e.traces += v.traces;
            e.e2e_ns += v.e2e_ns;
        }
        for ((k, shape, n), v) in &o.shape_cp {
            let shape = if self.shapes.contains_key(&(op(k), *shape)) {
                *shape
            } else {
                0
            };
            self.add_shape_cp((op(k), shape, f(*n)), *v);
        }
        let class = |c: &ClassKey| ClassKey {
            op: op(&c.op),
            route: c.route,
        };
        for (k, v) in &o.classes {
            self.dropped += add_bounded(&mut self.classes, class(k), *v, MAX_OP_CALLS);
        }
        for ((k, a, b), v) in &o.calls {
            self.dropped +=
                add_bounded(&mut self.calls, (class(k), f(*a), f(*b)), *v, MAX_OP_CALLS);
        }
        for ((k, n), v) in &o.present {
            self.dropped += add_bounded(&mut self.present, (class(k), f(*n)), *v, MAX_OP_CALLS);
        }
    }

    /// Approximate heap bytes held (for the memory budget): entries of every map at their
    /// key and value sizes, plus histograms' buckets and samples' paths.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        // A hash map entry costs its key and value plus about a word of control data.
        fn map<K, V>(m: &FxHashMap<K, V>) -> usize {
            m.capacity() * (size_of::<K>() + size_of::<V>() + 8)
        }
        map(&self.ops)
            + self.ops.values().map(|o| o.e2e.heap_bytes()).sum::<usize>()
            + map(&self.cp)
            + self
                .cp
                .values()
                .map(|c| c.per_trace.heap_bytes())
                .sum::<usize>()
            + map(&self.waits)
            + map(&self.reach)
            + map(&self.fail)
            + map(&self.slowest)
            + self.slowest.len() * 3 * size_of::<(u64, TraceId)>()
            + map(&self.failures)
            + self.failures.len() * 3 * size_of::<(u64, TraceId)>()
            + self
                .samples
                .items()
                .map(|s| size_of::<CpSample>() + s.cp.capacity() * size_of::<(NodeId, u64)>())
                .sum::<usize>()
            + map(&self.shapes)
            + map(&self.shape_cp)
            + map(&self.classes)
            + map(&self.calls)
            + map(&self.present)
    }

    /// The same sums with nodes renamed by `f`. Where several nodes become one, the sums of
    /// time add exactly; counts of traces (on the path, reaching, failing) add too, capped at
    /// the operation's traces: exact when each trace touched one of them (replicas used
    /// interchangeably), an upper bound otherwise.
    pub fn remap(&self, f: &impl Fn(NodeId) -> NodeId) -> FactsAgg {
        let op = |k: &OpKey| OpKey {
            service: f(k.service),
            ..*k
        };
        let mut out = FactsAgg {
            traces: self.traces,
            background_traces: self.background_traces,
            e2e_total_ns: self.e2e_total_ns,
            samples: self.samples.map(|s| {
                let mut cp: Vec<(NodeId, u64)> = s.cp.iter().map(|&(n, t)| (f(n), t)).collect();
                cp.sort_unstable_by_key(|c| c.0);
                CpSample {
                    op: op(&s.op),
                    e2e_ns: s.e2e_ns,
                    cp: fold(cp, |a, b| (a.0, a.1 + b.1), |c| c.0),
                }
            }),
            ..FactsAgg::default()
        };
        for (k, v) in &self.ops {
            out.ops.entry(op(k)).or_default().merge(v);
        }
        let cap = |o: &OpKey| out.ops.get(o).map_or(u64::MAX, |a| a.traces);
        let mut cp: FxHashMap<(OpKey, NodeId), CpAgg> = FxHashMap::default();
        for ((o, n), v) in &self.cp {
            cp.entry((op(o), f(*n))).or_default().merge(v);
        }
        for ((o, _), v) in cp.iter_mut() {
            v.traces = v.traces.min(cap(o));
        }
        let mut reach: FxHashMap<(OpKey, NodeId), u64> = FxHashMap::default();
        for ((o, n), v) in &self.reach {
            *reach.entry((op(o), f(*n))).or_default() += v;
        }
        for ((o, _), v) in reach.iter_mut() {
            *v = (*v).min(cap(o));
        }
        out.cp = cp;
        out.reach = reach;
        for ((a, b), v) in &self.waits {
            *out.waits.entry((f(*a), f(*b))).or_default() += v;
        }
        for (k, v) in &self.fail {
            out.fail.entry(f(*k)).or_default().merge(v);
        }
        for a in out.fail.values_mut() {
            a.traces_failed = a.traces_failed.min(out.traces);
            a.entry_failed_too = a.entry_failed_too.min(a.traces_failed);
        }
        for (k, v) in &self.slowest {
            out.slowest.entry(f(*k)).or_default().merge(v);
        }
        for (k, v) in &self.failures {
            out.failures.entry(f(*k)).or_default().merge(v);
        }
        out.dropped += self.dropped;
        out.merge_shapes(self, f, &op);
        let classes = out.classes.clone();
        let cap = |c: &ClassKey| classes.get(c).copied().unwrap_or(u64::MAX);
        for ((c, _, _), v) in out.calls.iter_mut() {
            *v = (*v).min(cap(c));
        }
        for ((c, _), v) in out.present.iter_mut() {
            *v = (*v).min(cap(c));
        }
        out
    }
}

/// Adds to a bounded map: past `max` keys, new keys are not kept.
/// Adds `v` at `k` unless that would take the map past `max` entries; returns 1 if it did
/// not fit (for the drop count), else 0.
fn add_bounded<K: std::hash::Hash + Eq>(
    m: &mut FxHashMap<K, u64>,
    k: K,
    v: u64,
    max: usize,
) -> u64 {
    if let Some(e) = m.get_mut(&k) {
        *e += v;
    } else if m.len() < max {
        m.insert(k, v);
    } else {
        return 1;
    }
    0
}
