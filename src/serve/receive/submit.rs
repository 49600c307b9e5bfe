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
    /// What it holds of the queue's memory share, given back when the pipeline takes it.
    pub reserved: u64,
}

impl Submission {
    /// Estimated bytes held while queued: the spans and the new names.
    pub fn bytes(spans: &[Span], names: &NameDelta) -> u64 {
        let names: usize = names.names.iter().map(|n| n.len() + 16).sum();
        (std::mem::size_of_val(spans) + names) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline's queue is full: retry later.
    #[error("the analysis pipeline is saturated; retry later")]
    Busy,
    /// The queue's share of the memory budget is spent: retry later.
    #[error("chokepoint is at its memory budget; retry later")]
    Memory,
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
        let ledger = &self.stats.ledger;
        let sent = normalize_here(&batch, limits, report, |spans, names, report| {
            let reserved = Submission::bytes(&spans, &names);
            if !ledger.reserve_queue(reserved) {
                return Err(SubmitError::Memory);
            }
            let sub = Submission {
                spans,
                names,
                report,
                reply,
                reserved,
            };
            self.tx.try_send(sub).map_err(|e| {
                ledger.release_queue(reserved);
                match e {
                    mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
                    mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
                }
            })
        });
        drop(batch);
        if let Err(e) = sent {
            let s = &self.stats;
            s.spans_received.fetch_sub(n, Ordering::Relaxed);
            s.spans_refused.fetch_add(n, Ordering::Relaxed);
            match e {
                SubmitError::Busy => &s.spans_refused_queue_full,
                SubmitError::Memory => &s.spans_refused_memory,
                SubmitError::Closed => &s.spans_refused_closed,
            }
            .fetch_add(n, Ordering::Relaxed);
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
