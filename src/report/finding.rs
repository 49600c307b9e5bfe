//! A finding and its vocabulary: what kind it is, how severe, how sure, the scores behind it
//! ([`Evidence`]), and the [`Report`] a window's analysis gives.

use crate::analyze::bottleneck::BottleneckScore;
use crate::analyze::capacity::Capacity;
use crate::analyze::node::{NodeId, NodeTable};
use crate::analyze::spof::SpofScore;
use crate::analyze::thresholds::{CONFIDENCE_UNITS, CONSISTENT_HIGH, CONSISTENT_MEDIUM, SEVERITY};
use crate::model::{Interner, NodeType, TraceId};

#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    Bottleneck,
    Spof,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
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
        self.into()
    }

    pub fn parse(s: &str) -> Option<Severity> {
        s.parse().ok()
    }
}

#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
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
        self.into()
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
    /// Every node's capacity and headroom, and the first to saturate as traffic grows.
    pub capacity: Vec<Capacity>,
    pub first_to_saturate: Option<(NodeId, f64)>,
}
