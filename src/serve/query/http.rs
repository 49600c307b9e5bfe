//! The HTTP API (axum): findings, graph, nodes, series, entry operations, finding history,
//! critical paths, metrics, health, an event stream, OpenAPI and the dashboard. Handlers
//! only translate: every answer for the default window comes from the published [`View`]
//! and never waits on ingest; other windows and critical paths are asked of the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::dto::{
    ErrorDoc, FindingsDoc, HealthDoc, NodeGraphDoc, NodeGraphEdge, NodeGraphNode, RefreshEvent,
    RefreshFinding, UiConfigDoc,
};
use crate::api::view::{edge_key, edge_range, node_range, EdgeSeriesDoc, NodeSeriesDoc, View};
use crate::clock::parse_duration;
use crate::model::TraceId;
use crate::report::finding::Severity;
use crate::serve::pipeline::{Event, Query as PQuery, Range as PRange};
use crate::serve::stats::Stats;

#[derive(Clone)]
pub struct ApiState {
    pub events: mpsc::Sender<Event>,
    /// The published view (see [`View`]).
    pub view: watch::Receiver<Arc<View>>,
    pub stats: Arc<Stats>,
    pub ready: Arc<AtomicBool>,
    /// The default window (`analysis.window`).
    pub window: Duration,
    /// How often the view is refreshed (`analysis.refresh`).
    pub refresh: Duration,
    /// Link template for trace ids in the dashboard (`api.trace_url`).
    pub trace_url: Option<String>,
    /// The API's bearer token, if one is required.
    pub token: Option<crate::serve::auth::Token>,
    /// Host names answered besides IP literals and localhost (`api.hosts`).
    pub hosts: Vec<String>,
    /// Origins allowed to read the API from a browser (`api.cors_origins`).
    pub cors_origins: Vec<String>,
}

impl ApiState {
    fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }
}

pub const OPENAPI: &str = include_str!("../../api/openapi.json");

pub fn router(state: ApiState) -> Router {
    // What needs no token: probes, and the page shell (it asks for the token itself).
    let open = Router::new()
        .route("/", get(crate::api::dashboard::index))
        .route("/ui/{file}", get(crate::api::dashboard::asset))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    // `/ui-config` holds `api.trace_url`, which may name an internal host.
    let data = Router::new()
        .route("/ui-config", get(ui_config))
        .route("/findings", get(findings))
        .route("/findings/history", get(finding_history))
        .route("/capacity", get(capacity))
        .route("/graph", get(graph))
        .route("/nodes", get(nodes))
        .route("/nodes/{name}", get(node))
        .route("/series/nodes/{id}", get(node_series))
        .route("/series/edges/{caller}/{callee}", get(edge_series))
        .route("/operations", get(operations))
        .route("/health", get(health))
        .route("/events", get(events))
        .route("/node-graph", get(node_graph))
        .route("/node-graph/nodes", get(node_graph_nodes))
        .route("/node-graph/edges", get(node_graph_edges))
        .route("/traces/{trace_id}/critical-path", get(critical_path))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            crate::serve::auth::require_bearer,
        ));
    let hosts = state.hosts.clone();
    let origins = Arc::new(state.cors_origins.clone());
    open.merge(data)
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
        .layer(axum::middleware::from_fn_with_state(origins, cors))
        .with_state(state)
}

/// CORS, off unless `api.cors_origins` names the origin: then reads (GET, with the
/// Authorization header) are allowed from it, and its preflight is answered. The API is
/// read-only, so nothing else is ever allowed.
async fn cors(
    State(origins): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| origins.iter().any(|a| a == o || a == "*"))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("origin"));
    resp
}

/// 421 for a `Host` the API does not answer to: a page on another site that rebinds its
/// name to this address can't read the API.
async fn check_host(
    State(hosts): State<Vec<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if !crate::serve::auth::host_allowed(host.as_deref(), &hosts) {
        return problem(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this API does not answer to Host {:?}: add it to api.hosts",
                host.unwrap_or_default()
            ),
        );
    }
    next.run(req).await
}

fn problem(code: StatusCode, message: impl Into<String>) -> Response {
    ApiError(code, message.into()).into_response()
}

/// An error answer: a status and a message, as `{"error": "..."}`.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorDoc { error: self.1 })).into_response()
    }
}

/// Asks the pipeline; a busy or stopped pipeline is a 503, not a hang.
pub(crate) async fn ask<T>(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> PQuery,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "analysis pipeline unavailable".into(),
        )
    };
    s.events
        .send_timeout(Event::Query(make(tx)), Duration::from_secs(5))
        .await
        .map_err(|_| unavailable())?;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

fn window(s: &ApiState, w: &Option<String>) -> Result<Duration, ApiError> {
    match w {
        None => Ok(s.window),
        Some(w) => parse_duration(w)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("window {w:?} is not a duration like 5m or 1h"),
                )
            }),
    }
}

#[derive(Deserialize)]
struct FindingsParams {
    kind: Option<String>,
    min_severity: Option<String>,
    node: Option<String>,
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The time a query asks for: `None` for the default window (served from the view),
/// `from`/`to` for a past range of the history, else `window` for the last so long.
fn query_range(
    s: &ApiState,
    w: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<Option<PRange>, ApiError> {
    if from.is_some() || to.is_some() {
        let (f, t, _) = range(&RangeParams {
            from: from.clone(),
            to: to.clone(),
            step: None,
        })?;
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        return Ok(Some(PRange::Between {
            from_ns: ns(f),
            to_ns: ns(t),
        }));
    }
    match w {
        None => Ok(None),
        Some(_) => Ok(Some(PRange::Last(window(s, w)?))),
    }
}

/// Applies the `/findings` filters (shared with the gRPC API); an invalid filter is an error
/// message for the caller.
pub(crate) fn filter_findings(
    mut doc: FindingsDoc,
    kind: Option<String>,
    min_severity: Option<String>,
    node: Option<String>,
) -> Result<FindingsDoc, String> {
    if let Some(k) = &kind {
        if k != "bottleneck" && k != "spof" {
            return Err("kind is bottleneck or spof".into());
        }
    }
    let min = match &min_severity {
        None => None,
        Some(m) => Some(Severity::parse(m).ok_or("min_severity is low, medium, high or critical")?),
    };
    doc.findings.retain(|f| {
        kind.as_deref().is_none_or(|k| f.kind == k)
            && node.as_deref().is_none_or(|n| f.node == n)
            && min.is_none_or(|m| Severity::parse(f.severity).is_some_and(|sv| sv >= m))
    });
    Ok(doc)
}

async fn findings(State(s): State<ApiState>, Query(p): Query<FindingsParams>) -> Response {
    if let Err(e) = filter_findings(
        FindingsDoc::empty(),
        p.kind.clone(),
        p.min_severity.clone(),
        p.node.clone(),
    ) {
        return problem(StatusCode::BAD_REQUEST, e);
    }
    let doc = match findings_doc(&s, &p.window, &p.from, &p.to).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match filter_findings(doc, p.kind, p.min_severity, p.node) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct CapacityParams {
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// A what-if factor on entry traffic (`2` = twice today's).
    load: Option<String>,
}

/// Every node's capacity and headroom, and with `?load=` the nodes over capacity at that
/// multiple of today's entry traffic, with their expected latency.
async fn capacity(State(s): State<ApiState>, Query(p): Query<CapacityParams>) -> Response {
    let load = match p.load.as_deref().map(str::parse::<f64>) {
        None => None,
        Some(Ok(f)) if f.is_finite() && f > 0.0 && f <= 1e6 => Some(f),
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "load must be a positive factor on today's entry traffic (2 = twice), not {:?}",
                    p.load.unwrap_or_default()
                ),
            )
        }
    };
    match findings_doc(&s, &p.window, &p.from, &p.to).await {
        Ok(doc) => Json(crate::api::dto::CapacityDoc::new(&doc, load)).into_response(),
        Err(r) => r,
    }
}

/// The findings of the published view, or of the window a query names.
async fn findings_doc(
    s: &ApiState,
    window: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<FindingsDoc, Response> {
    match query_range(s, window, from, to) {
        Err(r) => Err(r.into_response()),
        Ok(None) => Ok(s.view().findings.clone()),
        Ok(Some(w)) => ask(s, |reply| PQuery::Findings { window: w, reply })
            .await
            .map_err(IntoResponse::into_response),
    }
}

#[derive(Deserialize)]
struct WindowParam {
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn graph(State(s): State<ApiState>, Query(p): Query<WindowParam>) -> Response {
    let w = match query_range(&s, &p.window, &p.from, &p.to) {
        Ok(None) => return Json(s.view().graph.clone()).into_response(),
        Ok(Some(w)) => w,
        Err(r) => return r.into_response(),
    };
    match ask(&s, |reply| PQuery::Graph { window: w, reply }).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn node(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(p): Query<WindowParam>,
) -> Response {
    let w = match query_range(&s, &p.window, &p.from, &p.to) {
        Ok(None) => {
            return match s.view().detail(&name) {
                Some(d) => Json(d.clone()).into_response(),
                None => problem(
                    StatusCode::NOT_FOUND,
                    format!("no node with id or name {name:?} in the window"),
                ),
            }
        }
        Ok(Some(w)) => w,
        Err(r) => return r.into_response(),
    };
    let n = name.clone();
    match ask(&s, |reply| PQuery::Node {
        name: n,
        window: w,
        reply,
    })
    .await
    {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("no node named {name:?} in the window"),
        ),
        Err(r) => r.into_response(),
    }
}

fn parse_trace_id(s: &str) -> Option<TraceId> {
    let b = crate::ingest::otlp_json::decode_hex(s)?;
    Some(TraceId(b.try_into().ok()?))
}

async fn critical_path(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(trace) = parse_trace_id(&id) else {
        return problem(StatusCode::BAD_REQUEST, "trace id is 32 hex digits");
    };
    match ask(&s, |reply| PQuery::CriticalPath { trace, reply }).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "trace not kept: only recent traces' critical paths are (analysis.keep_traces)",
        ),
        Err(r) => r.into_response(),
    }
}

/// The daemon's counters, then the view's graph text as it is: shared, not copied, so
/// scrapes at once cost no more memory than one.
async fn metrics(State(s): State<ApiState>) -> Response {
    let text = crate::serve::stats::stats_metrics(&s.stats);
    let graph = s.view().metrics.clone();
    let chunks = [bytes::Bytes::from(text), graph].map(Ok::<_, std::convert::Infallible>);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(tokio_stream::iter(chunks)),
    )
        .into_response()
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting or stopping\n").into_response()
    }
}

async fn ui_config(State(s): State<ApiState>) -> Response {
    Json(UiConfigDoc {
        refresh_ms: s.refresh.as_millis() as u64,
        trace_url: s.trace_url.clone(),
        window_seconds: s.window.as_secs_f64(),
    })
    .into_response()
}

async fn finding_history(State(s): State<ApiState>) -> Response {
    Json(s.view().history.clone()).into_response()
}

async fn nodes(State(s): State<ApiState>) -> Response {
    Json(s.view().graph.nodes.clone()).into_response()
}

async fn operations(State(s): State<ApiState>) -> Response {
    Json(s.view().operations.clone()).into_response()
}

/// `from`, `to` (Unix milliseconds, or a duration meaning that long ago: `15m`) and `step`
/// (a duration) of a series query.
#[derive(Deserialize)]
struct RangeParams {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

fn range(p: &RangeParams) -> Result<(u64, u64, u64), ApiError> {
    let now_ms = crate::clock::now_ns() / 1_000_000;
    let bad = |what: &str, v: &str| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{what} {v:?} is Unix milliseconds or a duration ago like 15m"),
        )
    };
    let at = |what: &str, v: &Option<String>, default: u64| -> Result<u64, ApiError> {
        match v {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Ok(ms),
                Err(_) => parse_duration(v)
                    .map(|d| now_ms.saturating_sub(d.as_millis() as u64))
                    .map_err(|_| bad(what, v)),
            },
        }
    };
    let from = at("from", &p.from, 0)?;
    let to = at("to", &p.to, u64::MAX)?;
    let step = match &p.step {
        None => 0,
        Some(v) => parse_duration(v)
            .map(|d| d.as_millis() as u64)
            .map_err(|_| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("step {v:?} is a duration like 1m"),
                )
            })?,
    };
    Ok((from, to, step))
}

async fn node_series(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<RangeParams>,
) -> Response {
    let (from, to, step) = match range(&p) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let view = s.view();
    let id = view.graph.node(&id).map_or(id.clone(), |n| n.id.clone());
    match view.series.nodes.get(&id) {
        Some(pts) => Json(NodeSeriesDoc {
            bucket_seconds: view.series.bucket_seconds,
            points: node_range(pts, from, to, step),
            node_id: id,
        })
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no series for node {id:?}")),
    }
}

async fn edge_series(
    State(s): State<ApiState>,
    Path((from_id, to_id)): Path<(String, String)>,
    Query(p): Query<RangeParams>,
) -> Response {
    let (from, to, step) = match range(&p) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let view = s.view();
    match view.series.edges.get(&edge_key(&from_id, &to_id)) {
        Some(pts) => Json(EdgeSeriesDoc {
            bucket_seconds: view.series.bucket_seconds,
            points: edge_range(pts, from, to, step),
            from_id,
            to_id,
        })
        .into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no series for the edge {from_id} -> {to_id}"),
        ),
    }
}

/// Ingest health as JSON: the books of the pipeline.
async fn health(State(s): State<ApiState>) -> Response {
    let st = &s.stats;
    let g = |c: &std::sync::atomic::AtomicU64| Stats::get(c);
    Json(HealthDoc {
        export_requests: g(&st.requests),
        names_overflowed: g(&st.names_overflowed),
        nodes_overflowed: g(&st.nodes_overflowed),
        queue_depth: g(&st.queue_depth),
        ready: s.ready.load(Ordering::Relaxed),
        requests_invalid: g(&st.requests_invalid),
        spans_analysed: g(&st.spans_analysed),
        spans_dropped: g(&st.spans_dropped),
        spans_in_flight: g(&st.spans_in_flight),
        spans_received: g(&st.spans_received),
        spans_refused: g(&st.spans_refused),
        spans_rejected: g(&st.spans_rejected),
        traces_completed: g(&st.traces_completed),
        traces_in_flight: g(&st.traces_in_flight),
        view_refreshed_at: s.view().refreshed_at.clone(),
        aggregate_bytes: g(&st.aggregate_bytes),
        memory_budget_bytes: g(&st.memory_budget_bytes),
        rss_bytes: crate::serve::stats::resident_bytes(),
    })
    .into_response()
}

/// Server-sent events: a `refresh` event each time the view is rebuilt, with each finding's
/// id, severity, score and whether it is active (the dashboard updates from them).
async fn events(State(s): State<ApiState>) -> Response {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use tokio_stream::StreamExt as _;
    let stream = tokio_stream::wrappers::WatchStream::new(s.view.clone()).map(|v: Arc<View>| {
        let data = RefreshEvent {
            findings: v
                .findings
                .findings
                .iter()
                .map(|f| RefreshFinding {
                    active: f.active,
                    id: f.id.clone(),
                    score: f.score,
                    severity: f.severity,
                })
                .collect(),
            refreshed_at: v.refreshed_at.clone(),
            traces: v.findings.traces,
        };
        let data = serde_json::to_string(&data).unwrap_or_default();
        Ok::<_, std::convert::Infallible>(SseEvent::default().event("refresh").data(data))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Grafana's Node Graph panel frames: nodes (`id`, `title`, `subtitle`, `mainstat`,
/// `secondarystat`, `arc__*`, `color`) and edges (`id`, `source`, `target`, `mainstat`,
/// `secondarystat`), for a JSON data source.
fn node_graph_frames(v: &View) -> NodeGraphDoc {
    let worst = |id: &str| {
        v.findings
            .findings
            .iter()
            .filter(|f| f.node_id == id)
            .map(|f| (f.severity, f.active))
            .max_by_key(|(s, a)| (*a, crate::report::finding::Severity::parse(s)))
    };
    let nodes = v
        .graph
        .nodes
        .iter()
        .map(|n| {
            let w = worst(&n.id);
            let sev = w.map_or("none", |w| w.0);
            let (critical, high, medium, ok) = match sev {
                "critical" => (1.0, 0.0, 0.0, 0.0),
                "high" => (0.0, 1.0, 0.0, 0.0),
                "medium" => (0.0, 0.0, 1.0, 0.0),
                _ => (0.0, 0.0, 0.0, 1.0),
            };
            let instances = n.instances.map_or("instances unknown".to_owned(), |k| {
                format!("{k} instance{}", if k == 1 { "" } else { "s" })
            });
            NodeGraphNode {
                arc_critical: critical,
                arc_high: high,
                arc_medium: medium,
                arc_ok: ok,
                color: match sev {
                    "critical" => "red",
                    "high" => "orange",
                    "medium" => "yellow",
                    _ => "green",
                },
                detail_active: w.is_some_and(|w| w.1),
                detail_severity: sev,
                id: n.id.clone(),
                mainstat: format!("{} req", n.requests),
                secondarystat: n
                    .latency_ms
                    .as_ref()
                    .map_or(String::new(), |l| format!("p99 {} ms", l.p99)),
                subtitle: format!("{} · {instances}", n.node_type),
                title: n.name.clone(),
            }
        })
        .collect();
    let edges = v
        .graph
        .edges
        .iter()
        .map(|e| NodeGraphEdge {
            id: edge_key(&e.from_id, &e.to_id),
            mainstat: format!("{} calls", e.calls),
            secondarystat: format!("{:.1}% errors", e.error_rate * 100.0),
            source: e.from_id.clone(),
            target: e.to_id.clone(),
        })
        .collect();
    NodeGraphDoc { edges, nodes }
}

async fn node_graph(State(s): State<ApiState>) -> Response {
    Json(node_graph_frames(&s.view())).into_response()
}

async fn node_graph_nodes(State(s): State<ApiState>) -> Response {
    Json(node_graph_frames(&s.view()).nodes).into_response()
}

async fn node_graph_edges(State(s): State<ApiState>) -> Response {
    Json(node_graph_frames(&s.view()).edges).into_response()
}
