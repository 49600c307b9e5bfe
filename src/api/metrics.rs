//! `/metrics` in the Prometheus text format: the service graph under the names Grafana's
//! service-graph view reads (those of Tempo's metrics-generator and the Collector's
//! servicegraph connector) and the findings' scores. The daemon's own counters are
//! [`crate::serve::stats`]'s.

use crate::analyze::graph::{EdgeKey, GraphAgg};
use crate::analyze::hist::Hist;
use crate::analyze::node::NodeTable;
use crate::api::dto::FindingsDoc;
use crate::api::prom;
use crate::model::Interner;

/// Histogram buckets in seconds (Tempo's service-graph defaults).
const BUCKETS_S: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

type Labels<'a> = [(&'static str, &'a str); 3];

fn histogram(out: &mut String, name: &str, labels: &Labels<'_>, h: &Hist) {
    let bucket = format!("{name}_bucket");
    let with_le = |le: String, count: u64, out: &mut String| {
        let l = labels.iter().copied().chain([("le", le.as_str())]);
        prom::line(out, &bucket, l, count);
    };
    for le in BUCKETS_S {
        with_le(le.to_string(), h.count_le_ns((le * 1e9) as u64), out);
    }
    with_le("+Inf".to_owned(), h.count(), out);
    prom::line(out, &format!("{name}_sum"), *labels, h.sum_ns() / 1e9);
    prom::line(out, &format!("{name}_count"), *labels, h.count());
}

/// Edges `/metrics` lists at most, the busiest first: each costs about 30 series (two
/// histograms), so a flood of distinct peers would otherwise make every scrape tens of
/// megabytes and every Prometheus behind it a cardinality incident. A real system has
/// hundreds; what is left out is counted in `chokepoint_metrics_edges_left_out`.
pub const MAX_EDGES: usize = 2_000;

/// The service graph since start, and the current findings' scores. `capacity` is a hint
/// (the last text's length), so the text is not grown by doubling each refresh.
pub fn graph_metrics(
    all_time: &GraphAgg,
    nodes: &NodeTable,
    names: &Interner,
    findings: &FindingsDoc,
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity);
    let name = |id| names.resolve(nodes.key(id).name);
    let mut edges: Vec<_> = all_time.edges.iter().collect();
    let left_out = edges.len().saturating_sub(MAX_EDGES);
    if left_out > 0 {
        edges.select_nth_unstable_by_key(MAX_EDGES - 1, |(k, e)| (std::cmp::Reverse(e.calls), **k));
        edges.truncate(MAX_EDGES);
    }
    edges.sort_by_key(|(k, _)| **k);
    prom::header(
        &mut out,
        "chokepoint_metrics_edges_left_out",
        "gauge",
        "Edges of the service graph left out of the metrics here: only the busiest 2,000 are listed.",
    );
    prom::line(&mut out, "chokepoint_metrics_edges_left_out", [], left_out);
    let label = |k: &EdgeKey| -> Labels<'_> {
        [
            ("client", name(k.from)),
            ("server", name(k.to)),
            ("connection_type", k.conn.grafana_label()),
        ]
    };
    let counters = [
        (
            "traces_service_graph_request_total",
            "Requests between two nodes.",
            false,
        ),
        (
            "traces_service_graph_request_failed_total",
            "Failed requests between two nodes.",
            true,
        ),
    ];
    for (metric, help, failed) in counters {
        prom::header(&mut out, metric, "counter", help);
        for (k, e) in &edges {
            let v = if failed { e.errors } else { e.calls };
            prom::line(&mut out, metric, label(k), v);
        }
    }
    let histograms = [
        (
            "traces_service_graph_request_server_seconds",
            "Server-side request duration.",
            true,
        ),
        (
            "traces_service_graph_request_client_seconds",
            "Client-side request duration.",
            false,
        ),
    ];
    for (metric, help, server) in histograms {
        prom::header(&mut out, metric, "histogram", help);
        for (k, e) in &edges {
            let h = if server { &e.server } else { &e.client };
            histogram(&mut out, metric, &label(k), h);
        }
    }
    prom::header(
        &mut out,
        "chokepoint_finding_score",
        "gauge",
        "Score (0..1) of each current finding; active=\"true\" when it harms requests now.",
    );
    for f in &findings.findings {
        prom::line(
            &mut out,
            "chokepoint_finding_score",
            [
                ("kind", f.kind),
                ("node", f.node.as_str()),
                ("severity", f.severity),
                ("active", if f.active { "true" } else { "false" }),
            ],
            f.score,
        );
    }
    for (metric, help) in [
        (
            "chokepoint_capacity_rps",
            "Requests a second each node can complete, where known (see GET /capacity).",
        ),
        (
            "chokepoint_headroom",
            "Capacity over the current rate: the factor its load can grow by (below 1: beyond it).",
        ),
    ] {
        prom::header(&mut out, metric, "gauge", help);
        for c in &findings.capacity {
            let v = if metric == "chokepoint_headroom" {
                c.headroom
            } else {
                c.capacity_rps
            };
            if let Some(v) = v {
                prom::line(
                    &mut out,
                    metric,
                    [("node", c.node.as_str()), ("limit", c.limit)],
                    v,
                );
            }
        }
    }
    out
}
