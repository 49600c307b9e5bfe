//! The daemon's books: counters shared by receivers, pipeline and `/metrics`, and their
//! exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::api::prom;
use crate::scale::remote_write::WriteCounters;
use crate::serve::listener::ConnStats;

/// Counters shared by receivers, pipeline and `/metrics`. The books balance:
/// `spans_received = spans_rejected + spans_analysed + spans_dropped + spans in flight`.
#[derive(Debug, Default)]
pub struct Stats {
    /// What the receivers' and the API's listeners refused or timed out.
    pub receivers_conns: Arc<ConnStats>,
    pub api_conns: Arc<ConnStats>,
    pub requests: AtomicU64,
    /// Spans in requests the pipeline took.
    pub spans_received: AtomicU64,
    pub spans_rejected: AtomicU64,
    /// Spans folded into the live aggregates as part of completed traces.
    pub spans_analysed: AtomicU64,
    /// Spans dropped after they were taken (trace over its span limit, too old for history,
    /// a repeat of a span id already in its trace).
    pub spans_dropped: AtomicU64,
    /// Spans of requests turned away with a retryable answer (the exporter sends them again),
    /// and of those, by why: the queue was full, the queue's memory share was, or the daemon
    /// was shutting down.
    pub spans_refused: AtomicU64,
    pub spans_refused_queue_full: AtomicU64,
    pub spans_refused_memory: AtomicU64,
    pub spans_refused_closed: AtomicU64,
    /// What the memory budget is spent on.
    pub ledger: crate::serve::ledger::Ledger,
    /// Requests rejected whole: undecodable, too large, wrong type.
    pub requests_invalid: AtomicU64,
    /// Non-empty requests that decoded to no spans at all.
    pub requests_empty: AtomicU64,
    /// Requests answered 503 before decoding: what they would decode to did not fit the
    /// queue's memory share (their spans are not known, so not in `spans_refused`).
    pub requests_refused_memory: AtomicU64,
    /// State snapshots written, and failed (a full or read-only disk: said in the log at
    /// each attempt, counted here for an alert).
    pub snapshots_written: AtomicU64,
    pub snapshots_failed: AtomicU64,
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
    /// What `analysis.memory_budget_mb` allows them, in bytes.
    pub memory_budget_bytes: AtomicU64,
    /// Entries the aggregates' bounded maps had no room for.
    pub aggregate_entries_dropped: AtomicU64,
    /// Aggregate series exported at the last refresh, and those left out past the bound.
    pub export_series: AtomicU64,
    pub export_series_dropped: AtomicU64,
    /// What remote-write delivered and lost.
    pub remote_write: Arc<WriteCounters>,
    pub budget_nodes_folded: AtomicU64,
    pub budget_buckets_merged: AtomicU64,
    pub budget_buckets_retired: AtomicU64,
}

/// The process's resident set size, from `/proc/self/status` (`VmRSS`); `None` where there
/// is no such file.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The daemon's own counters and gauges.
pub fn stats_metrics(s: &Stats) -> String {
    let mut out = String::new();
    let mut one = |name: &str, ty: &str, help: &str, v: &AtomicU64| {
        prom::header(&mut out, name, ty, help);
        prom::line(&mut out, name, [], Stats::get(v));
    };
    one(
        "chokepoint_export_requests_total",
        "counter",
        "Export requests received over OTLP.",
        &s.requests,
    );
    one(
        "chokepoint_spans_received_total",
        "counter",
        "Spans in export requests taken by the pipeline.",
        &s.spans_received,
    );
    one(
        "chokepoint_spans_rejected_total",
        "counter",
        "Spans rejected as invalid (partial success).",
        &s.spans_rejected,
    );
    one(
        "chokepoint_spans_analysed_total",
        "counter",
        "Spans of completed traces folded into the analysis.",
        &s.spans_analysed,
    );
    one(
        "chokepoint_spans_dropped_total",
        "counter",
        "Spans taken but dropped (trace over its span limit, too old for history, or a repeated span id).",
        &s.spans_dropped,
    );
    one(
        "chokepoint_spans_refused_total",
        "counter",
        "Spans of requests answered with a retryable status because the pipeline was saturated.",
        &s.spans_refused,
    );
    one(
        "chokepoint_requests_invalid_total",
        "counter",
        "Export requests rejected whole (undecodable, too large, unsupported type).",
        &s.requests_invalid,
    );
    one(
        "chokepoint_requests_empty_total",
        "counter",
        "Non-empty export requests that decoded to no spans.",
        &s.requests_empty,
    );
    one(
        "chokepoint_requests_refused_memory_total",
        "counter",
        "OTLP/JSON requests answered 503 before decoding: what they decode to did not fit the queue's memory share.",
        &s.requests_refused_memory,
    );
    one(
        "chokepoint_snapshots_written_total",
        "counter",
        "State snapshots written to the state directory.",
        &s.snapshots_written,
    );
    one(
        "chokepoint_snapshots_failed_total",
        "counter",
        "State snapshots that could not be written (see the log): history since the last one would be lost at a restart.",
        &s.snapshots_failed,
    );
    one(
        "chokepoint_traces_completed_total",
        "counter",
        "Traces assembled.",
        &s.traces_completed,
    );
    one(
        "chokepoint_traces_evicted_total",
        "counter",
        "Traces completed early because the in-flight limits were reached.",
        &s.traces_completed_early,
    );
    one(
        "chokepoint_traces_in_flight",
        "gauge",
        "Traces being assembled.",
        &s.traces_in_flight,
    );
    one(
        "chokepoint_spans_in_flight",
        "gauge",
        "Spans held in assembly.",
        &s.spans_in_flight,
    );
    one(
        "chokepoint_pipeline_queue_depth",
        "gauge",
        "Export requests waiting for the pipeline.",
        &s.queue_depth,
    );
    one(
        "chokepoint_names_overflowed_total",
        "counter",
        "Names folded into one because the name table was full.",
        &s.names_overflowed,
    );
    one(
        "chokepoint_nodes_overflowed_total",
        "counter",
        "Nodes folded into one because the node table was full.",
        &s.nodes_overflowed,
    );
    one(
        "chokepoint_aggregate_bytes",
        "gauge",
        "Estimated bytes of the windowed aggregates (what analysis.memory_budget_mb bounds).",
        &s.aggregate_bytes,
    );
    one(
        "chokepoint_aggregate_entries_dropped",
        "gauge",
        "Entries the aggregates' bounded maps had no room for (resource usage, calls and \
         presence per request kind), over the history kept.",
        &s.aggregate_entries_dropped,
    );
    one(
        "chokepoint_export_series",
        "gauge",
        "Aggregate series (chokepoint_node_*, _edge_*, _op_*, ...) exported at the last refresh.",
        &s.export_series,
    );
    one(
        "chokepoint_export_series_dropped",
        "gauge",
        "Aggregate series left out at the last refresh, past export.max_series.",
        &s.export_series_dropped,
    );
    one(
        "chokepoint_remote_write_samples_total",
        "counter",
        "Samples remote-written and accepted.",
        &s.remote_write.samples,
    );
    one(
        "chokepoint_remote_write_bytes_total",
        "counter",
        "Bytes (snappy-compressed) remote-written and accepted: the export's cost to the store.",
        &s.remote_write.bytes,
    );
    one(
        "chokepoint_remote_write_failures_total",
        "counter",
        "Remote-write requests that failed after their retries.",
        &s.remote_write.failures,
    );
    one(
        "chokepoint_remote_write_dropped_total",
        "counter",
        "Samples not delivered: their request failed for good, or the queue was full.",
        &s.remote_write.dropped,
    );
    one(
        "chokepoint_memory_budget_bytes",
        "gauge",
        "analysis.memory_budget_mb in bytes: what chokepoint_memory_accounted_bytes is held under.",
        &s.memory_budget_bytes,
    );
    // The Prometheus client libraries' name, so dashboards and alerts written for any
    // process read it.
    if let Some(rss) = resident_bytes() {
        prom::header(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes (/proc/self/status VmRSS).",
        );
        prom::line(&mut out, "process_resident_memory_bytes", [], rss);
    }
    counters(
        &mut out,
        "chokepoint_spans_refused_by_reason_total",
        "chokepoint_spans_refused_total by why: the pipeline's queue was full, the queue's \
         share of the memory budget was, or the daemon was shutting down.",
        [
            ([("reason", "queue_full")], &s.spans_refused_queue_full),
            ([("reason", "memory")], &s.spans_refused_memory),
            ([("reason", "shutting_down")], &s.spans_refused_closed),
        ],
    );
    prom::header(
        &mut out,
        "chokepoint_memory_accounted_bytes",
        "gauge",
        "Estimated bytes of what grows with input, by structure, all drawn from \
         analysis.memory_budget_mb (compare process_resident_memory_bytes).",
    );
    for p in crate::serve::ledger::Part::ALL {
        prom::line(
            &mut out,
            "chokepoint_memory_accounted_bytes",
            [("structure", p.as_str())],
            s.ledger.get(p),
        );
    }
    counters(
        &mut out,
        "chokepoint_budget_folds_total",
        "State folded to stay within the memory budget: least-used nodes into the overflow \
         node, old buckets merged, old buckets retired early.",
        [
            ([("what", "nodes")], &s.budget_nodes_folded),
            ([("what", "buckets_merged")], &s.budget_buckets_merged),
            ([("what", "buckets_retired")], &s.budget_buckets_retired),
        ],
    );
    let closed = [("receivers", &s.receivers_conns), ("api", &s.api_conns)]
        .into_iter()
        .flat_map(|(listener, c)| {
            [
                ("refused", &c.refused),
                ("timed_out", &c.timed_out),
                ("tls_failed", &c.tls_failed),
            ]
            .map(|(reason, v)| ([("listener", listener), ("reason", reason)], v))
        });
    counters(
        &mut out,
        "chokepoint_connections_closed_total",
        "Connections the listeners closed: refused past max_connections, timed out (slow \
         handshake or head, or idle), failed TLS handshakes.",
        closed,
    );
    out
}

/// One counter family, a series per label set.
fn counters<'a, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'a str, &'a str); N], &'a AtomicU64)>,
) {
    prom::header(out, name, "counter", help);
    for (labels, v) in series {
        prom::line(out, name, labels, Stats::get(v));
    }
}
