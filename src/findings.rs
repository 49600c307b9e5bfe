//! Findings: what is weak, how sure, the numbers behind it, and the cure. The scorers
//! (`analyze::bottleneck`, `analyze::spof`) return typed scores; this module decides
//! severity and confidence from them, writes the summary and fits the cure to the node's
//! type, system and cause. [`compute`] works from a window's aggregates (and optionally a
//! baseline's) alone.

use crate::analyze::bottleneck::{self, BottleneckScore, Cause};
use crate::analyze::graph::{GraphAgg, NodeId, NodeTable};
use crate::analyze::spof::{self, SpofScore};
use crate::analyze::thresholds::{
    ANECDOTE_TRACES, CONFIDENCE_UNITS, CONSISTENT_HIGH, CONSISTENT_MEDIUM, MAX_SYSTEMIC_HIGH,
    SEVERITY,
};
use crate::model::{Interner, NodeType, TraceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    Bottleneck,
    Spof,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Bottleneck => "bottleneck",
            FindingKind::Spof => "spof",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// From a score in 0..=1 ([`SEVERITY`]); below `low`, nothing is reported.
    pub fn of(score: f64) -> Option<Severity> {
        Some(match score {
            s if s >= SEVERITY[3] => Severity::Critical,
            s if s >= SEVERITY[2] => Severity::High,
            s if s >= SEVERITY[1] => Severity::Medium,
            s if s >= SEVERITY[0] => Severity::Low,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    /// From how many traces (or calls) carry the signal and how consistently they show it:
    /// a jump seen in 60% of 500 requests is firmer than one seen in 2 of 5,000.
    pub fn of(units: u64, consistency: f64) -> Confidence {
        if units >= CONFIDENCE_UNITS[1] && consistency >= CONSISTENT_HIGH {
            Confidence::High
        } else if units >= CONFIDENCE_UNITS[0] && consistency >= CONSISTENT_MEDIUM {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }

    pub fn lower(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// The typed numbers behind a finding.
#[derive(Debug, Clone)]
pub enum Evidence {
    Bottleneck(Box<BottleneckScore>),
    Spof(Box<SpofScore>),
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    pub node: NodeId,
    pub node_name: String,
    pub node_type: NodeType,
    pub score: f64,
    pub severity: Severity,
    pub confidence: Confidence,
    /// It harms requests now (a jump against the baseline; failures failing requests).
    pub active: bool,
    pub summary: String,
    pub evidence: Evidence,
    pub exemplars: Vec<TraceId>,
    pub remediation: String,
}

impl Finding {
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.node_name)
    }
}

/// What the scorers need besides the aggregates.
pub struct Context<'a> {
    pub nodes: &'a NodeTable,
    pub names: &'a Interner,
}

impl Context<'_> {
    pub fn name(&self, n: NodeId) -> String {
        self.names.resolve(self.nodes.key(n).name).to_owned()
    }

    pub fn node_type(&self, n: NodeId) -> NodeType {
        self.nodes.key(n).ty
    }

    pub fn op_name(&self, op: &crate::analyze::facts::OpKey) -> String {
        format!("{} {}", self.name(op.service), self.names.resolve(op.name))
    }
}

/// A background operation: traces whose root serves no user (a poller, a cron job, a
/// worker's loop). Shown apart from the findings, never part of them.
#[derive(Debug, Clone)]
pub struct BackgroundOp {
    pub operation: String,
    pub traces: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What a window's analysis says: its findings (one per kind and node; active ones first,
/// then by severity and score), notes that concern the whole system, and the background
/// work kept apart.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    pub background: Vec<BackgroundOp>,
}

/// Everything a window's aggregates (and a baseline's) say.
pub fn compute(cur: &GraphAgg, baseline: Option<&GraphAgg>, ctx: &Context<'_>) -> Report {
    let ty = |n: NodeId| ctx.node_type(n);
    let mut all: Vec<Finding> = bottleneck::score(cur, baseline, &ty)
        .into_iter()
        .filter_map(|b| bottleneck_finding(cur, b, ctx))
        .collect();
    all.extend(
        spof::score(cur, baseline, &ty)
            .into_iter()
            .filter_map(|s| spof_finding(cur, s, ctx)),
    );
    all.sort_by(finding_order);
    // One finding per risk: the best of each (kind, node). The overflow node (names past
    // the limits, nodes folded by the memory budget) is many things, so no one risk.
    let mut seen = std::collections::BTreeSet::new();
    all.retain(|f| f.node != NodeTable::OVERFLOW && seen.insert((f.kind, f.node)));
    let mut notes = Vec::new();
    let systemic = all_single_instance(cur, ctx);
    if systemic.is_some() {
        // Said once as a note: of the SPOFs that are single instances only because everything
        // is, the most harmful few stay high (they come sorted by score).
        let mut high = 0;
        for f in all.iter_mut() {
            if f.kind == FindingKind::Spof && !f.active && f.severity == Severity::High {
                high += 1;
                if high > MAX_SYSTEMIC_HIGH {
                    f.severity = Severity::Medium;
                }
            }
        }
        all.sort_by(finding_order);
    }
    if let Some(n) = systemic {
        notes.push(format!(
            "Every one of the {n} services with identified instances runs as a single instance: \
             each is a single point of failure for the requests that wait on it. The SPOF \
             findings rank them by what their loss takes down (entry traffic that waits on \
             them, nodes reached only through them, failures seen)."
        ));
    }
    if cur.facts.traces > 0 && cur.facts.traces < ANECDOTE_TRACES {
        notes.push(format!(
            "Only {} user request(s) in this window: an anecdote, so nothing is rated above \
             medium.",
            cur.facts.traces
        ));
    }
    let mut background: Vec<BackgroundOp> = cur
        .facts
        .ops
        .iter()
        .filter(|(k, _)| k.background)
        .map(|(k, o)| BackgroundOp {
            operation: ctx.op_name(k),
            traces: o.traces,
            p50_ms: r3(o.e2e.quantile_ms(0.5)),
            p99_ms: r3(o.e2e.quantile_ms(0.99)),
        })
        .collect();
    background.sort_by(|a, b| b.traces.cmp(&a.traces).then(a.operation.cmp(&b.operation)));
    Report {
        findings: all,
        notes,
        background,
    }
}

/// Active ones first, then by severity and score.
fn finding_order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    b.active
        .cmp(&a.active)
        .then(b.severity.cmp(&a.severity))
        .then(b.score.total_cmp(&a.score))
        .then(a.kind.cmp(&b.kind))
        .then(a.node_name.cmp(&b.node_name))
}

/// `Some(n)` when at least three services have identified instances and every one of them
/// runs (serves now) as one.
fn all_single_instance(cur: &GraphAgg, ctx: &Context<'_>) -> Option<usize> {
    let mut n = 0;
    for (id, agg) in &cur.nodes {
        if ctx.node_type(*id) != NodeType::Service {
            continue;
        }
        match agg.instances.serving_count() {
            Some(1) => n += 1,
            Some(_) => return None,
            None => {}
        }
    }
    (n >= 3).then_some(n)
}

/// The system named in a backend's name (`orders (postgresql)` → `postgresql`), or the
/// name itself for a backend named after its system (`kafka`).
fn system_of(name: &str) -> &str {
    match name.rsplit_once(" (") {
        Some((_, rest)) => rest.trim_end_matches(')'),
        None => name,
    }
}

fn bottleneck_finding(cur: &GraphAgg, b: BottleneckScore, ctx: &Context<'_>) -> Option<Finding> {
    let mut severity = Severity::of(b.score)?;
    // Where the time goes is not harm; a handful of traces is an anecdote.
    if !b.harm || cur.facts.traces < ANECDOTE_TRACES || b.evidence_units < ANECDOTE_TRACES {
        severity = severity.min(Severity::Medium);
    }
    let node = b.node;
    let name = ctx.name(node);
    let ty = ctx.node_type(node);
    let confidence = Confidence::of(b.evidence_units, b.consistency);
    let summary = bottleneck_summary(&b, &name, ctx);
    let remediation = bottleneck_cure(ty, system_of(&name), b.cause, &name);
    let exemplars = cur
        .facts
        .slowest
        .get(&node)
        .map(|e| e.items().copied().collect())
        .unwrap_or_default();
    Some(Finding {
        kind: FindingKind::Bottleneck,
        node,
        node_name: name,
        node_type: ty,
        score: r3(b.score),
        severity,
        confidence,
        active: b.active,
        summary,
        evidence: Evidence::Bottleneck(Box::new(b)),
        exemplars,
        remediation,
    })
}

fn bottleneck_summary(b: &BottleneckScore, name: &str, ctx: &Context<'_>) -> String {
    let share = format!(
        "{name} holds {} of end-to-end request time on the critical path",
        pct(b.share.share)
    );
    match b.cause {
        Cause::Change => {
            let c = b.change.as_ref();
            c.map_or(share.clone(), |c| {
                format!(
                    "{name}'s critical-path time per request rose from {} to {} ({:.1}×) for \
                     requests of the same kind, {} of today's end-to-end latency",
                    human_ms(c.baseline_ms_per_request),
                    human_ms(c.now_ms_per_request),
                    c.ratio,
                    pct(c.explains_share_of_latency.max(0.0))
                )
            })
        }
        Cause::Waiting => b.waiting.as_ref().map_or(share.clone(), |w| {
            format!(
                "Callers wait {} (median) outside {name}'s own spans, {:.0}× the system's \
                 typical {}: requests queue before it starts on them (saturated, starved or \
                 a slow network to it), {} per request",
                human_ms(w.gap_p50_ms),
                w.ratio,
                human_ms(w.typical_gap_ms),
                human_ms(w.excess_ms_per_request)
            )
        }),
        Cause::SlowCaller => b.waiting.as_ref().map_or(share.clone(), |w| {
            format!(
                "{name} waits {} (median) on every one of its callees, {:.0}× the system's \
                 typical {}: its own process is slow to send and receive (CPU starved, \
                 paused), not its callees",
                human_ms(w.gap_p50_ms),
                w.ratio,
                human_ms(w.typical_gap_ms)
            )
        }),
        Cause::Backlog => b.backlog.as_ref().map_or(share.clone(), |q| {
            format!(
                "{name} can't keep up: messages wait {} (p50) / {} (p99) in {} before it starts \
                 on them{}; no entry request waits on it, so end-to-end latency doesn't show it",
                human_ms(q.p50_ms),
                human_ms(q.p99_ms),
                ctx.name(q.via),
                if q.growing {
                    format!(
                        ", and the delay grew by {} over the window",
                        human_ms(q.growth_over_window_ms)
                    )
                } else {
                    String::new()
                }
            )
        }),
        Cause::Saturation => b.saturation.as_ref().map_or(share.clone(), |s| {
            format!(
                "{name}'s latency climbs with load: {:.1}x slower in its busiest periods than \
                 in its quietest (correlation {:.2} over {} periods of 10 s); it is running \
                 out of capacity",
                s.busy_over_quiet, s.correlation, s.buckets
            )
        }),
        Cause::Share => {
            let mut s = share;
            if b.share.queue_share > 0.05 * b.share.share && b.share.share > 0.0 {
                s.push_str(&format!(
                    ", {} of it spent by callers waiting outside its own spans",
                    pct(b.share.queue_share / b.share.share)
                ));
            }
            match &b.what_if {
                Some(w) => format!(
                    "{s}; twice as fast, it would save users {} at the median and {} at p99 \
                     ({} of its operations' median request)",
                    human_ms(w.saves_p50_ms().max(0.0)),
                    human_ms(w.saves_p99_ms().max(0.0)),
                    pct(w.saves_share_of_median)
                ),
                None => s,
            }
        }
    }
}

/// The cure, fitted to the node's type, its system and why it is a bottleneck.
fn bottleneck_cure(ty: NodeType, system: &str, cause: Cause, name: &str) -> String {
    if cause == Cause::Backlog {
        return "The consumer can't keep up: scale it out (more instances, and enough \
                partitions or queues for them), process messages in batches or with background \
                workers, and alert on consumer lag."
            .into();
    }
    match (ty, cause) {
        (NodeType::Service, Cause::SlowCaller) => format!(
            "{name}'s own process is starved: give it CPU (raise or remove its CPU limit, move \
             it off a noisy node), look for GC pauses or a blocked event loop, size its thread \
             and connection pools, or run more instances."
        ),
        (NodeType::Service, Cause::Waiting) => format!(
            "Requests queue before {name} serves them: add instances or worker threads, raise \
             its CPU limit if it is throttled, check its connection and thread pools, and the \
             network path to it."
        ),
        (NodeType::Service, Cause::Saturation) => format!(
            "{name} runs out of capacity as load rises: scale it out (or autoscale on its \
             latency), raise its concurrency limits if it has idle CPU, and shed or queue load \
             it can't take."
        ),
        (NodeType::Service, Cause::Change) => format!(
            "Find what changed in {name} (a deploy, a dependency, data growth, a noisy \
             neighbour), then profile its hot path; scale it out or cache while you do."
        ),
        (NodeType::Service, _) => {
            "Profile and optimise its hot path, cache what it computes again and again, move \
             work the response doesn't need off the request path (asynchronous processing), \
             and scale it out."
                .into()
        }
        (NodeType::Database, _) => {
            let specific = match system {
                "redis" => {
                    "Look for slow commands (SLOWLOG), big keys and a saturated single thread; \
                     pipeline round trips, and shard with Redis Cluster."
                }
                "mongodb" => "Check the slow-query profiler and add the missing indexes.",
                "cassandra" => {
                    "Look for hot partitions and large partitions, and tune consistency levels."
                }
                "memcached" => "Check its hit rate and evictions; add memory or nodes.",
                _ => {
                    "Find the slow statements (indexes, query plans), cache hot reads and add read \
                     replicas; for writes on every request, batch them or use the outbox \
                     pattern."
                }
            };
            format!("{specific} Check its connection pool and the host's CPU and disk too.")
        }
        (NodeType::Messaging, _) => {
            "Publishing waits on the broker: publish asynchronously (batching, acknowledgements \
             off the request path) or scale the broker."
                .into()
        }
        (NodeType::External, _) => {
            "Cache its answers, call it in parallel or asynchronously where the flow allows, \
             and set tight timeouts so its slowness can't hold every request."
                .into()
        }
    }
}

fn spof_finding(cur: &GraphAgg, s: SpofScore, ctx: &Context<'_>) -> Option<Finding> {
    let mut severity = Severity::of(s.score)?;
    if cur.facts.traces < ANECDOTE_TRACES {
        severity = severity.min(Severity::Medium);
    }
    let node = s.node;
    let name = ctx.name(node);
    let ty = ctx.node_type(node);
    let mut confidence = Confidence::of(s.reach_operation_traces, s.reach);
    if s.instances.is_none() {
        confidence = confidence.lower();
    }
    if s.hardness.is_none() && !s.active && confidence == Confidence::High {
        confidence = Confidence::Medium;
    }
    let op = ctx.op_name(&s.reach_operation);
    let inst = match (s.instances, s.instances_seen) {
        (Some(1), Some(k)) if k > 1 => {
            format!("one instance serves it now (of {k} seen in the window)")
        }
        (Some(1), _) => "it runs as a single instance".to_owned(),
        (Some(k), _) => format!(
            "it runs as {k}{} instances",
            if s.instances_more { "+" } else { "" }
        ),
        (None, _) => "nothing identifies its instances, so its redundancy is unknown".to_owned(),
    };
    let hard = match s.hardness {
        Some(h) if s.fallback_seen => format!(
            "{} of the requests in which it failed failed too (its callers fell back in the rest)",
            pct(h)
        ),
        Some(h) => format!("{} of the requests in which it failed failed too", pct(h)),
        None => "it was never seen failing, so no fallback is known (untested: counted as hard)"
            .to_owned(),
    };
    let mut summary = format!(
        "{name}: its loss would fail {} of entry requests; {} of {op} requests wait on it \
         synchronously, {inst}, and {hard}",
        pct(s.requests_lost_share),
        pct(s.reach)
    );
    if s.active {
        if let Some(v) = &s.vanished {
            summary = format!(
                "{name} is failing requests now: {} of {} requests no longer make calls the \
                 baseline always made ({}); {summary}",
                pct(v.rate),
                ctx.op_name(&v.operation),
                if v.as_caller {
                    "it stopped making its calls midway"
                } else {
                    "calls to it stopped being answered"
                }
            );
        } else if let Some(f) = &s.failing_now {
            let when = match f.until_ns {
                Some(u) => format!(
                    " from {} to {}",
                    crate::model::rfc3339(f.since_ns),
                    crate::model::rfc3339(u)
                ),
                None => format!(
                    " since {}, still failing",
                    crate::model::rfc3339(f.since_ns)
                ),
            };
            summary = format!(
                "{name} is failing requests now: {} requests failed because of it{when} ({} of \
                 those that needed it while it failed, {} of all requests{}); {summary}",
                f.failed_requests,
                pct(f.rate_while_failing),
                pct(f.rate),
                f.baseline_rate
                    .map_or(String::new(), |b| format!(", baseline {}", pct(b)))
            );
        }
    }
    let mut exemplars: Vec<TraceId> = cur
        .facts
        .failures
        .get(&node)
        .map(|e| e.items().copied().collect())
        .unwrap_or_default();
    if exemplars.is_empty() {
        exemplars = cur
            .facts
            .slowest
            .get(&node)
            .map(|e| e.items().copied().collect())
            .unwrap_or_default();
    }
    let remediation = spof_cure(ty, system_of(&name), s.active);
    Some(Finding {
        kind: FindingKind::Spof,
        node,
        node_name: name,
        node_type: ty,
        score: r3(s.score),
        severity,
        confidence,
        active: s.active,
        summary,
        evidence: Evidence::Spof(Box::new(s)),
        exemplars,
        remediation,
    })
}

/// The cure, fitted to the node's type and system; when it is failing now, what to do first.
fn spof_cure(ty: NodeType, system: &str, active: bool) -> String {
    let cure = match ty {
        NodeType::Service => {
            "Run several instances behind a load balancer, in different zones; keep the state \
             they hold in a store that survives an instance, and give callers timeouts, \
             retries with backoff and a fallback."
        }
        NodeType::Database => match system {
            "postgresql" => {
                "Add a streaming replica with automatic failover (Patroni, or a managed \
                 high-availability service) and have clients reconnect to the new primary."
            }
            "mysql" | "mariadb" => {
                "Add a replica with automatic failover (Group Replication / InnoDB Cluster, \
                 Orchestrator, or a managed high-availability service)."
            }
            "redis" => "Run Redis Sentinel (a replica with automatic failover) or Redis Cluster.",
            "mongodb" => "Run a replica set of three members.",
            "cassandra" => "Use replication factor 3 and quorum reads and writes.",
            "memcached" => {
                "Spread keys over several nodes and let callers fall back to the source on a \
                 miss."
            }
            _ => "Add a replica with automatic failover and have clients reconnect to it.",
        },
        NodeType::Messaging => match system {
            "kafka" => {
                "Run three brokers with replication factor 3 and min.insync.replicas 2, so \
                 losing one broker loses no topic."
            }
            "rabbitmq" => "Run a three-node cluster with quorum queues.",
            "nats" => "Run a JetStream cluster with streams replicated three times.",
            _ => "Run a broker cluster with replicated queues.",
        },
        NodeType::External => {
            "Add a fallback (a second provider, a cached or degraded answer) and guard the call \
             with timeouts, retries with backoff and a circuit breaker."
        }
    };
    if active {
        format!(
            "It is failing requests now: look at its recent changes (deploys, configuration) \
             and its logs first. Then: {cure}"
        )
    } else {
        cure.to_owned()
    }
}

/// Rounds for presentation (evidence is for people; four significant places are plenty).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn ms(ns: f64) -> f64 {
    r3(ns / 1e6)
}

/// "1.2 s", "340 ms", "0.8 ms": durations in summaries.
pub fn human_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}
