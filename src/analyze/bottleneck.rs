//! Bottleneck scores: who the end-to-end latency waits on, from the window's sums.
//!
//! - **share**: of all entry requests' end-to-end time, the part spent on the node on the
//!   critical path (own work plus the wait outside its server spans, which is where a
//!   saturated node shows). Traffic-weighted by construction: a sum over requests.
//! - **dominance, not rank**: the top node scores fully only when its share clearly exceeds
//!   the next one's; a balanced system has none.
//! - **caller or callee**: a wait outside a callee's span is the callee's, unless the caller
//!   shows the same wait on calls to all its callees: then the caller is slow to send and
//!   receive (its CPU starved, say) and the wait is the caller's.
//! - **change**: with a baseline, each node's critical-path time per request is compared for
//!   the same entry operations; the increase, as a part of today's latency and weighed by how
//!   sudden it is (a 10× jump outranks a 10% drift), is the main signal.
//! - **asynchronous backlog**: queue delay before a consumer, its level and growth.

use rustc_hash::FxHashMap;
use serde_json::{json, Map, Value};

use super::facts::OpKey;
use super::graph::{ConnType, GraphAgg, NodeId};
use crate::findings::{human_ms, ms, pct, r3, Confidence, Context, Finding, FindingKind, Severity};
use crate::hist::Hist;
use crate::model::NodeType;

/// Per-node critical-path totals (ns) after the caller/callee reassignment.
#[derive(Default, Clone, Copy)]
struct Cp {
    own: f64,
    queue: f64,
}

impl Cp {
    fn total(self) -> f64 {
        self.own + self.queue
    }
}

/// Callers whose calls wait about equally long outside every callee's span: their own
/// sending and receiving is slow. Returns caller → median gap (ms) over its callees.
fn slow_callers(cur: &GraphAgg) -> FxHashMap<NodeId, f64> {
    let mut gaps: FxHashMap<NodeId, Vec<f64>> = FxHashMap::default();
    for (k, e) in &cur.edges {
        if k.conn == ConnType::Sync && k.from != k.to && e.gap.count() >= 3 {
            gaps.entry(k.from)
                .or_default()
                .push(e.gap.quantile_ns(0.5) as f64 / 1e6);
        }
    }
    gaps.into_iter()
        .filter_map(|(caller, mut g)| {
            if g.len() < 2 {
                return None;
            }
            g.sort_by(f64::total_cmp);
            let (min, max) = (g[0], g[g.len() - 1]);
            (max >= 1.0 && min >= 0.5 * max).then(|| (caller, g[g.len() / 2]))
        })
        .collect()
}

fn node_cp(cur: &GraphAgg, slow: &FxHashMap<NodeId, f64>) -> FxHashMap<NodeId, Cp> {
    let mut cp: FxHashMap<NodeId, Cp> = FxHashMap::default();
    for ((op, n), c) in &cur.facts.cp {
        if op.background {
            continue;
        }
        let e = cp.entry(*n).or_default();
        e.own += c.own_ns as f64;
        e.queue += c.queue_ns as f64;
    }
    for ((caller, callee), ns) in &cur.facts.waits {
        if slow.contains_key(caller) && caller != callee {
            let ns = *ns as f64;
            let e = cp.entry(*callee).or_default();
            e.queue = (e.queue - ns).max(0.0);
            cp.entry(*caller).or_default().own += ns;
        }
    }
    cp
}

/// Critical-path ns per node expected from the baseline for today's mix of entry operations,
/// and today's actual, over the operations both windows have.
struct Change {
    expected: FxHashMap<NodeId, f64>,
    actual: FxHashMap<NodeId, f64>,
    traces: u64,
    e2e_ns: f64,
    baseline_e2e_per_trace: f64,
}

fn change(cur: &GraphAgg, base: &GraphAgg) -> Option<Change> {
    let mut ch = Change {
        expected: FxHashMap::default(),
        actual: FxHashMap::default(),
        traces: 0,
        e2e_ns: 0.0,
        baseline_e2e_per_trace: 0.0,
    };
    let mut base_e2e = 0.0;
    for (op, o) in &cur.facts.ops {
        let Some(b) = base.facts.ops.get(op).filter(|_| !op.background) else {
            continue;
        };
        ch.traces += o.traces;
        ch.e2e_ns += o.e2e_total_ns as f64;
        base_e2e += o.traces as f64 * b.e2e_total_ns as f64 / b.traces as f64;
        for ((bop, n), c) in &base.facts.cp {
            if bop == op {
                *ch.expected.entry(*n).or_default() +=
                    o.traces as f64 * (c.own_ns + c.queue_ns) as f64 / b.traces as f64;
            }
        }
        for ((cop, n), c) in &cur.facts.cp {
            if cop == op {
                *ch.actual.entry(*n).or_default() += (c.own_ns + c.queue_ns) as f64;
            }
        }
    }
    if ch.traces == 0 {
        return None;
    }
    ch.baseline_e2e_per_trace = base_e2e / ch.traces as f64;
    Some(ch)
}

/// Projected end-to-end p50/p99 (ms) if `node` were twice as fast: each sampled trace's
/// latency less half the node's critical-path time (CRISP's projection; a parallel branch
/// that would become critical instead is not modelled).
fn what_if(cur: &GraphAgg, node: NodeId) -> Option<Value> {
    let mut now: Vec<f64> = Vec::new();
    let mut then: Vec<f64> = Vec::new();
    for s in cur.facts.samples.items() {
        let mine: u64 = s.cp.iter().filter(|c| c.0 == node).map(|c| c.1).sum();
        now.push(s.e2e_ns as f64);
        then.push(s.e2e_ns as f64 - mine as f64 / 2.0);
    }
    if now.is_empty() {
        return None;
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        ms(v[i])
    };
    Some(json!({
        "sampled_traces": now.len(),
        "e2e_p50_ms_now": q(&mut now, 0.5),
        "e2e_p99_ms_now": q(&mut now, 0.99),
        "e2e_p50_ms_if_2x_faster": q(&mut then, 0.5),
        "e2e_p99_ms_if_2x_faster": q(&mut then, 0.99),
    }))
}

/// Saturation: does the node's latency rise with its request rate across load buckets?
/// Reported (as evidence) when at least five buckets show a clear positive correlation.
fn saturation(cur: &GraphAgg, node: NodeId) -> Option<Value> {
    let load = &cur.nodes.get(&node)?.load;
    let pts: Vec<(f64, f64)> = load
        .values()
        .filter(|(c, _)| *c > 0)
        .map(|(c, sum)| (*c as f64, *sum as f64 / *c as f64 / 1e6))
        .collect();
    if pts.len() < 5 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pts {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let r = sxy / (sxx * syy).sqrt();
    let per_s = crate::analyze::graph::LOAD_BUCKET_NS as f64 / 1e9;
    Some(json!({
        "buckets": pts.len(),
        "correlation": r3(r),
        "ms_per_extra_request_per_s": r3(sxy / sxx * per_s),
        "saturating": r >= 0.6 && sxy > 0.0,
    }))
}

fn op_name(ctx: &Context<'_>, op: &OpKey) -> String {
    format!("{} {}", ctx.name(op.service), ctx.names.resolve(op.name))
}

fn remediation(ty: NodeType, backlog: bool) -> &'static str {
    if backlog {
        return "The consumer can't keep up: scale it out (more instances, and enough partitions \
                for them), process messages in batches or with background workers, and alert \
                on consumer lag.";
    }
    match ty {
        NodeType::Service => {
            "Scale it out, optimise or cache its hot path, and move work that the response \
             doesn't need off the request path (asynchronous processing)."
        }
        NodeType::Database => {
            "Find the slow statements (indexes, query plans), add read replicas or a cache; for \
             state writes on every request, consider a faster store or the outbox pattern."
        }
        NodeType::External => {
            "Cache its answers, call it in parallel or asynchronously where the flow allows, \
             and set tight timeouts so its slowness can't hold every request."
        }
        NodeType::Messaging => {
            "Publishing waits on the broker: publish asynchronously (batching, acks off the \
             request path) or scale the broker."
        }
    }
}

struct Candidate {
    score: f64,
    summary: String,
    evidence: Map<String, Value>,
    confidence: Confidence,
    backlog: bool,
}

pub fn score(cur: &GraphAgg, base: Option<&GraphAgg>, ctx: &Context<'_>) -> Vec<Finding> {
    let f = &cur.facts;
    let mut cands: FxHashMap<NodeId, Candidate> = FxHashMap::default();
    let confidence = Confidence::of_traces(f.traces);
    if f.traces > 0 && f.e2e_total_ns > 0 {
        let slow = slow_callers(cur);
        let cp = node_cp(cur, &slow);
        let total = f.e2e_total_ns as f64;
        let mut shares: Vec<(NodeId, f64)> =
            cp.iter().map(|(n, c)| (*n, c.total() / total)).collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let ch = base.and_then(|b| change(cur, b));
        for (rank, &(n, share)) in shares.iter().enumerate() {
            let next = shares
                .iter()
                .enumerate()
                .find(|(r, _)| *r != rank)
                .map_or(0.0, |(_, s)| s.1);
            let dominance = share / next.max(1e-9);
            let dom_factor = if rank > 0 {
                0.6
            } else if dominance >= 2.0 {
                1.0
            } else if dominance >= 1.3 {
                0.8
            } else {
                0.6
            };
            let share_score = share * dom_factor;
            let c = cp.get(&n).copied().unwrap_or_default();
            let mut ev = Map::new();
            ev.insert("critical_path_share".into(), json!(r3(share)));
            ev.insert("own_share".into(), json!(r3(c.own / total)));
            ev.insert("queueing_share".into(), json!(r3(c.queue / total)));
            ev.insert("dominance_over_next".into(), json!(r3(dominance.min(1e6))));
            let mut per_trace = Hist::default();
            let mut on_path = 0;
            let mut ops: Vec<(String, f64, u64)> = Vec::new();
            for ((op, node), a) in &f.cp {
                if *node != n || op.background {
                    continue;
                }
                per_trace.add(&a.per_trace);
                on_path += a.traces;
                if let Some(o) = f.ops.get(op) {
                    let s = (a.own_ns + a.queue_ns) as f64 / o.e2e_total_ns.max(1) as f64;
                    ops.push((op_name(ctx, op), s, o.traces));
                }
            }
            ops.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ev.insert("traces_on_path".into(), json!(on_path));
            ev.insert(
                "per_trace_ms".into(),
                json!({"p50": ms(per_trace.quantile_ns(0.5) as f64), "p99": ms(per_trace.quantile_ns(0.99) as f64)}),
            );
            ev.insert(
                "per_operation".into(),
                Value::Array(
                    ops.iter()
                        .take(5)
                        .map(|(o, s, t)| json!({"operation": o, "share": r3(*s), "traces": t}))
                        .collect(),
                ),
            );
            if let Some(gap) = slow.get(&n) {
                ev.insert("slow_to_send_and_receive_ms".into(), json!(r3(*gap)));
            }
            let mut score = share_score;
            let name = ctx.name(n);
            let mut summary = format!(
                "{name} holds {} of end-to-end request time on the critical path",
                pct(share)
            );
            if c.queue > 0.05 * c.total() {
                summary.push_str(&format!(
                    ", {} of it spent by callers waiting outside its own spans (queueing, \
                     network, a starved process)",
                    pct(c.queue / c.total())
                ));
            }
            if let Some(ch) = &ch {
                let act = ch.actual.get(&n).copied().unwrap_or(0.0);
                let exp = ch.expected.get(&n).copied().unwrap_or(0.0);
                let per = |x: f64| x / ch.traces as f64;
                let ratio = (per(act) + 1e6) / (per(exp) + 1e6);
                let explained = (act - exp) / ch.e2e_ns.max(1.0);
                let sudden = (ratio.log2() / 3.0).clamp(0.0, 1.0);
                let change_score = (explained * sudden * 1.5).clamp(0.0, 1.0);
                ev.insert(
                    "change".into(),
                    json!({
                        "baseline_ms_per_request": ms(per(exp)),
                        "now_ms_per_request": ms(per(act)),
                        "ratio": r3(ratio),
                        "explains_share_of_latency": r3(explained),
                        "baseline_e2e_ms_per_request": ms(ch.baseline_e2e_per_trace),
                        "now_e2e_ms_per_request": ms(ch.e2e_ns / ch.traces as f64),
                        "compared_traces": ch.traces,
                    }),
                );
                // Against a baseline, change is the signal; a node as heavy as it always was
                // is not news.
                score = change_score.max(share_score * 0.5);
                if explained > 0.05 && ratio > 1.5 {
                    summary = format!(
                        "{name}'s critical-path time per request rose from {} to {} ({:.1}×), \
                         {} of today's end-to-end latency",
                        human_ms(per(exp) / 1e6),
                        human_ms(per(act) / 1e6),
                        ratio,
                        pct(explained)
                    );
                }
            }
            if let Some(sat) = saturation(cur, n) {
                ev.insert("latency_vs_load".into(), sat);
            }
            if let Some(w) = what_if(cur, n) {
                ev.insert("what_if_2x_faster".into(), w);
            }
            cands.insert(
                n,
                Candidate {
                    score,
                    summary,
                    evidence: ev,
                    confidence,
                    backlog: false,
                },
            );
        }
    }
    backlogs(cur, base, ctx, &mut cands);
    let mut out = Vec::new();
    for (n, c) in cands {
        let Some(severity) = Severity::of(c.score) else {
            continue;
        };
        let ty = ctx.node_type(n);
        out.push(Finding {
            kind: FindingKind::Bottleneck,
            node: n,
            node_name: ctx.name(n),
            node_type: ty,
            score: r3(c.score.min(1.0)),
            severity,
            confidence: c.confidence,
            summary: c.summary,
            evidence: c.evidence,
            exemplars: f
                .slowest
                .get(&n)
                .map(|e| e.items().copied().collect())
                .unwrap_or_default(),
            remediation: remediation(ty, c.backlog).into(),
        });
    }
    out
}

/// Asynchronous hops: a consumer whose queue delay is long and growing can't keep up, even
/// though no request waits on it.
fn backlogs(
    cur: &GraphAgg,
    base: Option<&GraphAgg>,
    ctx: &Context<'_>,
    cands: &mut FxHashMap<NodeId, Candidate>,
) {
    for (k, e) in &cur.edges {
        if k.conn != ConnType::Messaging || e.queue.count() < 5 {
            continue;
        }
        if ctx.node_type(k.to) != NodeType::Service {
            continue;
        }
        let p50 = e.queue.quantile_ns(0.5) as f64 / 1e6;
        let p99 = e.queue.quantile_ns(0.99) as f64 / 1e6;
        let slope = e.queue_trend.slope().unwrap_or(0.0);
        let span_s = e.queue_trend.max_x - e.queue_trend.min_x;
        let growth = slope * span_s;
        let growing = growth > 100.0 && growth > 0.5 * p50;
        let level = ((p99 / 50.0).log10() / 2.5).clamp(0.0, 1.0);
        let mut score = level * if growing { 1.0 } else { 0.6 };
        let mut ev = Map::new();
        ev.insert(
            "queue_delay_ms".into(),
            json!({"p50": r3(p50), "p99": r3(p99), "messages": e.queue.count()}),
        );
        ev.insert("queue_delay_growth_ms_per_s".into(), json!(r3(slope)));
        ev.insert(
            "queue_delay_growth_over_window_ms".into(),
            json!(r3(growth)),
        );
        ev.insert("via".into(), json!(ctx.name(k.from)));
        if let Some(b) = base.and_then(|b| b.edges.get(k)) {
            let bp99 = b.queue.quantile_ns(0.99) as f64 / 1e6;
            ev.insert("baseline_queue_delay_p99_ms".into(), json!(r3(bp99)));
            if bp99 > 0.0 && p99 < 2.0 * bp99 {
                score *= 0.3; // as backed up as it always is
            }
        }
        let name = ctx.name(k.to);
        let summary =
            format!(
            "{name} can't keep up: messages wait {} (p50) / {} (p99) in {} before it starts on \
             them{}; no entry request waits on it, so end-to-end latency doesn't show it",
            human_ms(p50),
            human_ms(p99),
            ctx.name(k.from),
            if growing {
                format!(", and the delay grew by {} over the window", human_ms(growth))
            } else {
                String::new()
            }
        );
        let conf = Confidence::of_traces(e.queue.count());
        match cands.get_mut(&k.to) {
            Some(c) if c.score >= score => {
                c.evidence.extend(ev);
            }
            Some(c) => {
                let mut evidence = ev;
                evidence.extend(std::mem::take(&mut c.evidence));
                *c = Candidate {
                    score,
                    summary,
                    evidence,
                    confidence: conf,
                    backlog: true,
                };
            }
            None => {
                cands.insert(
                    k.to,
                    Candidate {
                        score,
                        summary,
                        evidence: ev,
                        confidence: conf,
                        backlog: true,
                    },
                );
            }
        }
    }
}
