//! `/metrics` in the Prometheus text format: the service graph under the names Grafana's
//! service-graph view reads (those of Tempo's metrics-generator and the Collector's
//! servicegraph connector), the findings' scores, and the daemon's own counters.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use crate::analyze::graph::{GraphAgg, NodeTable};
use crate::api::dto::FindingsDoc;
use crate::hist::Hist;
use crate::ingest::submit::Stats;
use crate::model::Interner;

/// Histogram buckets in seconds (Tempo's service-graph defaults).
const BUCKETS_S: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Hist) {
    for le in BUCKETS_S {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{le}\"}} {}",
            h.count_le_ns((le * 1e9) as u64)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_ns() / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// The service graph since start, and the current findings' scores.
pub fn graph_metrics(
    all_time: &GraphAgg,
    nodes: &NodeTable,
    names: &Interner,
    findings: &FindingsDoc,
) -> String {
    let mut out = String::new();
    let name = |id| names.resolve(nodes.key(id).name).to_owned();
    let mut edges: Vec<_> = all_time.edges.iter().collect();
    edges.sort_by_key(|(k, _)| **k);
    out.push_str("# HELP traces_service_graph_request_total Requests between two nodes.\n");
    out.push_str("# TYPE traces_service_graph_request_total counter\n");
    let label = |k: &crate::analyze::graph::EdgeKey| {
        format!(
            "client=\"{}\",server=\"{}\",connection_type=\"{}\"",
            esc(&name(k.from)),
            esc(&name(k.to)),
            k.conn.as_str()
        )
    };
    for (k, e) in &edges {
        let _ = writeln!(
            out,
            "traces_service_graph_request_total{{{}}} {}",
            label(k),
            e.calls
        );
    }
    out.push_str(
        "# HELP traces_service_graph_request_failed_total Failed requests between two nodes.\n",
    );
    out.push_str("# TYPE traces_service_graph_request_failed_total counter\n");
    for (k, e) in &edges {
        let _ = writeln!(
            out,
            "traces_service_graph_request_failed_total{{{}}} {}",
            label(k),
            e.errors
        );
    }
    out.push_str(
        "# HELP traces_service_graph_request_server_seconds Server-side request duration.\n",
    );
    out.push_str("# TYPE traces_service_graph_request_server_seconds histogram\n");
    for (k, e) in &edges {
        histogram(
            &mut out,
            "traces_service_graph_request_server_seconds",
            &label(k),
            &e.server,
        );
    }
    out.push_str(
        "# HELP traces_service_graph_request_client_seconds Client-side request duration.\n",
    );
    out.push_str("# TYPE traces_service_graph_request_client_seconds histogram\n");
    for (k, e) in &edges {
        histogram(
            &mut out,
            "traces_service_graph_request_client_seconds",
            &label(k),
            &e.client,
        );
    }
    out.push_str("# HELP chokepoint_finding_score Score (0..1) of each current finding.\n");
    out.push_str("# TYPE chokepoint_finding_score gauge\n");
    for f in &findings.findings {
        let _ = writeln!(
            out,
            "chokepoint_finding_score{{kind=\"{}\",node=\"{}\",severity=\"{}\"}} {}",
            f.kind,
            esc(&f.node),
            f.severity,
            f.score
        );
    }
    out
}

/// The daemon's own counters and gauges.
pub fn stats_metrics(s: &Stats) -> String {
    let mut out = String::new();
    let mut one = |name: &str, ty: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {}",
            Stats::get(v)
        );
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
        &s.remote_write_samples,
    );
    one(
        "chokepoint_remote_write_bytes_total",
        "counter",
        "Bytes (snappy-compressed) remote-written and accepted: the export's cost to the store.",
        &s.remote_write_bytes,
    );
    one(
        "chokepoint_remote_write_failures_total",
        "counter",
        "Remote-write requests that failed after their retries.",
        &s.remote_write_failures,
    );
    one(
        "chokepoint_remote_write_dropped_total",
        "counter",
        "Samples not delivered: their request failed for good, or the queue was full.",
        &s.remote_write_dropped,
    );
    let _ = writeln!(
        out,
        "# HELP chokepoint_budget_folds_total State folded to stay within the memory budget: \
         least-used nodes into the overflow node, old buckets merged, old buckets retired early.\n\
         # TYPE chokepoint_budget_folds_total counter\n\
         chokepoint_budget_folds_total{{what=\"nodes\"}} {}\n\
         chokepoint_budget_folds_total{{what=\"buckets_merged\"}} {}\n\
         chokepoint_budget_folds_total{{what=\"buckets_retired\"}} {}",
        Stats::get(&s.budget_nodes_folded),
        Stats::get(&s.budget_buckets_merged),
        Stats::get(&s.budget_buckets_retired),
    );
    let _ = writeln!(
        out,
        "# HELP chokepoint_connections_closed_total Connections the listeners closed: refused \
         past max_connections, timed out (slow handshake or head, or idle), failed TLS \
         handshakes.\n\
         # TYPE chokepoint_connections_closed_total counter"
    );
    for (listener, c) in [("receivers", &s.receivers_conns), ("api", &s.api_conns)] {
        for (reason, v) in [
            ("refused", &c.refused),
            ("timed_out", &c.timed_out),
            ("tls_failed", &c.tls_failed),
        ] {
            let _ = writeln!(
                out,
                "chokepoint_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}} {}",
                Stats::get(v)
            );
        }
    }
    out
}
