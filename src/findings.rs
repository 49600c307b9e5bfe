//! Findings: what is weak, how sure, the numbers behind it, and the cure. Computed by
//! [`compute`] from a window's aggregates (and optionally a baseline's) alone.

use serde_json::{Map, Value};

use crate::analyze::graph::{GraphAgg, NodeId, NodeTable};
use crate::analyze::{bottleneck, spof};
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
    /// Thresholds on a score in 0..=1; below `low`, nothing is reported.
    pub fn of(score: f64) -> Option<Severity> {
        Some(match score {
            s if s >= 0.6 => Severity::Critical,
            s if s >= 0.4 => Severity::High,
            s if s >= 0.25 => Severity::Medium,
            s if s >= 0.1 => Severity::Low,
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
    /// From sample size: 50 traces are weaker evidence than 5,000.
    pub fn of_traces(n: u64) -> Confidence {
        match n {
            n if n >= 1000 => Confidence::High,
            n if n >= 100 => Confidence::Medium,
            _ => Confidence::Low,
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

/// One finding. `evidence` holds the numbers behind the score, as named values.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    pub node: NodeId,
    pub node_name: String,
    pub node_type: NodeType,
    pub score: f64,
    pub severity: Severity,
    pub confidence: Confidence,
    pub summary: String,
    pub evidence: Map<String, Value>,
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

/// What a window's analysis says: its findings, highest score first (one per kind and
/// node), notes that concern the whole system, and the background work kept apart.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    pub background: Vec<BackgroundOp>,
}

/// Everything a window's aggregates (and a baseline's) say.
pub fn compute(cur: &GraphAgg, baseline: Option<&GraphAgg>, ctx: &Context<'_>) -> Report {
    let mut all = bottleneck::score(cur, baseline, ctx);
    all.extend(spof::score(cur, baseline, ctx));
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.kind.cmp(&b.kind))
            .then(a.node_name.cmp(&b.node_name))
    });
    // One finding per risk: the best of each (kind, node).
    let mut seen = std::collections::BTreeSet::new();
    all.retain(|f| seen.insert((f.kind, f.node)));
    let mut notes = Vec::new();
    if let Some(n) = all_single_instance(cur, ctx) {
        notes.push(format!(
            "Every one of the {n} services with identified instances runs as a single instance: \
             each is a single point of failure for the requests that wait on it. The SPOF \
             findings rank them by what their loss takes down (entry traffic that waits on \
             them, nodes reached only through them, failures seen)."
        ));
    }
    let mut background: Vec<BackgroundOp> = cur
        .facts
        .ops
        .iter()
        .filter(|(k, _)| k.background)
        .map(|(k, o)| BackgroundOp {
            operation: format!("{} {}", ctx.name(k.service), ctx.names.resolve(k.name)),
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
