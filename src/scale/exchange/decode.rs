//! Series → aggregates: a window rebuilt from what a store returned, summed across
//! instances, over a range of time.

use std::collections::BTreeMap;

use crate::analyze::facts::{ClassKey, OpKey};
use crate::analyze::graph::{EdgeKey, GraphAgg, UsageKey, LOAD_BUCKET_NS};
use crate::analyze::node::{NodeId, NodeTable};
use crate::model::{Interner, NodeKey, NodeType, Sym};

// Every name is the encoder's and the decoder's alike.
use super::names::*;

/// One series over a range of time, as a store returns it: `(unix seconds, value)` points,
/// in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// How a series changed over `(from, to]`: its increase (counter resets handled as
/// Prometheus does: a drop means the counter restarted from zero) and the increase per
/// point, with the point's time.
pub(super) fn increases(points: &[(f64, f64)], from: f64, to: f64) -> (f64, Vec<(f64, f64)>) {
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    let mut steps = Vec::new();
    for &(t, v) in points {
        if t <= from {
            prev = Some(v);
            continue;
        }
        if t > to {
            break;
        }
        let d = match prev {
            Some(p) if v >= p => v - p,
            _ => v,
        };
        prev = Some(v);
        if d > 0.0 {
            total += d;
            steps.push((t, d));
        }
    }
    (total, steps)
}

/// The last value at or before `to` (a gauge's reading for the window).
fn last_value(points: &[(f64, f64)], to: f64) -> Option<f64> {
    points
        .iter()
        .take_while(|(t, _)| *t <= to)
        .last()
        .map(|p| p.1)
}

fn count(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

fn ns(seconds: f64) -> u128 {
    (seconds * 1e9).round().max(0.0) as u128
}

/// Rebuilds the aggregates of `(from, to]` (Unix seconds) from series a store returned,
/// naming nodes in `nodes` and `names` (the reader's own tables). Series of unknown names
/// or with labels that don't parse are skipped and counted in the result.
pub fn decode(
    series: &[Series],
    from: f64,
    to: f64,
    nodes: &mut NodeTable,
    names: &mut Interner,
) -> Decoded {
    let mut d = Decoder {
        agg: GraphAgg::default(),
        nodes,
        names,
        skipped: 0,
        queue_steps: BTreeMap::new(),
        clocks: BTreeMap::new(),
        firsts: BTreeMap::new(),
    };
    for s in series {
        if s.name == TRACE_START_LAST {
            d.clocks.insert(writer(s).to_owned(), s.points.clone());
        }
        if s.name == "chokepoint_agg_span_time_first_seconds" {
            if let Some(v) = last_value(&s.points, to) {
                d.firsts.insert(writer(s).to_owned(), v);
            }
        }
    }
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    for s in series {
        match s.name.as_str() {
            "chokepoint_agg_span_time_first_seconds" => {
                if let Some(v) = last_value(&s.points, to) {
                    first = Some(first.map_or(v, |f: f64| f.min(v)));
                }
            }
            "chokepoint_agg_span_time_last_seconds" => {
                if let Some(v) = last_value(&s.points, to) {
                    last = Some(last.map_or(v, |l: f64| l.max(v)));
                }
            }
            HEARD | TRACE_START_LAST => {}
            _ => {
                if d.series(s, from, to).is_none() {
                    d.skipped += 1;
                }
            }
        }
    }
    d.finish_queue_trends();
    if let (Some(f), Some(l)) = (first, last) {
        d.agg.start_ns = (f.max(from) * 1e9) as u64;
        d.agg.end_ns = (l.min(to) * 1e9) as u64;
    }
    prune(
        &mut d.agg,
        (from.max(0.0) * 1e9) as u64,
        (to.min(1e11) * 1e9) as u64,
    );
    Decoded {
        agg: d.agg,
        skipped: d.skipped,
    }
}

/// What [`decode`] rebuilt.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub agg: GraphAgg,
    /// Series whose name or labels this build does not read.
    pub skipped: u64,
}

struct Decoder<'a> {
    agg: GraphAgg,
    nodes: &'a mut NodeTable,
    names: &'a mut Interner,
    skipped: u64,
    /// Per messaging edge, the queue histogram's increase per step: `(count, sum s)` by time,
    /// from which the delay's trend is rebuilt.
    queue_steps: BTreeMap<EdgeKey, BTreeMap<u64, (f64, f64)>>,
    /// Per writer, the latest trace start it had analysed at each write: what maps a load
    /// bucket's increase, written later, back to the span time it happened in.
    clocks: BTreeMap<String, Vec<(f64, f64)>>,
    /// Per writer, the earliest span time it holds: where its first write's load began.
    firsts: BTreeMap<String, f64>,
}

/// Who wrote a series: its `chokepoint_instance` label (remote-write) or `instance` (scrape).
fn writer(s: &Series) -> &str {
    s.labels
        .get("chokepoint_instance")
        .or_else(|| s.labels.get("instance"))
        .map_or("", String::as_str)
}

impl Decoder<'_> {
    /// The span time a writer covered between its write before `t_s` and the one at `t_s`
    /// (Unix seconds): a load bucket's increase between two writes came from the traces that
    /// started in that interval, so it is spread over it, as the writer counted it, not put
    /// in the bucket it was written in, which lags by the assembly and write intervals (and
    /// by any replay's age). A writer fed faster than real time (a replay, a backlog) covers
    /// minutes of span time between two scrapes: without the spread, all of it would land
    /// in one bucket and read as a burst of load that never was.
    fn span_interval(&self, s: &Series, t_s: f64) -> (f64, f64) {
        let Some(clock) = self.clocks.get(writer(s)) else {
            return (t_s, t_s);
        };
        let i = clock.partition_point(|p| p.0 <= t_s);
        let hi = match i.checked_sub(1).and_then(|i| clock.get(i)) {
            Some(&(_, span_s)) => span_s,
            None => return clock.first().map_or((t_s, t_s), |p| (p.1, p.1)),
        };
        let lo = match i.checked_sub(2).and_then(|i| clock.get(i)) {
            Some(&(_, span_s)) => span_s,
            None => self.firsts.get(writer(s)).copied().unwrap_or(hi),
        };
        (lo.min(hi), hi)
    }

    /// `(slot, part)` pairs sharing one increase over the span time it covered.
    fn spread(&self, s: &Series, steps: &[(f64, f64)]) -> Vec<(u64, f64)> {
        let width = LOAD_BUCKET_NS as f64 / 1e9;
        let mut out = Vec::new();
        for &(t, d) in steps {
            let (lo, hi) = self.span_interval(s, t);
            // Bounded like the buckets themselves: at most the last MAX_LOAD_BUCKETS.
            let lo = lo.max(hi - width * crate::analyze::graph::MAX_LOAD_BUCKETS as f64);
            if hi - lo < 1e-9 || slot(lo) == slot(hi) {
                out.push((slot(hi), d));
                continue;
            }
            let span = hi - lo;
            for b in slot(lo)..=slot(hi) {
                let (b0, b1) = (b as f64 * width, (b + 1) as f64 * width);
                let part = (b1.min(hi) - b0.max(lo)).max(0.0) / span;
                if part > 0.0 {
                    out.push((b, d * part));
                }
            }
        }
        out
    }

    fn node(&mut self, s: &Series, l: &NodeLabelNames) -> Option<NodeId> {
        let name = s.labels.get(l[0])?;
        let ty: NodeType = s.labels.get(l[1])?.parse().ok()?;
        let mut opt = |k: &str| -> Option<Sym> {
            s.labels
                .get(k)
                .filter(|v| !v.is_empty())
                .map(|v| self.names.intern(v))
        };
        let system = opt(l[2]);
        let label = opt(l[3]);
        let key = NodeKey {
            ty,
            name: self.names.intern(name),
            system,
            label,
        };
        Some(self.nodes.id(key))
    }

    fn op(&mut self, s: &Series) -> Option<OpKey> {
        let service = self.node(s, &SERVICE)?;
        let name = self.names.intern(s.labels.get("operation")?);
        let background = s.labels.get("background")? == "true";
        Some(OpKey {
            service,
            name,
            background,
        })
    }

    fn class(&mut self, s: &Series) -> Option<ClassKey> {
        let op = self.op(s)?;
        let route = u64::from_str_radix(s.labels.get("route")?, 16).ok()?;
        Some(ClassKey { op, route })
    }

    fn edge(&mut self, s: &Series) -> Option<EdgeKey> {
        Some(EdgeKey {
            from: self.node(s, &CALLER)?,
            to: self.node(s, &CALLEE)?,
            conn: s.labels.get("connection_type")?.parse().ok()?,
        })
    }

    fn ub_us(s: &Series) -> Option<u64> {
        let ub: f64 = s.labels.get("ub")?.parse().ok()?;
        Some((ub * 1e6).round().max(0.0) as u64)
    }

    /// Reads one series into the aggregates; `None` if it can't be read.
    fn series(&mut self, s: &Series, from: f64, to: f64) -> Option<()> {
        let (inc, steps) = increases(&s.points, from, to);
        let gauge = last_value(&s.points, to).unwrap_or(0.0);
        let name = s.name.as_str();
        // Nothing happened in the window: nothing to add (a node idle over it is not shown).
        let is_gauge = name.ends_with("_max")
            || name.ends_with("_seen_seconds")
            || name == "chokepoint_node_instances_overflowed";
        if !is_gauge && inc == 0.0 {
            return Some(());
        }
        let a = &mut self.agg;
        match name {
            "chokepoint_agg_traces_total" => a.traces += count(inc),
            "chokepoint_agg_spans_total" => a.spans += count(inc),
            "chokepoint_agg_fragmented_traces_total" => a.fragmented_traces += count(inc),
            "chokepoint_usage_dropped_total" => a.usage_dropped += count(inc),
            "chokepoint_user_requests_total" => a.facts.traces += count(inc),
            "chokepoint_user_request_seconds_total" => a.facts.e2e_total_ns += ns(inc),
            "chokepoint_background_traces_total" => a.facts.background_traces += count(inc),
            n if n.starts_with("chokepoint_node_") => {
                return self.node_series(s, inc, &steps, gauge)
            }
            n if n.starts_with("chokepoint_edge_") => {
                return self.edge_series(s, inc, &steps, gauge)
            }
            "chokepoint_usage_calls_total" => {
                let k = UsageKey {
                    caller: self.node(s, &CALLER)?,
                    usage: u64::from_str_radix(s.labels.get("usage")?, 16).ok()?,
                    peer: self.node(s, &CALLEE)?,
                };
                *self.agg.usage.entry(k).or_default() += count(inc);
            }
            _ => return self.facts_series(s, inc, &steps, gauge),
        }
        Some(())
    }

    fn node_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let id = self.node(s, &NODE)?;
        let load_steps: Vec<(u64, f64)> = if s.name.starts_with("chokepoint_node_load_") {
            self.spread(s, steps)
        } else {
            Vec::new()
        };
        let instance = s
            .labels
            .get("service_instance")
            .map(|i| self.names.intern(i));
        let n = self.agg.nodes.entry(id).or_default();
        match s.name.as_str() {
            "chokepoint_node_spans_total" => n.spans += count(inc),
            "chokepoint_node_span_errors_total" => n.span_errors += count(inc),
            "chokepoint_node_requests_total" => n.requests += count(inc),
            "chokepoint_node_errors_total" => n.errors += count(inc),
            "chokepoint_node_serves_total" => n.serves += count(inc),
            "chokepoint_node_latency_seconds_bin" => n.latency.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_node_latency_seconds_sum" => n.latency.add_totals(ns(inc) / 1000, 0),
            "chokepoint_node_latency_seconds_max" => n.latency.add_totals(0, (gauge * 1e6) as u64),
            "chokepoint_node_self_time_seconds_bin" => {
                n.self_time.add_bin(Self::ub_us(s)?, count(inc))
            }
            "chokepoint_node_self_time_seconds_sum" => n.self_time.add_totals(ns(inc) / 1000, 0),
            "chokepoint_node_self_time_seconds_max" => {
                n.self_time.add_totals(0, (gauge * 1e6) as u64)
            }
            "chokepoint_node_load_requests_total" => {
                for (b, k) in integral(&load_steps) {
                    n.load.entry(b).or_default().requests += k;
                }
            }
            "chokepoint_node_load_latency_seconds_total" => {
                for &(b, d) in &load_steps {
                    let e = n.load.entry(b).or_default();
                    e.latency_ns = e
                        .latency_ns
                        .saturating_add(ns(d).min(u128::from(u64::MAX)) as u64);
                }
            }
            LOAD_SAMPLED => {
                for (b, k) in integral(&load_steps) {
                    n.load.entry(b).or_default().sampled += k;
                }
            }
            LOAD_DONE | LOAD_BUSY | LOAD_ARRIVED | LOAD_WAIT_KNOWN | LOAD_WAITED | LOAD_WAIT => {
                for &(b, d) in &load_steps {
                    let e = n.load.entry(b).or_default();
                    let d = d.max(0.0);
                    match s.name.as_str() {
                        LOAD_DONE => e.done += d,
                        LOAD_BUSY => e.busy_ns += d * 1e9,
                        LOAD_ARRIVED => e.arrived += d,
                        LOAD_WAIT_KNOWN => e.wait_known += d,
                        LOAD_WAITED => e.waited += d,
                        _ => e.wait_ns += d * 1e9,
                    }
                }
            }
            "chokepoint_node_instance_sightings_total" => {
                let i = instance?;
                let e = n
                    .instances
                    .known
                    .entry(i)
                    .or_insert(crate::analyze::graph::Seen {
                        first_ns: u64::MAX,
                        last_ns: 0,
                        count: 0,
                    });
                e.count += count(inc);
                for &(t, d) in steps {
                    *n.instances.slots.entry(slot(t)).or_default() += count(d);
                }
            }
            "chokepoint_node_instance_first_seen_seconds" => {
                let i = instance?;
                if let Some(e) = n.instances.known.get_mut(&i) {
                    e.first_ns = e.first_ns.min((gauge * 1e9) as u64);
                }
            }
            "chokepoint_node_instance_last_seen_seconds" => {
                let i = instance?;
                if let Some(e) = n.instances.known.get_mut(&i) {
                    e.last_ns = e.last_ns.max((gauge * 1e9) as u64);
                }
            }
            "chokepoint_node_unidentified_sightings_total" => {
                n.instances.unknown_observations += count(inc)
            }
            "chokepoint_node_instances_overflowed" => n.instances.overflow |= gauge > 0.0,
            _ => return None,
        }
        Some(())
    }

    fn edge_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let k = self.edge(s)?;
        let e = self.agg.edges.entry(k).or_default();
        let max = (gauge * 1e6) as u64;
        match s.name.as_str() {
            "chokepoint_edge_calls_total" => e.calls += count(inc),
            "chokepoint_edge_errors_total" => e.errors += count(inc),
            "chokepoint_edge_client_seconds_bin" => e.client.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_client_seconds_sum" => e.client.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_client_seconds_max" => e.client.add_totals(0, max),
            "chokepoint_edge_server_seconds_bin" => e.server.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_server_seconds_sum" => e.server.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_server_seconds_max" => e.server.add_totals(0, max),
            "chokepoint_edge_queue_seconds_bin" => {
                e.queue.add_bin(Self::ub_us(s)?, count(inc));
                let q = self.queue_steps.entry(k).or_default();
                for &(t, d) in steps {
                    q.entry(t as u64).or_default().0 += d;
                }
            }
            "chokepoint_edge_queue_seconds_sum" => {
                e.queue.add_totals(ns(inc) / 1000, 0);
                let q = self.queue_steps.entry(k).or_default();
                for &(t, d) in steps {
                    q.entry(t as u64).or_default().1 += d;
                }
            }
            "chokepoint_edge_queue_seconds_max" => e.queue.add_totals(0, max),
            "chokepoint_edge_gap_seconds_bin" => e.gap.add_bin(Self::ub_us(s)?, count(inc)),
            "chokepoint_edge_gap_seconds_sum" => e.gap.add_totals(ns(inc) / 1000, 0),
            "chokepoint_edge_gap_seconds_max" => e.gap.add_totals(0, max),
            _ => return None,
        }
        Some(())
    }

    /// The queue delay's trend, one point per step: the step's mean delay at its time.
    fn finish_queue_trends(&mut self) {
        for (k, steps) in std::mem::take(&mut self.queue_steps) {
            let e = self.agg.edges.entry(k).or_default();
            for (t, (n, sum_s)) in steps {
                if n > 0.0 {
                    e.queue_trend.add_n(t as f64, sum_s / n * 1e3, count(n));
                }
            }
        }
    }

    fn facts_series(
        &mut self,
        s: &Series,
        inc: f64,
        steps: &[(f64, f64)],
        gauge: f64,
    ) -> Option<()> {
        let name = s.name.as_str();
        match name {
            n if n.starts_with("chokepoint_op_") => {
                let op = self.op(s)?;
                let o = self.agg.facts.ops.entry(op).or_default();
                match n {
                    "chokepoint_op_traces_total" => o.traces += count(inc),
                    "chokepoint_op_errors_total" => o.errors += count(inc),
                    "chokepoint_op_spans_total" => o.spans += count(inc),
                    "chokepoint_op_e2e_seconds_total" => o.e2e_total_ns += ns(inc),
                    "chokepoint_op_e2e_seconds_bin" => o.e2e.add_bin(Self::ub_us(s)?, count(inc)),
                    "chokepoint_op_e2e_seconds_sum" => o.e2e.add_totals(ns(inc) / 1000, 0),
                    "chokepoint_op_e2e_seconds_max" => o.e2e.add_totals(0, (gauge * 1e6) as u64),
                    _ => return None,
                }
            }
            n if n.starts_with("chokepoint_cp_") && n != "chokepoint_cp_wait_seconds_total" => {
                let op = self.op(s)?;
                let node = self.node(s, &NODE)?;
                let c = self.agg.facts.cp.entry((op, node)).or_default();
                match n {
                    "chokepoint_cp_traces_total" => c.traces += count(inc),
                    "chokepoint_cp_own_seconds_total" => c.own_ns += ns(inc),
                    "chokepoint_cp_queue_seconds_total" => c.queue_ns += ns(inc),
                    "chokepoint_cp_per_trace_seconds_bin" => {
                        c.per_trace.add_bin(Self::ub_us(s)?, count(inc))
                    }
                    "chokepoint_cp_per_trace_seconds_sum" => {
                        c.per_trace.add_totals(ns(inc) / 1000, 0)
                    }
                    "chokepoint_cp_per_trace_seconds_max" => {
                        c.per_trace.add_totals(0, (gauge * 1e6) as u64)
                    }
                    _ => return None,
                }
            }
            "chokepoint_cp_wait_seconds_total" => {
                let k = (self.node(s, &CALLER)?, self.node(s, &CALLEE)?);
                *self.agg.facts.waits.entry(k).or_default() += ns(inc);
            }
            "chokepoint_reach_total" => {
                let k = (self.op(s)?, self.node(s, &NODE)?);
                *self.agg.facts.reach.entry(k).or_default() += count(inc);
            }
            "chokepoint_failed_traces_total" => {
                let n = self.node(s, &NODE)?;
                self.agg.facts.fail.entry(n).or_default().traces_failed += count(inc);
            }
            "chokepoint_failed_with_entry_total" => {
                let n = self.node(s, &NODE)?;
                let a = self.agg.facts.fail.entry(n).or_default();
                a.entry_failed_too += count(inc);
                // When the failed requests were written: by write time, as for load.
                for &(t, _) in steps {
                    a.saw_failed_request((t * 1e9) as u64);
                }
            }
            "chokepoint_shape_traces_total" | "chokepoint_shape_e2e_seconds_total" => {
                let op = self.op(s)?;
                let shape = u64::from_str_radix(s.labels.get("shape")?, 16).ok()?;
                let sh = self.agg.facts.shapes.entry((op, shape)).or_default();
                if name == "chokepoint_shape_traces_total" {
                    sh.traces += count(inc);
                } else {
                    sh.e2e_ns += ns(inc);
                }
            }
            "chokepoint_shape_cp_own_seconds_total" | "chokepoint_shape_cp_queue_seconds_total" => {
                let op = self.op(s)?;
                let shape = u64::from_str_radix(s.labels.get("shape")?, 16).ok()?;
                let node = self.node(s, &NODE)?;
                let e = self
                    .agg
                    .facts
                    .shape_cp
                    .entry((op, shape, node))
                    .or_default();
                if name == "chokepoint_shape_cp_own_seconds_total" {
                    e.0 += ns(inc);
                } else {
                    e.1 += ns(inc);
                }
            }
            "chokepoint_class_requests_total" => {
                let c = self.class(s)?;
                *self.agg.facts.classes.entry(c).or_default() += count(inc);
            }
            "chokepoint_class_calls_total" => {
                let k = (
                    self.class(s)?,
                    self.node(s, &CALLER)?,
                    self.node(s, &CALLEE)?,
                );
                *self.agg.facts.calls.entry(k).or_default() += count(inc);
            }
            "chokepoint_class_present_total" => {
                let k = (self.class(s)?, self.node(s, &NODE)?);
                *self.agg.facts.present.entry(k).or_default() += count(inc);
            }
            _ => return None,
        }
        Some(())
    }
}

/// Drops what only gauges mentioned (a node, edge or instance idle over the window), and
/// bounds instances' first and last sightings by the window.
fn prune(a: &mut GraphAgg, from_ns: u64, to_ns: u64) {
    for n in a.nodes.values_mut() {
        n.instances.known.retain(|_, s| s.count > 0);
        for s in n.instances.known.values_mut() {
            s.first_ns = s.first_ns.max(from_ns).min(to_ns);
            s.last_ns = s.last_ns.clamp(s.first_ns, to_ns.max(s.first_ns));
        }
    }
    a.nodes.retain(|_, n| {
        n.spans + n.requests + n.serves + n.latency.count() + n.self_time.count() > 0
            || !n.instances.known.is_empty()
            || n.instances.unknown_observations > 0
            || !n.load.is_empty()
    });
    a.edges.retain(|_, e| {
        e.calls + e.client.count() + e.server.count() + e.queue.count() + e.gap.count() > 0
    });
    a.facts.ops.retain(|_, o| o.traces > 0);
    a.facts.cp.retain(|_, c| c.traces > 0);
}

/// Whole counts from spread parts, rounded cumulatively so that none is lost in the
/// sharing: `[(a, 0.4), (b, 0.4), (c, 0.2)]` gives `a` 0, `b` 1, `c` 0.
fn integral(parts: &[(u64, f64)]) -> Vec<(u64, u64)> {
    let (mut acc, mut given) = (0.0f64, 0u64);
    let mut out = Vec::with_capacity(parts.len());
    for &(b, d) in parts {
        acc += d.max(0.0);
        let k = count(acc).saturating_sub(given);
        given += k;
        if k > 0 {
            out.push((b, k));
        }
    }
    out
}

/// The load slot a store's point falls in.
fn slot(t_s: f64) -> u64 {
    (t_s.max(0.0) * 1e9) as u64 / LOAD_BUCKET_NS
}

#[cfg(test)]
mod spread_tests {
    use super::integral;

    #[test]
    fn whole_counts_shared_over_buckets_lose_none() {
        let parts = [(1, 0.4), (2, 0.4), (3, 0.2)];
        assert_eq!(integral(&parts), vec![(2, 1)]);
        let many: Vec<(u64, f64)> = (0..60).map(|b| (b, 10.0 / 60.0)).collect();
        let got = integral(&many);
        assert_eq!(got.iter().map(|p| p.1).sum::<u64>(), 10);
        assert!(got.iter().all(|p| p.1 == 1), "{got:?}");
    }
}
