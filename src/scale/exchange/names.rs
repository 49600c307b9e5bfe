//! The names of everything the exchange writes: label names of nodes, every metric with its
//! type and help, and the three series of each histogram. Encoder and decoder both read
//! them here, so a name cannot drift between the two directions.

/// Label names of a node: its name, type, and for a raw backend its system and the name its
/// callers gave it.
pub(super) type NodeLabelNames = [&'static str; 4];
pub(super) const NODE: NodeLabelNames = ["node", "node_type", "node_system", "node_db"];
pub(super) const CALLER: NodeLabelNames = ["caller", "caller_type", "caller_system", "caller_db"];
pub(super) const CALLEE: NodeLabelNames = ["callee", "callee_type", "callee_system", "callee_db"];
pub(super) const SERVICE: NodeLabelNames =
    ["service", "service_type", "service_system", "service_db"];

/// What a node did, for capacity ([`crate::analyze::graph::LoadBucket`]).
pub(super) const LOAD_DONE: &str = "chokepoint_node_load_done_total";
pub(super) const LOAD_BUSY: &str = "chokepoint_node_load_busy_seconds_total";
pub(super) const LOAD_ARRIVED: &str = "chokepoint_node_load_arrived_total";
pub(super) const LOAD_WAIT_KNOWN: &str = "chokepoint_node_load_wait_known_total";
pub(super) const LOAD_WAITED: &str = "chokepoint_node_load_waited_total";
pub(super) const LOAD_WAIT: &str = "chokepoint_node_load_wait_seconds_total";
pub(super) const LOAD_SAMPLED: &str = "chokepoint_node_load_sampled_total";

/// The gauge saying how far in span time an instance's analysis has got.
pub(super) const TRACE_START_LAST: &str = "chokepoint_agg_trace_start_last_seconds";

/// The gauge saying when an instance published its aggregates.
pub const HEARD: &str = "chokepoint_agg_heard_seconds";

/// Every metric name [`encode`] writes, with its type and help, for the exposition format.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("chokepoint_agg_traces_total", "counter", "Traces analysed."),
    (
        "chokepoint_agg_spans_total",
        "counter",
        "Spans of the traces analysed.",
    ),
    (
        "chokepoint_agg_fragmented_traces_total",
        "counter",
        "Traces that arrived in pieces.",
    ),
    (
        HEARD,
        "gauge",
        "When this instance published these aggregates (Unix time): a global reader's 'last heard from', which a store's lookback would otherwise blur.",
    ),
    (
        "chokepoint_agg_span_time_first_seconds",
        "gauge",
        "Earliest span start analysed (Unix time).",
    ),
    (
        "chokepoint_agg_span_time_last_seconds",
        "gauge",
        "Latest span end analysed (Unix time).",
    ),
    (
        TRACE_START_LAST,
        "gauge",
        "Latest start of a trace analysed (Unix time): where a global reader counts the load buckets written with it.",
    ),
    (
        "chokepoint_node_spans_total",
        "counter",
        "Spans a service reported.",
    ),
    (
        "chokepoint_node_span_errors_total",
        "counter",
        "Of those, spans marked as errors.",
    ),
    (
        "chokepoint_node_requests_total",
        "counter",
        "Requests into a node.",
    ),
    (
        "chokepoint_node_errors_total",
        "counter",
        "Of those, failed.",
    ),
    (
        "chokepoint_node_serves_total",
        "counter",
        "Entry spans that serve someone.",
    ),
    (
        "chokepoint_node_latency_seconds_bin",
        "counter",
        "Request latency: counts per bin (upper bound `ub`, seconds; not cumulative).",
    ),
    (
        "chokepoint_node_latency_seconds_sum",
        "counter",
        "Request latency: sum.",
    ),
    (
        "chokepoint_node_latency_seconds_max",
        "gauge",
        "Request latency: largest.",
    ),
    (
        "chokepoint_node_self_time_seconds_bin",
        "counter",
        "Own time per request: counts per bin.",
    ),
    (
        "chokepoint_node_self_time_seconds_sum",
        "counter",
        "Own time per request: sum.",
    ),
    (
        "chokepoint_node_self_time_seconds_max",
        "gauge",
        "Own time per request: largest.",
    ),
    (
        "chokepoint_node_load_requests_total",
        "counter",
        "Requests counted for latency against load.",
    ),
    (
        "chokepoint_node_load_latency_seconds_total",
        "counter",
        "Their summed latency (own time for services).",
    ),
    (
        LOAD_DONE,
        "counter",
        "Requests a node completed (adjusted counts, for capacity).",
    ),
    (
        LOAD_BUSY,
        "counter",
        "Time spent serving them (adjusted); its rate is the requests in flight on average.",
    ),
    (
        LOAD_ARRIVED,
        "counter",
        "Requests sent to a node (adjusted), by when their callers sent them.",
    ),
    (
        LOAD_WAIT_KNOWN,
        "counter",
        "Of those, requests whose wait before their span started is known.",
    ),
    (
        LOAD_WAITED,
        "counter",
        "Of those, requests that queued before they started.",
    ),
    (
        LOAD_WAIT,
        "counter",
        "Their summed wait before they started.",
    ),
    (
        LOAD_SAMPLED,
        "counter",
        "Spans counted for capacity that carried a sampling threshold.",
    ),
    (
        "chokepoint_node_instance_sightings_total",
        "counter",
        "Sightings of each instance of a node.",
    ),
    (
        "chokepoint_node_instance_first_seen_seconds",
        "gauge",
        "When an instance was first seen (span time).",
    ),
    (
        "chokepoint_node_instance_last_seen_seconds",
        "gauge",
        "When an instance was last seen (span time).",
    ),
    (
        "chokepoint_node_unidentified_sightings_total",
        "counter",
        "Sightings without an instance identity.",
    ),
    (
        "chokepoint_node_instances_overflowed",
        "gauge",
        "1 when more instances were seen than are kept.",
    ),
    (
        "chokepoint_edge_calls_total",
        "counter",
        "Calls from caller to callee.",
    ),
    (
        "chokepoint_edge_errors_total",
        "counter",
        "Of those, failed.",
    ),
    (
        "chokepoint_edge_client_seconds_bin",
        "counter",
        "Caller-side duration: counts per bin.",
    ),
    (
        "chokepoint_edge_client_seconds_sum",
        "counter",
        "Caller-side duration: sum.",
    ),
    (
        "chokepoint_edge_client_seconds_max",
        "gauge",
        "Caller-side duration: largest.",
    ),
    (
        "chokepoint_edge_server_seconds_bin",
        "counter",
        "Callee-side duration: counts per bin.",
    ),
    (
        "chokepoint_edge_server_seconds_sum",
        "counter",
        "Callee-side duration: sum.",
    ),
    (
        "chokepoint_edge_server_seconds_max",
        "gauge",
        "Callee-side duration: largest.",
    ),
    (
        "chokepoint_edge_queue_seconds_bin",
        "counter",
        "Messaging queue delay: counts per bin.",
    ),
    (
        "chokepoint_edge_queue_seconds_sum",
        "counter",
        "Messaging queue delay: sum.",
    ),
    (
        "chokepoint_edge_queue_seconds_max",
        "gauge",
        "Messaging queue delay: largest.",
    ),
    (
        "chokepoint_edge_gap_seconds_bin",
        "counter",
        "Wait outside the callee's span: counts per bin.",
    ),
    (
        "chokepoint_edge_gap_seconds_sum",
        "counter",
        "Wait outside the callee's span: sum.",
    ),
    (
        "chokepoint_edge_gap_seconds_max",
        "gauge",
        "Wait outside the callee's span: largest.",
    ),
    (
        "chokepoint_usage_calls_total",
        "counter",
        "Calls of a caller asking one thing of one backend address.",
    ),
    (
        "chokepoint_usage_dropped_total",
        "counter",
        "Usage entries past the bound.",
    ),
    (
        "chokepoint_user_requests_total",
        "counter",
        "User requests (traces serving someone).",
    ),
    (
        "chokepoint_user_request_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_background_traces_total",
        "counter",
        "Traces of background work.",
    ),
    (
        "chokepoint_op_traces_total",
        "counter",
        "Traces per entry operation.",
    ),
    (
        "chokepoint_op_errors_total",
        "counter",
        "Of those, failed at the entry.",
    ),
    ("chokepoint_op_spans_total", "counter", "Their spans."),
    (
        "chokepoint_op_e2e_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_op_e2e_seconds_bin",
        "counter",
        "End-to-end time: counts per bin.",
    ),
    (
        "chokepoint_op_e2e_seconds_sum",
        "counter",
        "End-to-end time: sum.",
    ),
    (
        "chokepoint_op_e2e_seconds_max",
        "gauge",
        "End-to-end time: largest.",
    ),
    (
        "chokepoint_cp_traces_total",
        "counter",
        "Requests of an entry operation with the node on the critical path.",
    ),
    (
        "chokepoint_cp_own_seconds_total",
        "counter",
        "Critical-path time of the node, working.",
    ),
    (
        "chokepoint_cp_queue_seconds_total",
        "counter",
        "Critical-path time of the node, waiting.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_bin",
        "counter",
        "Critical-path time per request: counts per bin.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_sum",
        "counter",
        "Critical-path time per request: sum.",
    ),
    (
        "chokepoint_cp_per_trace_seconds_max",
        "gauge",
        "Critical-path time per request: largest.",
    ),
    (
        "chokepoint_cp_wait_seconds_total",
        "counter",
        "Critical-path waits of a caller on a callee.",
    ),
    (
        "chokepoint_reach_total",
        "counter",
        "Requests of an entry operation that waited on the node.",
    ),
    (
        "chokepoint_failed_traces_total",
        "counter",
        "Requests in which the node failed.",
    ),
    (
        "chokepoint_failed_with_entry_total",
        "counter",
        "Of those, requests that failed at the entry too.",
    ),
    (
        "chokepoint_shape_traces_total",
        "counter",
        "Requests per entry operation and shape.",
    ),
    (
        "chokepoint_shape_e2e_seconds_total",
        "counter",
        "Their summed end-to-end time.",
    ),
    (
        "chokepoint_shape_cp_own_seconds_total",
        "counter",
        "Critical-path time per operation, shape and node, working.",
    ),
    (
        "chokepoint_shape_cp_queue_seconds_total",
        "counter",
        "The same, waiting.",
    ),
    (
        "chokepoint_class_requests_total",
        "counter",
        "Requests per kind (entry operation and route).",
    ),
    (
        "chokepoint_class_calls_total",
        "counter",
        "Requests of a kind in which caller called callee.",
    ),
    (
        "chokepoint_class_present_total",
        "counter",
        "Requests of a kind a service took part in.",
    ),
];

/// The three series of one histogram: its bins, its sum and its maximum.
macro_rules! hist_names {
    ($base:literal) => {
        [
            concat!($base, "_bin"),
            concat!($base, "_sum"),
            concat!($base, "_max"),
        ]
    };
}

pub(super) const NODE_LATENCY: [&str; 3] = hist_names!("chokepoint_node_latency_seconds");
pub(super) const NODE_SELF: [&str; 3] = hist_names!("chokepoint_node_self_time_seconds");
pub(super) const EDGE_CLIENT: [&str; 3] = hist_names!("chokepoint_edge_client_seconds");
pub(super) const EDGE_SERVER: [&str; 3] = hist_names!("chokepoint_edge_server_seconds");
pub(super) const EDGE_QUEUE: [&str; 3] = hist_names!("chokepoint_edge_queue_seconds");
pub(super) const EDGE_GAP: [&str; 3] = hist_names!("chokepoint_edge_gap_seconds");
pub(super) const OP_E2E: [&str; 3] = hist_names!("chokepoint_op_e2e_seconds");
pub(super) const CP_PER_TRACE: [&str; 3] = hist_names!("chokepoint_cp_per_trace_seconds");
