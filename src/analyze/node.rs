//! The nodes of the graph: a dense [`NodeId`] per [`NodeKey`] within one engine, bounded by
//! [`NodeTable`], and which node a span's peer is. Per-trace facts and the graph both name
//! nodes this way, so this sits below both.

use rustc_hash::FxHashMap;

use super::tree::{Ix, Trace};
use crate::model::{NodeKey, NodeType, Peer, SpanKind, Sym};

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
    /// Raw backends (databases, brokers seen only as an address) by their address, so an
    /// error message that names an address can be pinned on the backend it names.
    by_address: FxHashMap<Sym, NodeId>,
    max_nodes: usize,
    pub overflowed: u64,
}

impl NodeTable {
    /// The node everything past the limit folds into.
    pub const OVERFLOW: NodeId = NodeId(0);

    pub fn new(max_nodes: usize) -> Self {
        let overflow = NodeKey::named(NodeType::External, crate::model::Interner::OVERFLOW);
        let mut ids = FxHashMap::default();
        ids.insert(overflow, Self::OVERFLOW);
        NodeTable {
            keys: vec![overflow],
            ids,
            by_address: FxHashMap::default(),
            max_nodes: max_nodes.max(2),
            overflowed: 0,
        }
    }

    pub fn id(&mut self, key: NodeKey) -> NodeId {
        self.id_within(key, self.max_nodes)
    }

    /// The id of a name that resolution gave a group of raw nodes already in the table.
    /// Such names may take the table up to twice its bound: there are never more of them
    /// than raw nodes, and a table filled by a flood must not fold a real database, first
    /// named after the flood began, into the overflow node.
    pub fn id_resolved(&mut self, key: NodeKey) -> NodeId {
        self.id_within(key, self.max_nodes.saturating_mul(2))
    }

    fn id_within(&mut self, key: NodeKey, max: usize) -> NodeId {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        if self.keys.len() >= max {
            self.overflowed += 1;
            return Self::OVERFLOW;
        }
        let id = NodeId(self.keys.len() as u32);
        self.keys.push(key);
        self.ids.insert(key, id);
        if key.system.is_some() && matches!(key.ty, NodeType::Database | NodeType::Messaging) {
            self.by_address.entry(key.name).or_insert(id);
        }
        id
    }

    /// The raw backend whose address is `address`, if callers' spans have shown one.
    pub fn backend_at(&self, address: Sym) -> Option<NodeId> {
        self.by_address.get(&address).copied()
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

    /// The key of a node; an id this table never gave out (a damaged snapshot) reads as the
    /// overflow node rather than panicking.
    pub fn key(&self, id: NodeId) -> NodeKey {
        self.keys
            .get(id.0 as usize)
            .copied()
            .unwrap_or(self.keys[Self::OVERFLOW.0 as usize])
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
        if let Some(id) = nodes.get(&NodeKey::service(key.name)) {
            return id;
        }
    }
    nodes.id(key)
}

/// The uninstrumented peer span `i` waited on, if any: a broker is always on the path of a
/// producer or consumer; a database or HTTP peer only when no instrumented server answered
/// the call.
pub fn waited_peer(t: &Trace, i: Ix) -> Option<Peer> {
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
