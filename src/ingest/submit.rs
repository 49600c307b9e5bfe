//! The one handler behind every receiver: count, queue for the pipeline without blocking,
//! and wait for its verdict on each span. gRPC and HTTP differ only in how they decode the
//! request and encode the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::local::{normalize_here, LocalLimits, NameDelta};
use super::problem::BatchReport;
use crate::model::Span;

/// Counters shared by receivers, pipeline and `/metrics`. The books balance:
/// `spans_received = spans_rejected + spans_analysed + spans_dropped + spans in flight`.
#[derive(Debug, Default)]
pub struct Stats {
    /// What the receivers' and the API's listeners refused or timed out.
    pub receivers_conns: std::sync::Arc<crate::listener::ConnStats>,
    pub api_conns: std::sync::Arc<crate::listener::ConnStats>,
    pub requests: AtomicU64,
    /// Spans in requests the pipeline took.
    pub spans_received: AtomicU64,
    pub spans_rejected: AtomicU64,
    /// Spans folded into the live aggregates as part of completed traces.
    pub spans_analysed: AtomicU64,
    /// Spans dropped after they were taken (trace over its span limit, too old for history,
    /// a repeat of a span id already in its trace).
    pub spans_dropped: AtomicU64,
    /// Spans of requests turned away with a retryable answer (the exporter sends them again).
    pub spans_refused: AtomicU64,
    /// Requests rejected whole: undecodable, too large, wrong type.
    pub requests_invalid: AtomicU64,
    /// Non-empty requests that decoded to no spans at all.
    pub requests_empty: AtomicU64,
    pub traces_completed: AtomicU64,
    pub traces_completed_early: AtomicU64,
    pub traces_in_flight: AtomicU64,
    pub spans_in_flight: AtomicU64,
    pub queue_depth: AtomicU64,
    /// Names folded into the overflow name because the name table was full.
    pub names_overflowed: AtomicU64,
    /// Nodes folded into the overflow node because the node table was full.
    pub nodes_overflowed: AtomicU64,
    /// The aggregates' estimated size, and what the memory budget folded to keep them in it.
    pub aggregate_bytes: AtomicU64,
    /// Entries the aggregates' bounded maps had no room for.
    pub aggregate_entries_dropped: AtomicU64,
    /// Aggregate series exported at the last refresh, and those left out past the bound.
    pub export_series: AtomicU64,
    pub export_series_dropped: AtomicU64,
    /// Remote-write: samples sent, requests that failed for good, samples dropped (a full
    /// queue or a failed request).
    pub remote_write_samples: AtomicU64,
    /// Snappy-compressed bytes remote-written and accepted.
    pub remote_write_bytes: AtomicU64,
    pub remote_write_failures: AtomicU64,
    pub remote_write_dropped: AtomicU64,
    pub budget_nodes_folded: AtomicU64,
    pub budget_buckets_merged: AtomicU64,
    pub budget_buckets_retired: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A batch on its way to the pipeline, with where to send the verdict.
#[derive(Debug)]
pub struct Submission {
    /// Normalized by the receiver's thread, with symbols of `names.space`.
    pub spans: Vec<Span>,
    pub names: NameDelta,
    /// Problems found while decoding and normalizing.
    pub report: BatchReport,
    pub reply: oneshot::Sender<BatchReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline's queue is full: retry later.
    #[error("the analysis pipeline is saturated; retry later")]
    Busy,
    /// The daemon is shutting down: retry elsewhere or later.
    #[error("chokepoint is shutting down")]
    Closed,
}

/// Cloneable handle the receivers submit through.
#[derive(Clone, Debug)]
pub struct Submitter {
    tx: mpsc::Sender<Submission>,
    pub stats: Arc<Stats>,
    pub max_request_bytes: usize,
    /// What the receivers' normalizers are bounded by; `time.now_ns` is set per batch.
    pub limits: LocalLimits,
}

pub fn span_count(spans: &[ResourceSpans]) -> u64 {
    spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

impl Submitter {
    pub fn new(
        tx: mpsc::Sender<Submission>,
        stats: Arc<Stats>,
        max_request_bytes: usize,
        limits: LocalLimits,
    ) -> Self {
        Submitter {
            tx,
            stats,
            max_request_bytes,
            limits,
        }
    }

    /// Normalizes a batch on this thread, queues it and waits for the pipeline's report.
    /// Never waits for queue space: a full queue is answered at once, so exporters back off
    /// instead of piling up.
    pub async fn submit(
        &self,
        batch: Batch,
        report: BatchReport,
    ) -> Result<BatchReport, SubmitError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let n = batch.span_count() + report.seen;
        let (reply, verdict) = oneshot::channel();
        // Counted before the pipeline can see the spans, so the books never show more spans
        // accounted for than received; taken back if the queue refuses them.
        self.stats.spans_received.fetch_add(n, Ordering::Relaxed);
        let mut limits = self.limits;
        limits.time.now_ns = Some(crate::pipeline::now_ns());
        let sent = normalize_here(&batch, limits, report, |spans, names, report| {
            let sub = Submission {
                spans,
                names,
                report,
                reply,
            };
            self.tx.try_send(sub).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })
        });
        drop(batch);
        if let Err(e) = sent {
            self.stats.spans_received.fetch_sub(n, Ordering::Relaxed);
            self.stats.spans_refused.fetch_add(n, Ordering::Relaxed);
            return Err(e);
        }
        self.stats.queue_depth.store(
            (self.tx.max_capacity() - self.tx.capacity()) as u64,
            Ordering::Relaxed,
        );
        // The pipeline answers every submission it takes, even while shutting down.
        verdict.await.map_err(|_| SubmitError::Closed)
    }
}
