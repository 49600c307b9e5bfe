//! The one handler behind every receiver: count, queue for the pipeline without blocking,
//! and wait for its verdict on each span. gRPC and HTTP differ only in how they decode the
//! request and encode the answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ns;
use crate::ingest::batch::Batch;
use crate::ingest::local::{normalize_here, LocalLimits, NameDelta};
use crate::model::problem::BatchReport;
use crate::model::Span;
use crate::serve::stats::Stats;

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
        limits.time.now_ns = Some(now_ns());
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
