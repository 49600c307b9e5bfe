//! Findings: what is weak, how sure, the numbers behind it, and the cure. The scorers
//! (`analyze::bottleneck`, `analyze::spof`) return typed scores; this module decides
//! severity and confidence from them, writes the summary and fits the cure to the node's
//! type, system and cause. [`compute`] works from a window's aggregates (and optionally a
//! baseline's) alone.

use crate::analyze::bottleneck::{self, BottleneckScore};
use crate::analyze::capacity;
use crate::analyze::graph::GraphAgg;
use crate::analyze::node::{NodeId, NodeTable};
use crate::analyze::spof::{self, SpofScore};
use crate::analyze::thresholds::{ANECDOTE_TRACES, MAX_SYSTEMIC_HIGH};
use crate::model::{NodeType, TraceId};
use crate::report::cures::{bottleneck_cure, spof_cure, system_of};
use crate::report::finding::{
    BackgroundOp, Confidence, Context, Evidence, Finding, FindingKind, Report, Severity,
};
use crate::report::format::r3;
use crate::report::summaries::{bottleneck_summary, spof_summary};

/// Everything a window's aggregates (and a baseline's) say.
pub fn compute(cur: &GraphAgg, baseline: Option<&GraphAgg>, ctx: &Context<'_>) -> Report {
    let ty = |n: NodeId| ctx.node_type(n);
    let capacity = capacity::estimate(cur);
    let mut all: Vec<Finding> = bottleneck::score(cur, baseline, &ty, &capacity)
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
    let first_to_saturate = capacity::first_to_saturate(&capacity);
    Report {
        findings: all,
        notes,
        background,
        capacity,
        first_to_saturate,
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
    let remediation = bottleneck_cure(ty, system_of(&name), &b.cause, &name);
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
    let summary = spof_summary(&s, &name, ctx);
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
