//! Which raw backends are one node, and what users call it.
//!
//! Callers often name a database, cache or broker by nothing but its system and an address
//! (`db.system = postgresql`, `server.address = billing-pg-2`). Naming the node after the
//! system would make every PostgreSQL one node, and two single-server databases would look
//! like one database with two instances. Instead the normalizer keys such a backend by its
//! address (a *raw* node), and this module groups raw nodes into what callers use
//! **interchangeably**:
//!
//! - addresses over which one caller spreads the same request (the same statement, operation
//!   and table, or destination: round robin, by hash) are replicas of one node: their usage
//!   profiles overlap by at least [`REPLICA_OVERLAP`], or one request is a large part
//!   ([`SHARED_REQUEST`]) of both;
//! - one address is one server, whatever it was used as (Redis as a cache and as a queue);
//! - calls that named only the system and no address belong to the one group of that system,
//!   when there is exactly one.
//!
//! A group is named by the database name its callers gave (`orders (postgresql)`), else by
//! what its addresses share (`billing-pg-1`, `billing-pg-2` → `billing-pg`), with the system
//! in parentheses: `billing-pg (postgresql)`. Two groups never share a name.
//!
//! Grouping reads only the mergeable usage counts, so it is recomputed from the aggregates
//! whenever they are shown, and windows keep raw nodes: evidence that arrives later can still
//! join two groups without rewriting history.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::graph::GraphAgg;
use super::node::{NodeId, NodeTable};
use crate::model::{Interner, NodeKey, NodeType, Sym};

/// How much of two addresses' usage (share of each one's calls, per caller and request) must
/// be the same for them to be replicas. Replicas behind round robin share nearly all of it;
/// two databases that only share a health check (`SELECT 1`) share little.
pub const REPLICA_OVERLAP: f64 = 0.5;
/// Or: one request that makes up this much of both addresses' calls, spread over both
/// (a statement routed by key over a Cassandra ring, whose nodes also serve other tables).
/// A health check is a small part of a working database's calls.
pub const SHARED_REQUEST: f64 = 0.2;
/// Fewer calls than this say nothing about how an address is used.
pub const THIN_CALLS: u64 = 5;
/// Addresses of one use (a caller, a statement) compared pairwise for replicas, the busiest
/// first: more than any replica set, few enough that the pairs stay cheap.
pub const MAX_PEERS_PER_USE: usize = 256;

/// Raw node → the node it is part of. Nodes not in the map are themselves.
#[derive(Debug, Default, Clone)]
pub struct Resolution {
    map: FxHashMap<NodeId, NodeId>,
}

impl Resolution {
    pub fn node(&self, n: NodeId) -> NodeId {
        self.map.get(&n).copied().unwrap_or(n)
    }

    /// Like [`Resolution::apply`], consuming `g`: no copy when there is nothing to rename.
    pub fn apply_owned(&self, g: GraphAgg) -> GraphAgg {
        if self.map.is_empty() {
            return g;
        }
        g.remap(|n| self.node(n))
    }

    /// `g` with its raw nodes replaced by the nodes they are part of.
    pub fn apply(&self, g: &GraphAgg) -> GraphAgg {
        if self.map.is_empty() {
            return g.clone();
        }
        g.remap(|n| self.node(n))
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        // The smaller index is the root, so the result does not depend on the order of unions.
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        self.0[hi] = lo;
    }
}

/// Groups the raw nodes of `aggs` (all windows that will be shown together, so that they
/// agree) and registers the resulting nodes in `nodes`.
pub fn resolve(aggs: &[&GraphAgg], nodes: &mut NodeTable, names: &mut Interner) -> Resolution {
    // Raw nodes with their requests per type, in a deterministic order (by name, not id).
    let mut requests: BTreeMap<NodeId, u64> = BTreeMap::new();
    for g in aggs {
        for (id, n) in &g.nodes {
            if nodes.key(*id).is_raw() {
                *requests.entry(*id).or_default() += n.requests;
            }
        }
    }
    if requests.is_empty() {
        return Resolution::default();
    }
    let mut raw: Vec<NodeId> = requests.keys().copied().collect();
    raw.sort_by(|a, b| {
        let (ka, kb) = (nodes.key(*a), nodes.key(*b));
        let sys = |k: NodeKey| k.system.map_or("", |s| names.resolve(s));
        (sys(ka), names.resolve(ka.name), ka.ty).cmp(&(sys(kb), names.resolve(kb.name), kb.ty))
    });
    let index: FxHashMap<NodeId, usize> = raw.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut uf = UnionFind((0..raw.len()).collect());
    let keys: Vec<NodeKey> = raw.iter().map(|n| nodes.key(*n)).collect();
    let key = |i: usize| keys[i];
    let has_address = |k: NodeKey| k.system != Some(k.name);

    // One address is one server, whatever it was used as.
    let mut by_address: BTreeMap<Sym, usize> = BTreeMap::new();
    for i in 0..raw.len() {
        let k = key(i);
        if has_address(k) {
            match by_address.get(&k.name) {
                Some(&j) => uf.union(i, j),
                None => {
                    by_address.insert(k.name, i);
                }
            }
        }
    }

    // Replicas: addresses whose usage profiles overlap.
    let mut by_use: BTreeMap<(NodeId, u64), FxHashMap<usize, u64>> = BTreeMap::new();
    let mut totals = vec![0u64; raw.len()];
    for g in aggs {
        for (k, c) in &g.usage {
            if let Some(&i) = index.get(&k.peer) {
                totals[i] += c;
                *by_use
                    .entry((k.caller, k.usage))
                    .or_default()
                    .entry(i)
                    .or_default() += c;
            }
        }
    }
    // Pairs are compared among a use's busiest addresses only: a flood of distinct addresses
    // behind one use made every refresh compare tens of millions of pairs (gigabytes, and
    // seconds), and replicas that share a use are never that many.
    let usage: Vec<Vec<(usize, u64)>> = by_use
        .into_values()
        .map(|m| {
            let mut v: Vec<(usize, u64)> = m.into_iter().collect();
            v.sort_unstable_by_key(|&(i, c)| (std::cmp::Reverse(c), i));
            v.truncate(MAX_PEERS_PER_USE);
            v.sort_unstable();
            v
        })
        .collect();
    let mut overlap: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for users in &usage {
        for (x, &(a, ca)) in users.iter().enumerate() {
            for &(b, cb) in &users[x + 1..] {
                let share = |c: u64, i: usize| c as f64 / totals[i].max(1) as f64;
                let pair = if a < b { (a, b) } else { (b, a) };
                let common = share(ca, a).min(share(cb, b));
                let o = overlap.entry(pair).or_default();
                *o += common;
                if common >= SHARED_REQUEST {
                    // Counts as replicas on its own.
                    *o += REPLICA_OVERLAP;
                }
            }
        }
    }
    for ((a, b), o) in overlap {
        let (ka, kb) = (key(a), key(b));
        if o >= REPLICA_OVERLAP && ka.system == kb.system && ka.label == kb.label {
            uf.union(a, b);
        }
    }

    // An address called too rarely to show how it is used, under a database name that a
    // well-evidenced group carries, is more of that group (a keyspace's nodes that one odd
    // statement happened to reach): nothing says it is something else.
    let mut group_calls: BTreeMap<usize, u64> = BTreeMap::new();
    for i in 0..raw.len() {
        *group_calls.entry(uf.find(i)).or_default() += requests[&raw[i]];
    }
    let mut best_labelled: BTreeMap<(Option<Sym>, Sym), (u64, usize)> = BTreeMap::new();
    for i in 0..raw.len() {
        let k = key(i);
        let root = uf.find(i);
        let calls = group_calls[&root];
        if let (Some(label), true) = (k.label, calls >= THIN_CALLS) {
            let e = best_labelled
                .entry((k.system, label))
                .or_insert((calls, root));
            if calls > e.0 {
                *e = (calls, root);
            }
        }
    }
    for i in 0..raw.len() {
        let k = key(i);
        if group_calls[&uf.find(i)] >= THIN_CALLS {
            continue;
        }
        if let Some(&(_, root)) = k.label.and_then(|l| best_labelled.get(&(k.system, l))) {
            uf.union(i, root);
        }
    }

    // Calls that named only the system go to its one group, if it has exactly one.
    let mut groups_of_system: BTreeMap<Sym, Vec<usize>> = BTreeMap::new();
    for i in 0..raw.len() {
        let k = key(i);
        if has_address(k) {
            let root = uf.find(i);
            let v = groups_of_system
                .entry(k.system.unwrap_or(k.name))
                .or_default();
            if !v.contains(&root) {
                v.push(root);
            }
        }
    }
    for i in 0..raw.len() {
        let k = key(i);
        if !has_address(k) {
            if let Some([only]) = groups_of_system.get(&k.name).map(Vec::as_slice) {
                uf.union(i, *only);
            }
        }
    }

    // Name each group: by the name its callers gave it, else by what its addresses share.
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..raw.len() {
        members.entry(uf.find(i)).or_default().push(i);
    }
    struct Named {
        group: Vec<usize>,
        ty: NodeType,
        system: String,
        by_address: String,
        name: String,
    }
    let mut named: Vec<Named> = Vec::new();
    for group in members.into_values() {
        let mut per_type: BTreeMap<NodeType, u64> = BTreeMap::new();
        let (mut systems, mut labels, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
        for &i in &group {
            let k = key(i);
            *per_type.entry(k.ty).or_default() += requests[&raw[i]];
            systems.push(names.resolve(k.system.unwrap_or(k.name)));
            labels.extend(k.label.map(|l| names.resolve(l)));
            if has_address(k) {
                addresses.push(names.resolve(k.name));
            }
        }
        for v in [&mut systems, &mut labels] {
            v.sort_unstable();
            v.dedup();
        }
        // The type it is used as most (a database on a tie: it holds state).
        let ty = per_type
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or(NodeType::Database, |(t, _)| *t);
        let system = systems.join(", ");
        let by_address = base_name(&addresses).unwrap_or_else(|| system.clone());
        let name = if labels.is_empty() {
            display(&by_address, &system)
        } else {
            display(&labels.join(", "), &system)
        };
        named.push(Named {
            group,
            ty,
            by_address: display(&by_address, &system),
            system,
            name,
        });
    }
    // Two groups must not end up with one name: they are different nodes. A shared label
    // (two servers each holding a database `app`) gives way to the addresses; shared
    // addresses' names to the first address itself.
    for fallback in 0..2 {
        let mut count: BTreeMap<(NodeType, String), usize> = BTreeMap::new();
        for n in &named {
            *count.entry((n.ty, n.name.clone())).or_default() += 1;
        }
        for n in named.iter_mut() {
            if count[&(n.ty, n.name.clone())] < 2 {
                continue;
            }
            n.name = if fallback == 0 {
                n.by_address.clone()
            } else {
                let mut addrs: Vec<&str> = n
                    .group
                    .iter()
                    .map(|&i| key(i))
                    .filter(|k| has_address(*k))
                    .map(|k| names.resolve(k.name))
                    .collect();
                addrs.sort_unstable();
                match addrs.as_slice() {
                    [] => continue,
                    [one] => format!("{one} ({})", n.system),
                    [first, rest @ ..] => format!("{first} +{} ({})", rest.len(), n.system),
                }
            };
        }
    }
    let mut map = FxHashMap::default();
    for n in named {
        let id = nodes.id_resolved(NodeKey::named(n.ty, names.intern_resolved(&n.name)));
        for i in n.group {
            map.insert(raw[i], id);
        }
    }
    Resolution { map }
}

/// `base (system)`, or just `base` when it is the system's own name.
fn display(base: &str, system: &str) -> String {
    if base.eq_ignore_ascii_case(system) {
        base.to_owned()
    } else {
        format!("{base} ({system})")
    }
}

/// The host of `host:port` or `[v6]:port`.
fn host(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    }
}

/// Kubernetes service suffixes, which say where a name lives rather than what it is.
const DNS_SUFFIXES: &[&str] = &[".svc.cluster.local", ".svc"];

/// What a group's addresses share, as people name it: the host of one address, the common
/// prefix of several (`kafka-1`, `kafka-2` → `kafka`), `None` without addresses.
fn base_name(addresses: &[&str]) -> Option<String> {
    let mut hosts: Vec<&str> = addresses
        .iter()
        .map(|a| {
            let h = host(a);
            DNS_SUFFIXES
                .iter()
                .find_map(|s| h.strip_suffix(s))
                .unwrap_or(h)
        })
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    match hosts.as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        [first, rest @ ..] => {
            let is_ip = |h: &str| h.parse::<std::net::IpAddr>().is_ok();
            let mut len = first.len();
            for h in rest {
                len = len.min(
                    first
                        .bytes()
                        .zip(h.bytes())
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
            let prefix =
                first[..len].trim_end_matches(|c: char| c.is_ascii_digit() || "-_.".contains(c));
            if prefix.len() >= 2 && !hosts.iter().any(|h| is_ip(h)) {
                Some(prefix.to_owned())
            } else {
                Some(format!("{first} +{}", rest.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_addresses() {
        assert_eq!(
            base_name(&["billing-pg-2:5432", "billing-pg-1:5432"]).as_deref(),
            Some("billing-pg")
        );
        assert_eq!(
            base_name(&["orders-pg.shop.svc.cluster.local:5432"]).as_deref(),
            Some("orders-pg.shop")
        );
        assert_eq!(
            base_name(&["10.0.0.5:5432", "10.0.0.6:5432"]).as_deref(),
            Some("10.0.0.5 +1")
        );
        assert_eq!(base_name(&["[::1]:6379"]).as_deref(), Some("::1"));
        assert_eq!(base_name(&[]), None);
        assert_eq!(display("kafka", "kafka"), "kafka");
        assert_eq!(display("cache", "redis"), "cache (redis)");
    }
}
