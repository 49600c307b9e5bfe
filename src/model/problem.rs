//! What can be wrong with input, as values: a rejected span is a [`SpanProblem`] in a
//! [`BatchReport`], never an `Err` for the batch around it.

use std::fmt;

use crate::model::{SpanId, TraceId};

/// Why one span was rejected (or, for [`SpanError::OwnParent`], repaired).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("trace id has {0} bytes, want 16")]
    TraceIdLength(usize),
    #[error("trace id is all zeros")]
    ZeroTraceId,
    #[error("span id has {0} bytes, want 8")]
    SpanIdLength(usize),
    #[error("span id is all zeros")]
    ZeroSpanId,
    #[error("parent span id has {0} bytes, want 8 (or none)")]
    ParentIdLength(usize),
    #[error("id {0:?} is neither hex nor base64 of the right length")]
    BadId(String),
    #[error("span has no start or end time")]
    MissingStart,
    #[error("span ends before it starts (start {start} ns, end {end} ns)")]
    EndBeforeStart { start: u64, end: u64 },
    #[error("unknown span kind {0}")]
    UnknownKind(i32),
    #[error("span starts before 2000-01-01 (start {0} ns): not a plausible time")]
    TooOld(u64),
    #[error(
        "span lasts {secs} s, longer than the {max_secs} s allowed (pipeline.max_span_duration)"
    )]
    TooLong { secs: u64, max_secs: u64 },
    #[error("span starts {secs_ahead} s ahead of this host's clock (more than a bucket): its clock is wrong")]
    InFuture { secs_ahead: u64 },
    #[error("span ends {secs_ahead} s ahead of this host's clock (more than a bucket): it cannot have been exported yet, so its times are wrong")]
    EndsInFuture { secs_ahead: u64 },
    #[error("span is its own parent; treated as a root")]
    OwnParent,
    #[error("span id repeats one already seen in this trace; later copy dropped")]
    DuplicateSpanId,
    #[error("parent chain forms a cycle; span treated as a root")]
    ParentCycle,
    #[error("malformed span: {0}")]
    Malformed(String),
}

/// One rejected or repaired span, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanProblem {
    /// Position of the span within its batch (0-based), for inputs without ids.
    pub index: u64,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub error: SpanError,
}

impl fmt::Display for SpanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "span #{}", self.index)?;
        match (self.trace_id, self.span_id) {
            (Some(t), Some(s)) => write!(f, " (trace {t}, span {s})")?,
            (Some(t), None) => write!(f, " (trace {t})")?,
            (None, Some(s)) => write!(f, " (span {s})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.error)
    }
}

/// How a batch went: counts always, details for the first few problems only, so a batch of a
/// million bad spans cannot grow the report without bound.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// Spans looked at.
    pub seen: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Accepted after a repair (e.g. a span naming itself as parent became a root).
    pub repaired: u64,
    /// The first [`BatchReport::MAX_DETAILS`] problems, rejected and repaired.
    pub details: Vec<SpanProblem>,
}

impl BatchReport {
    pub const MAX_DETAILS: usize = 20;

    pub fn reject(&mut self, p: SpanProblem) {
        self.rejected += 1;
        self.note(p);
    }

    pub fn repaired(&mut self, p: SpanProblem) {
        self.repaired += 1;
        self.note(p);
    }

    fn note(&mut self, p: SpanProblem) {
        if self.details.len() < Self::MAX_DETAILS {
            self.details.push(p);
        }
    }

    pub fn merge(&mut self, other: BatchReport) {
        self.seen += other.seen;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.repaired += other.repaired;
        for p in other.details {
            self.note(p);
        }
    }

    /// One line for an OTLP partial-success message or a log.
    /// One line for the partial-success answer: the counts, the first problem, and one
    /// example of each other kind of problem (so a batch with several reasons says them all).
    pub fn summary(&self) -> String {
        let mut s = format!("{} of {} spans rejected", self.rejected, self.seen);
        if let Some(first) = self.details.first() {
            s.push_str(&format!("; first: {first}"));
        }
        let mut kinds: Vec<_> = self
            .details
            .first()
            .map(|d| std::mem::discriminant(&d.error))
            .into_iter()
            .collect();
        for d in self.details.iter().skip(1) {
            let k = std::mem::discriminant(&d.error);
            if !kinds.contains(&k) {
                kinds.push(k);
                s.push_str(&format!("; also: {d}"));
            }
        }
        s
    }
}
