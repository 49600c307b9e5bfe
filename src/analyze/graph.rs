//! The service call graph: per-trace facts folded into mergeable per-node and per-edge
//! aggregates.
//!
//! Edges come from
//! - a client-like span and its server child in another service (or, with kinds missing, any
//!   parent/child pair across services, as Jaeger draws them);
//! - a client span with no instrumented child, to the database or external peer it names;
//! - messaging: producer → broker → consumer when the broker is known (`messaging.system` or
//!   the peer a producer names), producer → consumer directly otherwise, with the queue delay
//!   (consumer start − producer end) on the hop into the consumer.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use super::critical_path::Segment;
use super::facts::{extract, FactsAgg};
use super::stats::Moments;
use super::tree::{Ix, Trace};
use crate::hist::Hist;
use crate::model::{NodeKey, NodeType, Span, SpanKind, Sym};

/// Dense id of a graph node within one engine.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub u32);

/// Node keys ↔ dense ids. Bounded: past `max_nodes`, new nodes fold into one overflow node
/// (id 0, named like the interner's overflow symbol, and counted), so a flood of distinct
/// peer names cannot grow the graph without limit, nor be credited to a real node.
#[derive(Debug)]
pub struct NodeTable {
    keys: Vec<NodeKey>,
    ids: FxHashMap<NodeKey, NodeId>,
    max_nodes: usize,
    pub overflowed: u64,
}

impl NodeTable {
    /// The node everything past the limit folds into.
    pub const OVERFLOW: NodeId = NodeId(0);

    pub fn new(max_nodes: usize) -> Self {
        let overflow = NodeKey {
            ty: NodeType::External,
            name: crate::model::Interner::OVERFLOW,
        };
        let mut ids = FxHashMap::default();
        ids.insert(overflow, Self::OVERFLOW);
        NodeTable {
            keys: vec![overflow],
            ids,
            max_nodes: max_nodes.max(2),
            overflowed: 0,
        }
    }

    pub fn id(&mut self, key: NodeKey) -> NodeId {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        if self.keys.len() >= self.max_nodes {
            self.overflowed += 1;
            return Self::OVERFLOW;
        }
        let id = NodeId(self.keys.len() as u32);
        self.keys.push(key);
        self.ids.insert(key, id);
        id
    }

    pub fn get(&self, key: &NodeKey) -> Option<NodeId> {
        self.ids.get(key).copied()
    }

    /// All keys in id order (for snapshots).
    pub fn keys(&self) -> &[NodeKey] {
        &self.keys
    }

    /// Rebuilds a table from [`NodeTable::keys`]: the same keys get the same ids.
    pub fn from_keys(keys: &[NodeKey], max_nodes: usize) -> Self {
        let mut me = NodeTable::new(max_nodes.max(keys.len()));
        for k in keys.iter().skip(1) {
            me.id(*k);
        }
        me
    }

    pub fn key(&self, id: NodeId) -> NodeKey {
        self.keys[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The node a peer is: an "external" peer named like a known service *is* that service (a
/// call that was refused before any server span existed, say).
pub fn resolve_peer(nodes: &mut NodeTable, key: NodeKey) -> NodeId {
    if key.ty == NodeType::External {
        if let Some(id) = nodes.get(&NodeKey {
            ty: NodeType::Service,
            name: key.name,
        }) {
            return id;
        }
    }
    nodes.id(key)
}

/// The uninstrumented peer span `i` waited on, if any: a broker is always on the path of a
/// producer or consumer; a database or HTTP peer only when no instrumented server answered
/// the call.
pub fn waited_peer(t: &Trace, i: Ix) -> Option<crate::model::Peer> {
    let s = t.span(i);
    let peer = s.peer?;
    let answered = peer.node.ty != NodeType::Messaging
        && t.children(i).iter().any(|&c| {
            let cs = t.span(c);
            cs.service != s.service || matches!(cs.kind, SpanKind::Server | SpanKind::Consumer)
        });
    let waits = matches!(s.kind, SpanKind::Client | SpanKind::Producer)
        || (s.kind == SpanKind::Unspecified && peer.node.ty != NodeType::Messaging);
    (!answered && waits).then_some(peer)
}

/// How a caller reaches a callee; the names are those of Grafana's service graph
/// (`connection_type` label).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ConnType {
    /// Synchronous request/response between instrumented services.
    Sync,
    /// Producer → broker, broker → consumer, or producer → consumer.
    Messaging,
    /// Client span to a database seen only from the caller.
    Database,
    /// Client span to an uninstrumented peer.
    Virtual,
}

impl ConnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnType::Sync => "",
            ConnType::Messaging => "messaging_system",
            ConnType::Database => "database",
            ConnType::Virtual => "virtual_node",
        }
    }
}

#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EdgeKey {
    pub from: NodeId,
    pub to: NodeId,
    pub conn: ConnType,
}

/// Distinct instances of a node, bounded. Observations without identity are counted apart:
/// a node seen only without identity has *unknown* redundancy, not one instance.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct InstanceSet {
    pub known: BTreeSet<Sym>,
    /// More distinct instances were seen than the set keeps.
    pub overflow: bool,
    pub unknown_observations: u64,
}

impl InstanceSet {
    pub const MAX: usize = 256;

    pub fn observe(&mut self, instance: Option<Sym>) {
        match instance {
            None => self.unknown_observations += 1,
            Some(i) => {
                if self.known.len() < Self::MAX {
                    self.known.insert(i);
                } else if !self.known.contains(&i) {
                    self.overflow = true;
                }
            }
        }
    }

    pub fn merge(&mut self, other: &InstanceSet) {
        for i in &other.known {
            self.observe(Some(*i));
        }
        self.overflow |= other.overflow;
        self.unknown_observations += other.unknown_observations;
    }

    /// Distinct instances seen, or `None` when no observation carried an identity.
    pub fn count(&self) -> Option<usize> {
        (!self.known.is_empty()).then_some(self.known.len())
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeAgg {
    /// Spans the node reported itself (services only).
    pub spans: u64,
    /// Of those, spans marked as errors, wherever in the request they are.
    pub span_errors: u64,
    /// Requests into the node: server and consumer spans and roots for services; client spans
    /// reaching it for virtual nodes.
    pub requests: u64,
    pub errors: u64,
    /// Request latency: server-side duration for services, client-side for virtual nodes.
    pub latency: Hist,
    /// Per request, time spent in the service's own spans, excluding time waiting on callees.
    pub self_time: Hist,
    pub instances: InstanceSet,
    /// Requests and their summed latency per [`LOAD_BUCKET_NS`] of span time, for
    /// latency-versus-load (saturation); the last [`MAX_LOAD_BUCKETS`] are kept.
    pub load: BTreeMap<u64, (u64, u64)>,
}

/// Width of a load bucket.
pub const LOAD_BUCKET_NS: u64 = 10_000_000_000;
/// Load buckets kept per node (two hours).
pub const MAX_LOAD_BUCKETS: usize = 720;

impl NodeAgg {
    fn record_load(&mut self, t_ns: u64, latency_ns: u64) {
        let e = self.load.entry(t_ns / LOAD_BUCKET_NS).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(latency_ns);
        while self.load.len() > MAX_LOAD_BUCKETS {
            self.load.pop_first();
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeAgg {
    pub calls: u64,
    pub errors: u64,
    /// Duration of the caller's span (client or producer).
    pub client: Hist,
    /// Duration of the callee's span (server or consumer), when instrumented.
    pub server: Hist,
    /// Messaging only: consumer start − producer end.
    pub queue: Hist,
    /// Messaging only: queue delay (ms) against time (s), for its trend.
    pub queue_trend: Moments,
    /// Sync only: client duration − server duration, the wait outside the callee's span.
    pub gap: Hist,
}

/// The graph of one window (or of several, merged). Everything in it adds up.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GraphAgg {
    /// Earliest span start and latest span end seen (Unix ns); `start_ns > end_ns` when empty.
    pub start_ns: u64,
    pub end_ns: u64,
    pub traces: u64,
    pub spans: u64,
    pub fragmented_traces: u64,
    pub nodes: FxHashMap<NodeId, NodeAgg>,
    pub edges: FxHashMap<EdgeKey, EdgeAgg>,
    /// Critical path, reach and failure sums, for the findings.
    pub facts: FactsAgg,
}

impl Default for GraphAgg {
    fn default() -> Self {
        GraphAgg {
            start_ns: u64::MAX,
            end_ns: 0,
            traces: 0,
            spans: 0,
            fragmented_traces: 0,
            nodes: FxHashMap::default(),
            edges: FxHashMap::default(),
            facts: FactsAgg::default(),
        }
    }
}

impl GraphAgg {
    pub fn merge(&mut self, other: &GraphAgg) {
        self.merge_graph(other);
        self.facts.merge(&other.facts);
    }

    /// Merges counts, nodes and edges but not the findings facts.
    pub fn merge_graph(&mut self, other: &GraphAgg) {
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        self.traces += other.traces;
        self.spans += other.spans;
        self.fragmented_traces += other.fragmented_traces;
        for (id, n) in &other.nodes {
            let m = self.nodes.entry(*id).or_default();
            m.spans += n.spans;
            m.span_errors += n.span_errors;
            m.requests += n.requests;
            m.errors += n.errors;
            m.latency.add(&n.latency);
            m.self_time.add(&n.self_time);
            m.instances.merge(&n.instances);
            for (b, (c, sum)) in &n.load {
                let e = m.load.entry(*b).or_default();
                e.0 += c;
                e.1 = e.1.saturating_add(*sum);
            }
            while m.load.len() > MAX_LOAD_BUCKETS {
                m.load.pop_first();
            }
        }
        for (k, e) in &other.edges {
            let m = self.edges.entry(*k).or_default();
            m.calls += e.calls;
            m.errors += e.errors;
            m.client.add(&e.client);
            m.server.add(&e.server);
            m.queue.add(&e.queue);
            m.queue_trend.merge(&e.queue_trend);
            m.gap.add(&e.gap);
        }
    }

    fn edge(&mut self, from: NodeId, to: NodeId, conn: ConnType) -> &mut EdgeAgg {
        self.edges.entry(EdgeKey { from, to, conn }).or_default()
    }

    /// Folds one trace (and its critical path) into the graph.
    pub fn add_trace(&mut self, t: &Trace, path: &[Segment], nodes: &mut NodeTable) {
        self.traces += 1;
        self.spans += t.len() as u64;
        for s in &t.spans {
            self.start_ns = self.start_ns.min(s.start_ns);
            self.end_ns = self.end_ns.max(s.end_ns);
        }
        if t.fragmented {
            self.fragmented_traces += 1;
        }
        // Each span belongs to the request (entry span) of its service that it runs under;
        // parents come before children in preorder, so the owner is known when needed.
        let mut owner: Vec<Ix> = vec![0; t.len()];
        // (owner, start, end, is a waiting interval)
        let mut local: Vec<(Ix, u64, u64, bool)> = Vec::with_capacity(t.len());
        for i in t.preorder() {
            let s = t.span(i);
            let node = nodes.id(NodeKey {
                ty: NodeType::Service,
                name: s.service,
            });
            let parent = t.parent[i as usize];
            let server_kind = matches!(s.kind, SpanKind::Server | SpanKind::Consumer);
            let is_entry = match parent {
                // A fragment's orphan is not a request unless it says it serves one.
                None => s.parent.is_none() || server_kind,
                Some(p) => server_kind || t.span(p).service != s.service,
            };
            owner[i as usize] = match parent {
                Some(p) if !is_entry => owner[p as usize],
                _ => i,
            };
            let n = self.nodes.entry(node).or_default();
            n.instances.observe(s.instance);
            n.spans += 1;
            n.span_errors += u64::from(s.error);
            if is_entry {
                n.requests += 1;
                n.errors += u64::from(s.error);
                n.latency.record_ns(s.duration_ns());
                n.record_load(s.start_ns, s.duration_ns());
            }
            let own = owner[i as usize];
            local.push((own, s.start_ns, s.end_ns, false));
            // Waiting: a client span's whole life; without kinds, the time a child in another
            // service runs.
            if matches!(s.kind, SpanKind::Client | SpanKind::Producer) {
                local.push((own, s.start_ns, s.end_ns, true));
            } else {
                for &c in t.children(i) {
                    let cs = t.span(c);
                    if cs.service != s.service {
                        let (a, b) = (cs.start_ns.max(s.start_ns), cs.end_ns.min(s.end_ns));
                        if b > a {
                            local.push((own, a, b, true));
                        }
                    }
                }
            }
            self.span_edges(t, i, node, nodes);
        }
        // Self time per request: time some span of the request is running locally, minus the
        // time one of its client spans is waiting on a callee. Internal spans that overlap a
        // call (async frameworks) are not counted twice.
        local.sort_unstable();
        for group in local.chunk_by(|a, b| a.0 == b.0) {
            let all = union_ns(group.iter().filter(|g| !g.3).map(|g| (g.1, g.2)));
            let waiting = union_ns(group.iter().filter(|g| g.3).map(|g| (g.1, g.2)));
            let entry = t.span(group[0].0);
            let node = nodes.id(NodeKey {
                ty: NodeType::Service,
                name: entry.service,
            });
            if let Some(n) = self.nodes.get_mut(&node) {
                n.self_time.record_ns(all.saturating_sub(waiting));
            }
        }
        if let Some(f) = extract(t, path, nodes) {
            self.facts.add(&f);
        }
    }

    /// The edges span `i` (in service node `node`) takes part in as the callee side, plus
    /// the virtual edges it makes as an unresolved client.
    fn span_edges(&mut self, t: &Trace, i: Ix, node: NodeId, nodes: &mut NodeTable) {
        let s = t.span(i);
        let parent = t.parent[i as usize];
        // Messaging: into a consumer.
        if s.kind == SpanKind::Consumer {
            let producer = parent
                .filter(|&p| t.span(p).kind == SpanKind::Producer)
                .or_else(|| linked_producer(t, s));
            let broker = s
                .peer
                .filter(|p| p.node.ty == NodeType::Messaging)
                .or_else(|| producer.and_then(|p| t.span(p).peer))
                .filter(|p| p.node.ty == NodeType::Messaging);
            let from = match (broker, producer) {
                (Some(b), _) => Some(nodes.id(b.node)),
                (None, Some(p)) => Some(nodes.id(NodeKey {
                    ty: NodeType::Service,
                    name: t.span(p).service,
                })),
                (None, None) => None,
            };
            if let Some(from) = from {
                let e = self.edge(from, node, ConnType::Messaging);
                e.calls += 1;
                e.errors += u64::from(s.error);
                e.server.record_ns(s.duration_ns());
                if let Some(p) = producer {
                    let delay = s.start_ns.saturating_sub(t.span(p).end_ns);
                    e.queue.record_ns(delay);
                    e.queue_trend
                        .add(s.start_ns as f64 / 1e9, delay as f64 / 1e6);
                }
            }
            return;
        }
        // Synchronous: a server (or cross-service) child of this span's parent.
        if let Some(p) = parent {
            let ps = t.span(p);
            let crosses = ps.service != s.service;
            let rpc_pair = ps.kind == SpanKind::Client && s.kind == SpanKind::Server;
            if (crosses || rpc_pair) && ps.kind != SpanKind::Producer {
                let from = nodes.id(NodeKey {
                    ty: NodeType::Service,
                    name: ps.service,
                });
                let client_like = t.is_client_like(p);
                let e = self.edge(from, node, ConnType::Sync);
                e.calls += 1;
                e.errors += u64::from(s.error);
                e.server.record_ns(s.duration_ns());
                if client_like {
                    e.client.record_ns(ps.duration_ns());
                    e.gap
                        .record_ns(ps.duration_ns().saturating_sub(s.duration_ns()));
                }
            }
        }
        let Some(peer) = waited_peer(t, i) else {
            return;
        };
        let conn = match peer.node.ty {
            NodeType::Database => ConnType::Database,
            NodeType::Messaging => ConnType::Messaging,
            _ => ConnType::Virtual,
        };
        let to = resolve_peer(nodes, peer.node);
        let e = self.edge(node, to, conn);
        e.calls += 1;
        e.errors += u64::from(s.error);
        e.client.record_ns(s.duration_ns());
        let is_service = nodes.key(to).ty == NodeType::Service;
        let v = self.nodes.entry(to).or_default();
        v.requests += 1;
        v.errors += u64::from(s.error);
        // A call to a service that never answered: a request it failed, but neither its
        // latency nor an instance of it.
        if !is_service {
            v.latency.record_ns(s.duration_ns());
            v.instances.observe(peer.address);
            v.record_load(s.start_ns, s.duration_ns());
        }
    }
}

/// A producer span in the same trace that a consumer links to.
fn linked_producer(t: &Trace, s: &Span) -> Option<Ix> {
    s.links.iter().find_map(|l| {
        if l.trace_id != t.id {
            return None;
        }
        t.index_of(l.span_id)
            .filter(|&j| t.span(j).kind == SpanKind::Producer)
    })
}

/// Total length of the union of intervals given in ascending order of start.
fn union_ns(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut total = 0u64;
    let mut cur: Option<(u64, u64)> = None;
    for (a, b) in intervals {
        match &mut cur {
            Some((_, ce)) if a <= *ce => *ce = (*ce).max(b),
            _ => {
                if let Some((cs, ce)) = cur {
                    total += ce - cs;
                }
                cur = Some((a, b));
            }
        }
    }
    total + cur.map_or(0, |(a, b)| b - a)
}
