//! The HTTP API (axum): findings, graph, nodes, critical paths, metrics, health, OpenAPI.
//! Handlers only translate: every answer comes from the pipeline task or its published
//! findings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::dto::FindingsDoc;
use crate::config::parse_duration;
use crate::findings::Severity;
use crate::ingest::submit::Stats;
use crate::model::TraceId;
use crate::pipeline::{Event, Query as PQuery};

#[derive(Clone)]
pub struct ApiState {
    pub events: mpsc::Sender<Event>,
    pub findings: watch::Receiver<Arc<FindingsDoc>>,
    pub stats: Arc<Stats>,
    pub ready: Arc<AtomicBool>,
    /// The default window (`analysis.window`).
    pub window: Duration,
}

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/findings", get(findings))
        .route("/graph", get(graph))
        .route("/nodes/{name}", get(node))
        .route("/traces/{trace_id}/critical-path", get(critical_path))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(state)
}

fn problem(code: StatusCode, message: impl Into<String>) -> Response {
    ApiError(code, message.into()).into_response()
}

/// An error answer: a status and a message, as `{"error": "..."}`.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
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
    let doc: FindingsDoc = match &p.window {
        None => (**s.findings.borrow()).clone(),
        Some(_) => {
            let w = match window(&s, &p.window) {
                Ok(w) => w,
                Err(r) => return r.into_response(),
            };
            match ask(&s, |reply| PQuery::Findings { window: w, reply }).await {
                Ok(d) => d,
                Err(r) => return r.into_response(),
            }
        }
    };
    match filter_findings(doc, p.kind, p.min_severity, p.node) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct WindowParam {
    window: Option<String>,
}

async fn graph(State(s): State<ApiState>, Query(p): Query<WindowParam>) -> Response {
    let w = match window(&s, &p.window) {
        Ok(w) => w,
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
    let w = match window(&s, &p.window) {
        Ok(w) => w,
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

async fn metrics(State(s): State<ApiState>) -> Response {
    let mut text = crate::api::metrics::stats_metrics(&s.stats);
    match ask(&s, |reply| PQuery::GraphMetrics { reply }).await {
        Ok(g) => text.push_str(&g),
        Err(r) => return r.into_response(),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
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
