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

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::critical_path::Segment;
use super::facts::{extract, FactsAgg};
use super::node::{resolve_peer, waited_peer, NodeId, NodeTable};
use super::stats::Moments;
use super::thresholds::{GONE_AFTER_MISSED, MIN_QUIET_NS, QUEUED_MIN_NS, QUEUED_MIN_SHARE};
use super::tree::{Ix, Trace};
use crate::analyze::hist::Hist;
use crate::model::{NodeKey, NodeType, Span, SpanKind, Sym};

/// How a caller reaches a callee. Spelled ours (`sync`, `messaging`, ...) on the exported
/// series, Grafana's on its service graph ([`ConnType::grafana_label`]).
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
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
    /// Our name (`sync`, `messaging`, `database`, `virtual`): the exported series' label, in
    /// stores since scale-out shipped.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Grafana's value of `connection_type` for the same thing (empty for a plain call), for
    /// `/metrics`' service-graph series, which Grafana's service-graph view reads. Another
    /// product's vocabulary, not a second spelling of ours.
    pub fn grafana_label(self) -> &'static str {
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

/// When an instance was seen, in span time, and how often: enough to tell whether it still
/// serves at the end of a window, and to merge windows by addition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
}

impl Seen {
    fn merge(&mut self, o: &Seen) {
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.count += o.count;
    }
}

/// Distinct instances of a node, bounded, each with when it was seen. Observations without
/// identity are counted apart: a node seen only without identity has *unknown* redundancy,
/// not one instance.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct InstanceSet {
    pub known: BTreeMap<Sym, Seen>,
    /// More distinct instances were seen than the set keeps.
    pub overflow: bool,
    pub unknown_observations: u64,
    /// Sightings of any identified instance per [`LOAD_BUCKET_NS`] of span time (the last
    /// [`MAX_LOAD_BUCKETS`]): how much the node served after a given moment.
    pub slots: BTreeMap<u64, u64>,
}

impl InstanceSet {
    pub const MAX: usize = 256;

    pub fn observe(&mut self, instance: Option<Sym>, t_ns: u64) {
        match instance {
            None => self.unknown_observations += 1,
            Some(i) => {
                self.observe_seen(
                    i,
                    &Seen {
                        first_ns: t_ns,
                        last_ns: t_ns,
                        count: 1,
                    },
                );
                self.add_slot(t_ns / LOAD_BUCKET_NS, 1);
            }
        }
    }

    fn add_slot(&mut self, slot: u64, n: u64) {
        *self.slots.entry(slot).or_default() += n;
        while self.slots.len() > MAX_LOAD_BUCKETS {
            self.slots.pop_first();
        }
    }

    fn observe_seen(&mut self, i: Sym, seen: &Seen) {
        if let Some(s) = self.known.get_mut(&i) {
            s.merge(seen);
        } else if self.known.len() < Self::MAX {
            self.known.insert(i, *seen);
        } else {
            self.overflow = true;
        }
    }

    pub fn merge(&mut self, other: &InstanceSet) {
        for (i, seen) in &other.known {
            self.observe_seen(*i, seen);
        }
        self.overflow |= other.overflow;
        self.unknown_observations += other.unknown_observations;
        for (slot, n) in &other.slots {
            self.add_slot(*slot, *n);
        }
    }

    /// Distinct instances seen over the whole window, or `None` when no observation carried
    /// an identity.
    pub fn count(&self) -> Option<usize> {
        (!self.known.is_empty()).then_some(self.known.len())
    }

    /// The instances still serving at the node's last sighting: redundancy is what serves
    /// now, and a replica lost a minute ago is gone whatever the window's union says.
    ///
    /// An instance is gone when the node went on serving without it: of the node's
    /// sightings in the time slots after the one it was last seen in, its usual share would
    /// have been at least [`GONE_AFTER_MISSED`]. Judged against the node's own traffic, a
    /// busy replica is gone within seconds, a rarely used one is not declared lost between
    /// two calls, and a node that went quiet (a trace with minutes of user think time, a
    /// drained queue) loses none.
    pub fn serving(&self) -> Vec<Sym> {
        let now = self.known.values().map(|s| s.last_ns).max().unwrap_or(0);
        let total: u64 = self.known.values().map(|s| s.count).sum();
        self.known
            .iter()
            .filter(|(_, s)| {
                if now - s.last_ns < MIN_QUIET_NS || total <= s.count {
                    return true;
                }
                let after: u64 = self
                    .slots
                    .range(s.last_ns / LOAD_BUCKET_NS + 1..)
                    .map(|(_, n)| n)
                    .sum();
                let share = s.count as f64 / (total - s.count) as f64;
                share * (after as f64) < GONE_AFTER_MISSED
            })
            .map(|(i, _)| *i)
            .collect()
    }

    /// How many instances serve now ([`InstanceSet::serving`]), or `None` when unknown.
    pub fn serving_count(&self) -> Option<usize> {
        self.count().map(|_| self.serving().len())
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
    /// Entry spans that serve someone (server, consumer, of unknown kind, or a proxy's): a
    /// service with none only sends traffic (a load generator, a mobile client, a cron
    /// caller).
    pub serves: u64,
    /// Request latency: server-side duration for services, client-side for virtual nodes.
    pub latency: Hist,
    /// Per request, time spent in the service's own spans, excluding time waiting on callees.
    pub self_time: Hist,
    pub instances: InstanceSet,
    /// What the node did per [`LOAD_BUCKET_NS`] of span time (the last [`MAX_LOAD_BUCKETS`]):
    /// latency against load (saturation) and throughput, concurrency and waits (capacity).
    pub load: BTreeMap<u64, LoadBucket>,
}

/// One [`LOAD_BUCKET_NS`] of a node's work. Everything adds up, so buckets merge across
/// windows, instances and shards. Counts of work done are adjusted counts (a span sampled
/// at one in n counts n, [`Span::weight`]); `requests` and `latency_ns` are raw, for
/// latency against load.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadBucket {
    /// Requests by when they started, and their summed latency (for services their own
    /// time, not waiting on callees).
    pub requests: u64,
    pub latency_ns: u64,
    /// Requests completed in the bucket (by when they ended).
    pub done: f64,
    /// Time spent serving them (the part of each request's span in the bucket): over the
    /// bucket's width, the time average of requests in flight (Little's law), from
    /// intervals of every trace without keeping any.
    pub busy_ns: f64,
    /// Requests sent to the node in the bucket, by when the caller sent them (a client
    /// span's start, a message's publication).
    pub arrived: f64,
    /// Requests whose wait before their span started is known (a client span around a
    /// server span, a producer before a consumer), how many of them waited, and the total
    /// wait.
    pub wait_known: f64,
    pub waited: f64,
    pub wait_ns: f64,
    /// Spans counted here that carried a sampling threshold (weight above 1).
    pub sampled: u64,
}

impl LoadBucket {
    fn merge(&mut self, o: &LoadBucket) {
        self.latency_ns = self.latency_ns.saturating_add(o.latency_ns);
        self.merge_counts(o);
    }

    /// Adds everything but the latency sum (which a total may need wider than `u64`).
    pub fn merge_counts(&mut self, o: &LoadBucket) {
        self.requests += o.requests;
        self.done += o.done;
        self.busy_ns += o.busy_ns;
        self.arrived += o.arrived;
        self.wait_known += o.wait_known;
        self.waited += o.waited;
        self.wait_ns += o.wait_ns;
        self.sampled += o.sampled;
    }
}

/// Width of a load bucket.
pub const LOAD_BUCKET_NS: u64 = 10_000_000_000;
/// Load buckets kept per node (two hours).
pub const MAX_LOAD_BUCKETS: usize = 720;
/// Most of a request's span counted as busy time (ten minutes, 60 buckets).
const MAX_WORK_SPAN_NS: u64 = 600_000_000_000;

impl NodeAgg {
    pub fn merge(&mut self, n: &NodeAgg) {
        self.spans += n.spans;
        self.span_errors += n.span_errors;
        self.requests += n.requests;
        self.errors += n.errors;
        self.serves += n.serves;
        self.latency.add(&n.latency);
        self.self_time.add(&n.self_time);
        self.instances.merge(&n.instances);
        for (b, l) in &n.load {
            self.load.entry(*b).or_default().merge(l);
        }
        self.trim_load();
    }

    fn trim_load(&mut self) {
        while self.load.len() > MAX_LOAD_BUCKETS {
            self.load.pop_first();
        }
    }

    fn bucket(&mut self, t_ns: u64) -> &mut LoadBucket {
        let b = t_ns / LOAD_BUCKET_NS;
        if self.load.len() >= MAX_LOAD_BUCKETS && !self.load.contains_key(&b) {
            self.load.entry(b).or_default();
            self.trim_load();
        }
        self.load.entry(b).or_default()
    }

    fn record_load(&mut self, t_ns: u64, latency_ns: u64) {
        let e = self.bucket(t_ns);
        e.requests += 1;
        e.latency_ns = e.latency_ns.saturating_add(latency_ns);
    }

    /// One request served from `start_ns` to `end_ns`, sent at `arrived_ns`, standing for
    /// `weight` requests; `wait_ns` is how long it waited before it started, when known.
    fn record_work(
        &mut self,
        (start_ns, end_ns): (u64, u64),
        arrived_ns: u64,
        wait_ns: Option<u64>,
        weight: f32,
    ) {
        let w = f64::from(weight.max(1.0));
        let sampled = u64::from(weight > 1.0);
        // A span longer than the buckets' reach (an absurd end time, a stuck request) counts
        // where it started and is busy only that far: it must not push every bucket out.
        let end_ns = end_ns.min(start_ns.saturating_add(MAX_WORK_SPAN_NS));
        let e = self.bucket(end_ns);
        e.done += w;
        e.sampled += sampled;
        let a = self.bucket(arrived_ns);
        a.arrived += w;
        if let Some(wait) = wait_ns {
            a.wait_known += w;
            a.wait_ns += w * wait as f64;
            if waited(wait, end_ns - start_ns) {
                a.waited += w;
            }
        }
        // Busy time, split over the buckets the request spans (most fit in one).
        let mut t = start_ns;
        while t < end_ns {
            let edge = (t / LOAD_BUCKET_NS + 1).saturating_mul(LOAD_BUCKET_NS);
            let to = edge.min(end_ns);
            self.bucket(t).busy_ns += w * (to - t) as f64;
            t = to;
        }
    }
}

/// Did a request queue before it started, rather than only cross the network? A wait of at
/// least [`QUEUED_MIN_NS`] and [`QUEUED_MIN_SHARE`] of its own service time: network and
/// framework overhead are a millisecond or so, while a request that found every worker busy
/// waits for one to finish, a sizeable part of a service time.
fn waited(wait_ns: u64, service_ns: u64) -> bool {
    wait_ns as f64 >= QUEUED_MIN_NS.max(QUEUED_MIN_SHARE * service_ns as f64)
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

impl EdgeAgg {
    pub fn merge(&mut self, e: &EdgeAgg) {
        self.calls += e.calls;
        self.errors += e.errors;
        self.client.add(&e.client);
        self.server.add(&e.server);
        self.queue.add(&e.queue);
        self.queue_trend.merge(&e.queue_trend);
        self.gap.add(&e.gap);
    }
}

/// Calls of one caller, asking one thing (see [`crate::model::Peer::usage`]), of one raw
/// backend address: the evidence the identity resolver groups replicas by.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct UsageKey {
    pub caller: NodeId,
    pub usage: u64,
    pub peer: NodeId,
}

/// Usage entries kept per aggregate; past it, only callers with fewer than [`FAIR_USAGE`]
/// entries add theirs, up to twice it; the rest are counted in `usage_dropped`.
pub const MAX_USAGE: usize = 4096;
/// Entries a caller may add once the usage table is past [`MAX_USAGE`].
pub const FAIR_USAGE: u32 = 64;

/// The graph of one window (or of several, merged). Everything in it adds up.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GraphAgg {
    /// Earliest span start and latest span end seen (Unix ns); `start_ns > end_ns` when empty.
    pub start_ns: u64,
    pub end_ns: u64,
    pub traces: u64,
    pub spans: u64,
    pub fragmented_traces: u64,
    /// The latest start of a trace analysed (Unix ns; 0 when none): how far in span time
    /// the analysis has got, which a global reader maps the writes of load buckets back to.
    pub last_trace_start_ns: u64,
    pub nodes: FxHashMap<NodeId, NodeAgg>,
    pub edges: FxHashMap<EdgeKey, EdgeAgg>,
    /// Critical path, reach and failure sums, for the findings.
    pub facts: FactsAgg,
    /// Which raw backend addresses each caller operation uses, bounded by [`MAX_USAGE`].
    pub usage: FxHashMap<UsageKey, u64>,
    pub usage_dropped: u64,
    /// Usage entries by caller (derived from `usage`, rebuilt when empty), so that past
    /// [`MAX_USAGE`] a caller with few entries still gets in: one caller's flood of distinct
    /// addresses filled the table, and the shop's databases and brokers, arriving after it,
    /// lost the evidence that groups them.
    #[serde(skip)]
    usage_callers: FxHashMap<NodeId, u32>,
}

impl Default for GraphAgg {
    fn default() -> Self {
        GraphAgg {
            start_ns: u64::MAX,
            end_ns: 0,
            traces: 0,
            spans: 0,
            fragmented_traces: 0,
            last_trace_start_ns: 0,
            nodes: FxHashMap::default(),
            edges: FxHashMap::default(),
            facts: FactsAgg::default(),
            usage: FxHashMap::default(),
            usage_dropped: 0,
            usage_callers: FxHashMap::default(),
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
        self.last_trace_start_ns = self.last_trace_start_ns.max(other.last_trace_start_ns);
        for (id, n) in &other.nodes {
            self.nodes.entry(*id).or_default().merge(n);
        }
        self.merge_usage(&other.usage, other.usage_dropped, |k| k);
        for (k, e) in &other.edges {
            self.edges.entry(*k).or_default().merge(e);
        }
    }

    fn merge_usage(
        &mut self,
        usage: &FxHashMap<UsageKey, u64>,
        dropped: u64,
        f: impl Fn(UsageKey) -> UsageKey,
    ) {
        for (k, c) in usage {
            let k = f(*k);
            if let Some(m) = self.usage.get_mut(&k) {
                *m += c;
            } else if self.admit_usage(k.caller) {
                self.usage.insert(k, *c);
            } else {
                self.usage_dropped += c;
            }
        }
        self.usage_dropped += dropped;
    }

    /// Whether a new usage entry of `caller` is kept (and counts it if so).
    fn admit_usage(&mut self, caller: NodeId) -> bool {
        if self.usage_callers.is_empty() && !self.usage.is_empty() {
            for k in self.usage.keys() {
                *self.usage_callers.entry(k.caller).or_default() += 1;
            }
        }
        let n = self.usage_callers.entry(caller).or_default();
        let len = self.usage.len();
        let admit = len < MAX_USAGE || (len < 2 * MAX_USAGE && *n < FAIR_USAGE);
        if admit {
            *n += 1;
        }
        admit
    }

    /// Approximate heap bytes held, for the memory budget: nodes, edges, their histograms,
    /// instance sets and load buckets, the usage counts and the facts.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let per_node: usize = self
            .nodes
            .values()
            .map(|n| {
                size_of::<(NodeId, NodeAgg)>()
                    + 8
                    + n.latency.heap_bytes()
                    + n.self_time.heap_bytes()
                    + n.instances.known.len() * (size_of::<(Sym, Seen)>() + 16)
                    + n.instances.slots.len() * 32
                    + n.load.len() * (size_of::<(u64, LoadBucket)>() + 16)
            })
            .sum();
        let per_edge: usize = self
            .edges
            .values()
            .map(|e| {
                size_of::<(EdgeKey, EdgeAgg)>()
                    + 8
                    + e.client.heap_bytes()
                    + e.server.heap_bytes()
                    + e.queue.heap_bytes()
                    + e.gap.heap_bytes()
            })
            .sum();
        per_node
            + per_edge
            + self.usage.capacity() * (size_of::<(UsageKey, u64)>() + 8)
            + self.facts.approx_bytes()
    }

    /// The same aggregate with nodes renamed by `f` (several ids may become one: their sums
    /// add up; see [`FactsAgg::remap`] for the per-trace counts).
    pub fn remap(&self, f: impl Fn(NodeId) -> NodeId) -> GraphAgg {
        let mut g = GraphAgg {
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            traces: self.traces,
            spans: self.spans,
            fragmented_traces: self.fragmented_traces,
            last_trace_start_ns: self.last_trace_start_ns,
            facts: self.facts.remap(&f),
            ..GraphAgg::default()
        };
        for (id, n) in &self.nodes {
            g.nodes.entry(f(*id)).or_default().merge(n);
        }
        for (k, e) in &self.edges {
            let k = EdgeKey {
                from: f(k.from),
                to: f(k.to),
                conn: k.conn,
            };
            g.edges.entry(k).or_default().merge(e);
        }
        g.merge_usage(&self.usage, self.usage_dropped, |k| UsageKey {
            caller: f(k.caller),
            peer: f(k.peer),
            ..k
        });
        g
    }

    fn edge(&mut self, from: NodeId, to: NodeId, conn: ConnType) -> &mut EdgeAgg {
        self.edges.entry(EdgeKey { from, to, conn }).or_default()
    }

    /// Folds one trace (and its critical path) into the graph.
    pub fn add_trace(
        &mut self,
        t: &Trace,
        path: &[Segment],
        nodes: &mut NodeTable,
        names: &crate::model::Interner,
    ) {
        self.traces += 1;
        self.spans += t.len() as u64;
        let mut first = u64::MAX;
        for s in &t.spans {
            first = first.min(s.start_ns);
            self.end_ns = self.end_ns.max(s.end_ns);
        }
        self.start_ns = self.start_ns.min(first);
        if first != u64::MAX {
            self.last_trace_start_ns = self.last_trace_start_ns.max(first);
        }
        if t.fragmented {
            self.fragmented_traces += 1;
        }
        // Each span belongs to the request (entry span) of its service that it runs under;
        // parents come before children in preorder, so the owner is known when needed.
        let mut owner: Vec<Ix> = vec![0; t.len()];
        // (owner, start, end, is a waiting interval)
        let mut local: Vec<(Ix, u64, u64, bool)> = Vec::with_capacity(t.len());
        // Instances seen, once per trace each: a request is the unit of evidence that an
        // instance serves (a trace's hundred spans on one connection are one sighting).
        let mut seen: Vec<(NodeId, Option<Sym>, u64)> = Vec::new();
        for i in t.preorder() {
            let s = t.span(i);
            let node = nodes.id(NodeKey::service(s.service));
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
            seen.push((node, s.instance, s.start_ns));
            n.spans += 1;
            n.span_errors += u64::from(s.error);
            if is_entry {
                n.requests += 1;
                n.serves += u64::from(
                    s.proxy
                        || matches!(
                            s.kind,
                            SpanKind::Server | SpanKind::Consumer | SpanKind::Unspecified
                        ),
                );
                n.errors += u64::from(s.error);
                n.latency.record_ns(s.duration_ns());
                let (arrived, wait) = arrival(t, i);
                n.record_work((s.start_ns, s.end_ns), arrived, wait, s.weight);
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
            self.span_edges(t, i, node, nodes, &mut seen);
        }
        // Self time per request: time some span of the request is running locally, minus the
        // time one of its client spans is waiting on a callee. Internal spans that overlap a
        // call (async frameworks) are not counted twice.
        local.sort_unstable();
        for group in local.chunk_by(|a, b| a.0 == b.0) {
            let all = union_ns(group.iter().filter(|g| !g.3).map(|g| (g.1, g.2)));
            let waiting = union_ns(group.iter().filter(|g| g.3).map(|g| (g.1, g.2)));
            let entry = t.span(group[0].0);
            let node = nodes.id(NodeKey::service(entry.service));
            if let Some(n) = self.nodes.get_mut(&node) {
                n.self_time.record_ns(all.saturating_sub(waiting));
                // Against load, a service's own time: its callers' latency includes its
                // callees', which would make every caller of a saturating node look
                // saturated too.
                n.record_load(entry.start_ns, all.saturating_sub(waiting));
            }
        }
        seen.sort_unstable();
        seen.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
        for (node, instance, t_ns) in seen {
            self.nodes
                .entry(node)
                .or_default()
                .instances
                .observe(instance, t_ns);
        }
        if let Some(f) = extract(t, path, nodes, names) {
            self.facts.add(&f);
        }
    }

    /// The edges span `i` (in service node `node`) takes part in as the callee side, plus
    /// the virtual edges it makes as an unresolved client.
    fn span_edges(
        &mut self,
        t: &Trace,
        i: Ix,
        node: NodeId,
        nodes: &mut NodeTable,
        seen: &mut Vec<(NodeId, Option<Sym>, u64)>,
    ) {
        let s = t.span(i);
        let parent = t.parent[i as usize];
        // Messaging: into a consumer.
        if s.kind == SpanKind::Consumer {
            let producer = parent
                .filter(|&p| t.span(p).kind == SpanKind::Producer)
                .or_else(|| linked_producer(t, s));
            // The broker: as the consumer names it, unless only the producer knows its
            // address.
            let messaging = |p: &crate::model::Peer| p.node.ty == NodeType::Messaging;
            let own = s.peer.filter(messaging);
            let upstream = producer.and_then(|p| t.span(p).peer).filter(messaging);
            let broker = match (own, upstream) {
                (Some(o), Some(u)) if o.address.is_none() && u.address.is_some() => Some(u),
                (Some(o), _) => Some(o),
                (None, u) => u,
            };
            let from = match (broker, producer) {
                (Some(b), _) => Some(nodes.id(b.node)),
                (None, Some(p)) => Some(nodes.id(NodeKey::service(t.span(p).service))),
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
                let from = nodes.id(NodeKey::service(ps.service));
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
        let key = nodes.key(to);
        if key.is_raw() && peer.usage != 0 {
            self.record_usage(UsageKey {
                caller: node,
                usage: peer.usage,
                peer: to,
            });
        }
        let e = self.edge(node, to, conn);
        e.calls += 1;
        e.errors += u64::from(s.error);
        // Waiting for work (a blocking pop, a poll) is not the peer's latency.
        if !peer.idle {
            e.client.record_ns(s.duration_ns());
        }
        let v = self.nodes.entry(to).or_default();
        v.requests += 1;
        v.errors += u64::from(s.error);
        // A call to a service that never answered: a request it failed, but neither its
        // latency nor an instance of it.
        if key.ty != NodeType::Service {
            seen.push((to, peer.address, s.start_ns));
            if !peer.idle {
                v.latency.record_ns(s.duration_ns());
                v.record_load(s.start_ns, s.duration_ns());
                v.record_work((s.start_ns, s.end_ns), s.start_ns, None, s.weight);
            }
        }
    }

    fn record_usage(&mut self, k: UsageKey) {
        if let Some(c) = self.usage.get_mut(&k) {
            *c += 1;
        } else if self.admit_usage(k.caller) {
            self.usage.insert(k, 1);
        } else {
            self.usage_dropped += 1;
        }
    }
}

/// When the request that entry span `i` serves was sent, and how long it waited before
/// the span started, when the trace says: a message from its publication (the producer's
/// end), a call from its client span's start; otherwise it arrived when it started.
fn arrival(t: &Trace, i: Ix) -> (u64, Option<u64>) {
    let s = t.span(i);
    let parent = t.parent[i as usize];
    if s.kind == SpanKind::Consumer {
        let producer = parent
            .filter(|&p| t.span(p).kind == SpanKind::Producer)
            .or_else(|| linked_producer(t, s));
        if let Some(p) = producer {
            let sent = t.span(p).end_ns.min(s.start_ns);
            return (sent, Some(s.start_ns - sent));
        }
        return (s.start_ns, None);
    }
    match parent {
        Some(p) if t.span(p).service != s.service && t.is_client_like(p) => {
            let sent = t.span(p).start_ns.min(s.start_ns);
            (sent, Some(s.start_ns - sent))
        }
        _ => (s.start_ns, None),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One caller's flood of distinct addresses fills the usage table; a caller arriving
    /// after it still records its few, in this window and in a merge of it.
    #[test]
    fn a_callers_flood_of_usage_leaves_room_for_the_others() {
        let mut g = GraphAgg::default();
        let use_of = |caller, peer| UsageKey {
            caller: NodeId(caller),
            usage: 7,
            peer: NodeId(peer),
        };
        for p in 0..3 * MAX_USAGE as u32 {
            g.record_usage(use_of(1, 100 + p));
        }
        for p in 0..3 {
            g.record_usage(use_of(2, p));
        }
        assert!(g.usage.contains_key(&use_of(2, 2)));
        assert!(g.usage_dropped > 0);
        let mut merged = GraphAgg::default();
        merged.merge(&g);
        assert!(merged.usage.contains_key(&use_of(2, 2)));
        assert!(merged.usage.len() <= 2 * MAX_USAGE);
    }
}
