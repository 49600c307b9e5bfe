//! Time windows keyed by span time: each completed trace lands in the bucket of its root's
//! start, so the same data gives the same windows in whatever order it arrived. Buckets are
//! [`GraphAgg`]s and merge by addition.

use std::collections::BTreeMap;

use crate::analyze::critical_path::Segment;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::analyze::graph::GraphAgg;
use crate::analyze::node::{NodeId, NodeTable};
use crate::analyze::tree::Trace;

/// Bucketed aggregates, bounded: past `max_buckets`, the oldest bucket is dropped (counted).
#[derive(Debug)]
pub struct Windows {
    width_ns: u64,
    max_buckets: usize,
    buckets: BTreeMap<u64, GraphAgg>,
    /// Buckets aged out of history, merged, so all-time counters (Prometheus) never go
    /// down.
    retired: GraphAgg,
    /// Traces whose bucket had already been dropped as too old when they completed.
    pub traces_dropped_old: u64,
    pub spans_dropped_old: u64,
    /// Spans of traces that start after the live horizon (a clock far ahead, or garbage
    /// timestamps): kept out so they cannot push real history out.
    pub spans_dropped_future: u64,
    /// Live only: traces starting at or after this are refused (now + one bucket).
    horizon_ns: Option<u64>,
    /// Spans of the traces folded into a bucket.
    pub spans_added: u64,
    /// Memory budget of the aggregates (bytes, estimated); 0 for none.
    budget_bytes: usize,
    /// The aggregates' estimated size at the last check.
    pub bytes: usize,
    /// What the budget folded: nodes into the overflow node, buckets into coarser ones,
    /// buckets retired early.
    pub nodes_folded: u64,
    pub buckets_merged: u64,
    pub buckets_retired_early: u64,
    /// Traces since the budget was last checked.
    since_check: u32,
    /// Times the budget had to fold something (the log is thinned by it).
    enforcements: u64,
}

/// Traces between two checks of the memory budget.
const CHECK_EVERY: u32 = 2048;

impl Windows {
    /// `width_ns == u64::MAX` gives one window for everything (replay's default).
    pub fn new(width_ns: u64, max_buckets: usize) -> Self {
        Windows {
            width_ns: width_ns.max(1),
            max_buckets: max_buckets.max(1),
            buckets: BTreeMap::new(),
            retired: GraphAgg::default(),
            traces_dropped_old: 0,
            spans_dropped_old: 0,
            spans_dropped_future: 0,
            horizon_ns: None,
            spans_added: 0,
            budget_bytes: 0,
            bytes: 0,
            nodes_folded: 0,
            buckets_merged: 0,
            buckets_retired_early: 0,
            since_check: 0,
            enforcements: 0,
        }
    }

    /// Sets the memory budget (bytes; 0 for none) and enforces it at once.
    pub fn set_budget(&mut self, bytes: usize) {
        self.budget_bytes = bytes;
        self.enforce_budget();
    }

    /// Entries the bounded maps had no room for (per-request-kind call and presence counts,
    /// resource usage), over everything kept.
    pub fn entries_dropped(&self) -> u64 {
        self.buckets
            .values()
            .chain(std::iter::once(&self.retired))
            .map(|g| g.facts.dropped + g.usage_dropped)
            .sum()
    }

    /// Estimated bytes of everything kept.
    pub fn approx_bytes(&self) -> usize {
        self.buckets
            .values()
            .map(GraphAgg::approx_bytes)
            .sum::<usize>()
            + self.retired.approx_bytes()
    }

    /// Keeps the aggregates within the budget, folding the least valuable state first: the
    /// least-used nodes into the overflow node (their traffic still counts, under one name),
    /// then the oldest buckets into coarser ones, then the oldest out of history. Each fold
    /// is counted and logged. Returns whether anything was folded.
    pub fn enforce_budget(&mut self) -> bool {
        self.since_check = 0;
        self.bytes = self.approx_bytes();
        if self.budget_bytes == 0 || self.bytes <= self.budget_bytes {
            return false;
        }
        let target = self.budget_bytes / 10 * 9;
        let before = self.bytes;
        // 1. Rare nodes, a quarter of those left at a time.
        let mut traffic: FxHashMap<NodeId, u64> = FxHashMap::default();
        for g in self.buckets.values() {
            for (n, a) in &g.nodes {
                *traffic.entry(*n).or_default() += a.requests + a.spans;
            }
        }
        let mut order: Vec<(u64, NodeId)> = traffic
            .into_iter()
            .filter(|(n, _)| *n != NodeTable::OVERFLOW)
            .map(|(n, t)| (t, n))
            .collect();
        order.sort_unstable();
        let mut folded: FxHashSet<NodeId> = FxHashSet::default();
        while self.bytes > target && folded.len() < order.len() {
            let more = ((order.len() - folded.len()) / 4).max(1);
            for (_, n) in order.iter().skip(folded.len()).take(more) {
                folded.insert(*n);
            }
            let f = |n: NodeId| {
                if folded.contains(&n) {
                    NodeTable::OVERFLOW
                } else {
                    n
                }
            };
            for g in self.buckets.values_mut() {
                *g = g.remap(f);
            }
            self.retired = self.retired.remap(f);
            self.bytes = self.approx_bytes();
        }
        self.nodes_folded += folded.len() as u64;
        // 2. The oldest buckets, two into one.
        while self.bytes > target && self.buckets.len() > 2 {
            let mut keys = self.buckets.keys().copied();
            let (Some(a), Some(b)) = (keys.next(), keys.next()) else {
                break;
            };
            if let Some(later) = self.buckets.remove(&b) {
                if let Some(first) = self.buckets.get_mut(&a) {
                    first.merge(&later);
                }
            }
            self.buckets_merged += 1;
            self.bytes = self.approx_bytes();
        }
        // 3. The oldest out of history.
        while self.bytes > target && self.buckets.len() > 1 {
            if let Some((_, old)) = self.buckets.pop_first() {
                self.retired.merge(&old);
            }
            self.buckets_retired_early += 1;
            self.bytes = self.approx_bytes();
        }
        // Under a sustained flood this runs at every check: log the 1st, 2nd, 4th, 8th... time.
        self.enforcements += 1;
        if !self.enforcements.is_power_of_two() {
            return true;
        }
        tracing::warn!(
            times = self.enforcements,
            budget = self.budget_bytes,
            before,
            after = self.bytes,
            nodes_folded = folded.len(),
            "aggregates over the memory budget: least-used nodes folded into the overflow \
             node, old history coarsened (chokepoint_budget_folds_total)"
        );
        true
    }

    pub fn max_buckets(&self) -> usize {
        self.max_buckets
    }

    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    /// Start of the bucket `t_ns` falls in.
    pub fn bucket_of(&self, t_ns: u64) -> u64 {
        t_ns - t_ns % self.width_ns
    }

    /// Live: sets the wall clock. Buckets older than the history are retired by time (not
    /// only by count), and traces starting more than a bucket ahead of now are refused.
    pub fn set_now(&mut self, now_ns: u64) {
        self.horizon_ns = Some(now_ns.saturating_add(self.width_ns));
        let keep_from =
            now_ns.saturating_sub(self.width_ns.saturating_mul(self.max_buckets as u64));
        while let Some((&first, _)) = self.buckets.first_key_value() {
            if first.saturating_add(self.width_ns) > keep_from {
                break;
            }
            if let Some((_, old)) = self.buckets.pop_first() {
                self.retired.merge(&old);
            }
        }
    }

    pub fn add_trace(
        &mut self,
        t: &Trace,
        path: &[Segment],
        nodes: &mut NodeTable,
        names: &crate::model::Interner,
    ) {
        let Some(root) = t.main_root() else { return };
        if self.horizon_ns.is_some_and(|h| t.span(root).start_ns >= h) {
            self.spans_dropped_future += t.len() as u64;
            return;
        }
        let start = self.bucket_of(t.span(root).start_ns);
        if self.buckets.len() >= self.max_buckets
            && !self.buckets.contains_key(&start)
            && self
                .buckets
                .keys()
                .next()
                .is_some_and(|&first| start < first)
        {
            self.traces_dropped_old += 1;
            self.spans_dropped_old += t.len() as u64;
            return;
        }
        self.spans_added += t.len() as u64;
        self.buckets
            .entry(start)
            .or_default()
            .add_trace(t, path, nodes, names);
        self.since_check += 1;
        if self.budget_bytes > 0 && self.since_check >= CHECK_EVERY {
            self.enforce_budget();
        }
        // History past its bound ages out (it was analysed while it was kept).
        while self.buckets.len() > self.max_buckets {
            if let Some((_, old)) = self.buckets.pop_first() {
                self.retired.merge(&old);
            }
        }
    }

    /// All buckets merged into one graph.
    pub fn merged(&self) -> GraphAgg {
        self.merged_range(0, u64::MAX)
    }

    /// Buckets starting in `[from_ns, to_ns)` merged.
    pub fn merged_range(&self, from_ns: u64, to_ns: u64) -> GraphAgg {
        let mut g = GraphAgg::default();
        for (_, b) in self.buckets.range(from_ns..to_ns) {
            g.merge(b);
        }
        g
    }

    /// The buckets and retired history, for snapshots.
    pub fn parts(&self) -> (&BTreeMap<u64, GraphAgg>, &GraphAgg) {
        (&self.buckets, &self.retired)
    }

    /// Restores [`Windows::parts`] (buckets beyond this window's bound are retired).
    pub fn restore(&mut self, buckets: BTreeMap<u64, GraphAgg>, retired: GraphAgg) {
        self.buckets = buckets;
        self.retired = retired;
        while self.buckets.len() > self.max_buckets {
            if let Some((_, old)) = self.buckets.pop_first() {
                self.retired.merge(&old);
            }
        }
    }

    /// Everything since start: retired history plus the buckets kept. Counters exported
    /// from it (Prometheus, [`crate::scale::exchange`]) only grow, so history retires into
    /// `retired` whole, facts included (their maps are bounded like a bucket's).
    pub fn all_time(&self) -> GraphAgg {
        let mut g = self.retired.clone();
        for b in self.buckets.values() {
            g.merge(b);
        }
        g
    }

    pub fn buckets(&self) -> impl Iterator<Item = (u64, &GraphAgg)> {
        self.buckets.iter().map(|(k, v)| (*k, v))
    }

    /// First bucket start and last bucket end, if any.
    pub fn span_ns(&self) -> Option<(u64, u64)> {
        let first = *self.buckets.keys().next()?;
        let last = *self.buckets.keys().next_back()?;
        Some((first, last.saturating_add(self.width_ns)))
    }
}
