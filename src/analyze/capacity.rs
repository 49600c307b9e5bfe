//! Capacity and headroom: how many requests a second each node can complete, how far from
//! that it runs, and which node gives out first when traffic grows.
//!
//! Everything is read from a node's load buckets ([`LoadBucket`]), which add up across
//! windows, instances and shards, so a global view summed from many instances estimates the
//! same. The evidence, strongest first, names the limit:
//! - **saturation**: in some buckets requests queue before they start (most of them, for
//!   several service times): the node completes all it can, and the completion rate there is
//!   its capacity. A consumer behind its queue is a `consumer` limit, a service whose callers
//!   wait for a free worker a `concurrency` limit (its slots per instance are the requests in
//!   flight then, by Little's law).
//! - **queueing model**: some requests queue, not most: with the requests in flight per
//!   instance `A` and the part that queued `P`, the number of slots `k` is the one whose
//!   Erlang C probability of waiting at `A` is `P` (an M/M/k queue per instance); capacity is
//!   instances × k ÷ service time. Extrapolated, so its confidence says how far.
//! - **latency against load**: the node's own latency climbs with its rate across buckets as
//!   a queue in front of a fixed rate does (`L = L0 / (1 - λ/μ)`, linear in `1/L`): `μ` is
//!   the rate where latency diverges.
//! - otherwise **unknown**, with the reason.

use super::graph::{ConnType, GraphAgg, LoadBucket, LOAD_BUCKET_NS};
use super::node::NodeId;
use super::stats::{fit_line, Line};
use super::thresholds::{
    CAPACITY_CURRENT_BUCKETS, CAPACITY_CURRENT_MIN_S, CAPACITY_FIT_MIN_BUCKETS,
    CAPACITY_FIT_MIN_CORRELATION, CAPACITY_FIT_MIN_SPREAD, CAPACITY_MODEL_MAX_MISFIT,
    CAPACITY_MODEL_MIN_KNOWN, CAPACITY_MODEL_MIN_WAITED, CAPACITY_SATURATED_MIN_BUCKETS,
    CAPACITY_SATURATED_MIN_IN_FLIGHT, CAPACITY_SATURATED_WAITED, CAPACITY_SATURATED_WAIT_SERVICES,
    CAPACITY_SEEN_MEDIUM, CAPACITY_TOP_BUCKETS,
};

/// What bounds a node's throughput.
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// A fixed number of requests in flight per instance (workers, threads, a pool).
    Concurrency,
    /// A consumer that completes a fixed rate while its queue grows.
    Consumer,
    /// A rate where latency diverges, fitted from latency against load.
    Latency,
    /// Nothing in the traces bounds it yet.
    Unknown,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How much of the range up to capacity was seen.
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Certainty {
    /// Extrapolated from well below capacity.
    Low,
    /// Seen at half its capacity or more.
    Medium,
    /// Seen at capacity, in several buckets.
    High,
}

impl Certainty {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the expected latency at another load is computed from (enough to answer a what-if
/// without the aggregates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub limit: Limit,
    pub capacity_rps: f64,
    /// Mean time a request is served, seconds.
    pub service_s: f64,
    /// Slots per instance, for a concurrency limit.
    pub slots: f64,
    pub instances: f64,
    /// Latency at no load, seconds, for a latency fit.
    pub base_s: f64,
}

impl Model {
    /// Expected latency (seconds, waiting included) at `rate_rps`; `None` when the rate is
    /// at or past capacity: the queue then grows without bound.
    pub fn latency_s(&self, rate_rps: f64) -> Option<f64> {
        if rate_rps >= self.capacity_rps {
            return None;
        }
        match self.limit {
            Limit::Concurrency => {
                let a = rate_rps * self.service_s / self.instances.max(1.0);
                let k = self.slots.round().max(1.0) as usize;
                let wait = erlang_c(k, a) * self.service_s / (k as f64 - a);
                Some(self.service_s + wait)
            }
            Limit::Consumer => Some(
                self.service_s.max(1.0 / self.capacity_rps) / (1.0 - rate_rps / self.capacity_rps),
            ),
            Limit::Latency => Some(self.base_s / (1.0 - rate_rps / self.capacity_rps)),
            Limit::Unknown => None,
        }
    }
}

/// One node's capacity, now.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub node: NodeId,
    /// Requests sent to it per second over the last half minute it was asked.
    pub rate_rps: f64,
    /// Requests it completed per second over the same half minute.
    pub done_rps: f64,
    pub capacity_rps: Option<f64>,
    pub limit: Limit,
    pub certainty: Certainty,
    /// How the estimate was made, or why there is none.
    pub reason: String,
    pub instances: Option<usize>,
    /// Mean time a request is served (its span, or its callers' client span for a node
    /// seen only from them), ms.
    pub service_time_ms: Option<f64>,
    /// Requests in flight per instance over the same half minute, on average.
    pub concurrency: Option<f64>,
    /// Slots per instance, for a concurrency limit.
    pub slots: Option<f64>,
    /// Requests sent faster than completed: its queue grows now.
    pub queue_growing: bool,
    /// Some spans carried a sampling threshold and were counted by their adjusted count.
    pub sampled: bool,
    pub model: Option<Model>,
}

impl Capacity {
    /// Capacity over the current rate: the factor by which its load can grow.
    pub fn headroom(&self) -> Option<f64> {
        let c = self.capacity_rps?;
        (self.rate_rps > 0.0).then(|| c / self.rate_rps)
    }
}

/// One bucket's figures, per second of the span time it covers.
#[derive(Debug, Clone, Copy)]
struct Pt {
    width_s: f64,
    b: LoadBucket,
}

impl Pt {
    fn done_rps(&self) -> f64 {
        self.b.done / self.width_s
    }
}

fn sum(pts: &[Pt], f: impl Fn(&LoadBucket) -> f64) -> f64 {
    pts.iter().map(|p| f(&p.b)).sum()
}

fn width(pts: &[Pt]) -> f64 {
    pts.iter().map(|p| p.width_s).sum()
}

/// Capacity of every node that served requests in `g`, by node id.
pub fn estimate(g: &GraphAgg) -> Vec<Capacity> {
    let mut ids: Vec<NodeId> = g.nodes.keys().copied().collect();
    ids.sort_unstable();
    ids.into_iter().filter_map(|id| node(g, id)).collect()
}

/// The node first to saturate as entry traffic grows (each node's load grows with it, by its
/// calls per entry request), and the factor at which it does: the smallest headroom.
pub fn first_to_saturate(caps: &[Capacity]) -> Option<(NodeId, f64)> {
    caps.iter()
        .filter_map(|c| Some((c.node, c.headroom()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
}

fn node(g: &GraphAgg, id: NodeId) -> Option<Capacity> {
    let n = g.nodes.get(&id)?;
    let w = LOAD_BUCKET_NS as f64 / 1e9;
    // Each bucket's width within the span time analysed; buckets the window's edges cut to
    // less than half of the widest say little and are left out (a window shorter than a
    // bucket keeps what it has).
    let widths: Vec<(f64, &LoadBucket)> = n
        .load
        .iter()
        .map(|(slot, b)| {
            let from = (slot * LOAD_BUCKET_NS).max(g.start_ns);
            let to = ((slot + 1) * LOAD_BUCKET_NS).min(g.end_ns);
            (to.saturating_sub(from) as f64 / 1e9, b)
        })
        .collect();
    let widest = widths.iter().map(|p| p.0).fold(0.0, f64::max).min(w);
    let pts: Vec<Pt> = widths
        .into_iter()
        .filter(|(width_s, _)| *width_s > 0.0 && *width_s >= 0.5 * widest)
        .map(|(width_s, b)| Pt { width_s, b: *b })
        .collect();
    let done = sum(&pts, |b| b.done);
    if done <= 0.0 {
        return None;
    }
    let instances = n.instances.serving_count();
    let per = instances.unwrap_or(1).max(1) as f64;
    // The last half minute it was asked, before the bucket it was last asked in: that one
    // is cut short by the end of its traffic (or, live, still filling).
    let asked: Vec<usize> = (0..pts.len()).filter(|&i| pts[i].b.arrived > 0.0).collect();
    let last = match asked.as_slice() {
        [] => return None,
        [only] => *only,
        [.., before, _] => *before,
    };
    let now = &pts[(last + 1).saturating_sub(CAPACITY_CURRENT_BUCKETS)..=last];
    let now_w = width(now);
    let rate_rps = sum(now, |b| b.arrived) / now_w;
    let done_rps = sum(now, |b| b.done) / now_w;
    let service_s = sum(&pts, |b| b.busy_ns) / 1e9 / done;
    let mut c = Capacity {
        node: id,
        rate_rps,
        done_rps,
        capacity_rps: None,
        limit: Limit::Unknown,
        certainty: Certainty::Low,
        reason: String::new(),
        instances,
        service_time_ms: Some(service_s * 1e3),
        concurrency: Some(sum(now, |b| b.busy_ns) / 1e9 / now_w / per),
        slots: None,
        queue_growing: rate_rps > 1.05 * done_rps && rate_rps - done_rps > 0.05,
        sampled: pts.iter().any(|p| p.b.sampled > 0),
        model: None,
    };
    let consumer = g
        .edges
        .keys()
        .any(|k| k.to == id && k.conn == ConnType::Messaging);
    let peak = pts.iter().map(Pt::done_rps).fold(0.0, f64::max);
    if saturated(&mut c, &pts, service_s, per, consumer)
        || queueing_model(&mut c, &pts, service_s, per)
        || latency_fit(&mut c, &pts, done)
    {
        if let Some(cap) = c.capacity_rps {
            let seen = peak / cap;
            if c.certainty < Certainty::High {
                c.certainty = if seen >= CAPACITY_SEEN_MEDIUM {
                    Certainty::Medium
                } else {
                    Certainty::Low
                };
            }
            if c.certainty == Certainty::Low {
                c.reason.push_str(&format!(
                    "; extrapolated: the busiest 10 s seen ran at {:.0}% of it",
                    100.0 * seen
                ));
            }
            if now_w < CAPACITY_CURRENT_MIN_S && c.certainty > Certainty::Low {
                c.certainty = Certainty::Low;
                c.reason.push_str(&format!(
                    "; low confidence: the current rate is measured over {now_w:.1} s of span time only"
                ));
            }
        }
        return Some(c);
    }
    c.reason = if pts.len() < CAPACITY_FIT_MIN_BUCKETS {
        format!(
            "unknown: {} load bucket(s) of 10 s, too few to see latency against load",
            pts.len()
        )
    } else {
        "unknown: no request queued before it started, and latency does not climb with load"
            .to_owned()
    };
    Some(c)
}

/// Buckets where most requests queued, for several service times: the node did all it
/// could, so what it completed there is its capacity.
fn saturated(c: &mut Capacity, pts: &[Pt], service_s: f64, per: f64, consumer: bool) -> bool {
    let sat: Vec<Pt> = pts
        .iter()
        .filter(|p| {
            p.b.wait_known > 0.0
                && p.b.waited >= CAPACITY_SATURATED_WAITED * p.b.wait_known
                && p.b.wait_ns / p.b.wait_known
                    >= CAPACITY_SATURATED_WAIT_SERVICES * service_s * 1e9
        })
        .copied()
        .collect();
    if sat.len() < CAPACITY_SATURATED_MIN_BUCKETS {
        return false;
    }
    // Completions cannot exceed capacity, but a bucket at the edge of saturation completes
    // less: the capacity is what the busiest of them completed.
    let top = sat.iter().map(Pt::done_rps).fold(0.0, f64::max);
    let busiest: Vec<Pt> = sat
        .iter()
        .filter(|p| p.done_rps() >= CAPACITY_TOP_BUCKETS * top)
        .copied()
        .collect();
    let cap = sum(&busiest, |b| b.done) / width(&busiest);
    let in_flight = sum(&busiest, |b| b.busy_ns) / 1e9 / width(&busiest) / per;
    // A node that does all it can is busy all the time. Waits while it idles are someone
    // else's (a caller starved of CPU, a slow network), not its limit.
    if in_flight < CAPACITY_SATURATED_MIN_IN_FLIGHT {
        return false;
    }
    let wait_s = sum(&sat, |b| b.wait_ns) / sum(&sat, |b| b.wait_known) / 1e9;
    c.capacity_rps = Some(cap);
    c.certainty = if busiest.len() >= 3 {
        Certainty::High
    } else {
        Certainty::Medium
    };
    if consumer {
        c.limit = Limit::Consumer;
        c.reason = format!(
            "a consumer completing at most {cap:.2}/s: in {} of its 10 s buckets most \
             messages waited (on average {wait_s:.1} s) in its queue",
            sat.len()
        );
        c.model = Some(Model {
            limit: Limit::Consumer,
            capacity_rps: cap,
            service_s,
            slots: in_flight,
            instances: per,
            base_s: service_s,
        });
    } else {
        c.limit = Limit::Concurrency;
        c.slots = Some(in_flight);
        c.reason = format!(
            "at most {in_flight:.1} request(s) in flight per instance while callers waited \
             (on average {:.0} ms) for it to start on theirs, in {} of its 10 s buckets: \
             {per} instance(s) × {in_flight:.1} ÷ {:.0} ms",
            wait_s * 1e3,
            sat.len(),
            service_s * 1e3
        );
        c.model = Some(Model {
            limit: Limit::Concurrency,
            capacity_rps: cap,
            service_s,
            slots: in_flight.round().max(1.0),
            instances: per,
            base_s: service_s,
        });
    }
    true
}

/// Some requests queued, most did not: the slots per instance from the Erlang C
/// probability of waiting.
fn queueing_model(c: &mut Capacity, pts: &[Pt], service_s: f64, per: f64) -> bool {
    let known = sum(pts, |b| b.wait_known);
    let waited = sum(pts, |b| b.waited);
    if known < CAPACITY_MODEL_MIN_KNOWN || waited < CAPACITY_MODEL_MIN_WAITED || service_s <= 0.0 {
        return false;
    }
    let p = waited / known;
    let a = sum(pts, |b| b.busy_ns) / 1e9 / width(pts) / per;
    if a <= 0.0 {
        return false;
    }
    let first = a.floor() as usize + 1;
    let Some(k) = (first..first + 256).min_by(|&x, &y| {
        let d = |k: usize| (erlang_c(k, a).max(1e-12).ln() - p.ln()).abs();
        d(x).total_cmp(&d(y))
    }) else {
        return false;
    };
    // Waits its own load cannot explain (far more than the best k predicts) are someone
    // else's: a starved caller, a slow network.
    let predicted = erlang_c(k, a);
    if predicted * CAPACITY_MODEL_MAX_MISFIT < p || p * CAPACITY_MODEL_MAX_MISFIT < predicted {
        return false;
    }
    let cap = per * k as f64 / service_s;
    c.capacity_rps = Some(cap);
    c.limit = Limit::Concurrency;
    c.slots = Some(k as f64);
    c.reason = format!(
        "{k} slot(s) per instance, from {:.1}% of requests queueing before they started at \
         {a:.2} in flight per instance (Erlang C): {per} instance(s) × {k} ÷ {:.0} ms",
        100.0 * p,
        service_s * 1e3
    );
    c.model = Some(Model {
        limit: Limit::Concurrency,
        capacity_rps: cap,
        service_s,
        slots: k as f64,
        instances: per,
        base_s: service_s,
    });
    true
}

/// Latency against load, fitted as a queue in front of a fixed rate: `1/L` falls linearly
/// with the rate and reaches zero at capacity.
fn latency_fit(c: &mut Capacity, pts: &[Pt], done: f64) -> bool {
    let xy: Vec<(f64, f64)> = pts
        .iter()
        .filter(|p| p.b.requests >= 5 && p.b.latency_ns > 0)
        .map(|p| {
            let l = p.b.latency_ns as f64 / p.b.requests as f64 / 1e9;
            (p.b.requests as f64 / p.width_s, 1.0 / l)
        })
        .collect();
    if xy.len() < CAPACITY_FIT_MIN_BUCKETS {
        return false;
    }
    let (lo, hi) = xy
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    if hi < CAPACITY_FIT_MIN_SPREAD * lo {
        return false;
    }
    let Some(Line {
        slope,
        intercept,
        r,
        ..
    }) = fit_line(&xy)
    else {
        return false;
    };
    if r > -CAPACITY_FIT_MIN_CORRELATION || slope >= 0.0 || intercept <= 0.0 {
        return false;
    }
    // The fit is over raw span counts; sampling scales the rate by the adjusted count.
    let raw: f64 = pts.iter().map(|p| p.b.requests as f64).sum();
    let scale = if raw > 0.0 { done / raw } else { 1.0 };
    let mu = -intercept / slope;
    if mu <= hi {
        return false;
    }
    let cap = mu * scale;
    c.capacity_rps = Some(cap);
    c.limit = Limit::Latency;
    c.reason = format!(
        "latency climbs with load as a queue's does (r = {r:.2} over {} buckets), \
         diverging at {cap:.1}/s",
        xy.len()
    );
    c.model = Some(Model {
        limit: Limit::Latency,
        capacity_rps: cap,
        service_s: c.service_time_ms.unwrap_or(0.0) / 1e3,
        slots: 0.0,
        instances: c.instances.unwrap_or(1) as f64,
        base_s: 1.0 / intercept,
    });
    true
}

/// Erlang C: the probability that a request to `k` servers offered `a` erlangs of load
/// waits (1 at or past saturation).
pub fn erlang_c(k: usize, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    let kf = k as f64;
    if a >= kf {
        return 1.0;
    }
    // Erlang B by its recursion, stable for large k.
    let mut b = 1.0;
    for i in 1..=k {
        b = a * b / (i as f64 + a * b);
    }
    kf * b / (kf - a * (1.0 - b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_known_values() {
        // One server: the probability of waiting is the utilisation.
        assert!((erlang_c(1, 0.5) - 0.5).abs() < 1e-12);
        // Two servers at 0.6 erlangs: 0.18 * 2/1.4 / (1 + 0.6 + 0.18 * 2/1.4).
        let want = (0.18 * 2.0 / 1.4) / (1.6 + 0.18 * 2.0 / 1.4);
        assert!((erlang_c(2, 0.6) - want).abs() < 1e-12);
        assert_eq!(erlang_c(4, 4.0), 1.0);
        assert_eq!(erlang_c(4, 0.0), 0.0);
        // It falls as servers are added.
        assert!(erlang_c(3, 2.0) > erlang_c(4, 2.0));
    }

    #[test]
    fn the_model_diverges_at_capacity() {
        let m = Model {
            limit: Limit::Concurrency,
            capacity_rps: 20.0,
            service_s: 0.2,
            slots: 2.0,
            instances: 2.0,
            base_s: 0.2,
        };
        let low = m.latency_s(2.0).unwrap();
        let high = m.latency_s(19.0).unwrap();
        assert!(low < 0.21 && high > low, "{low} {high}");
        assert!(m.latency_s(20.0).is_none());
    }
}
