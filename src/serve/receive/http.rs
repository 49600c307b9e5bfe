//! OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, gzip, zstd or uncompressed.
//!
//! Status codes as the OTLP specification gives them: 200 with partial success for bad
//! spans, 400 with a `google.rpc.Status` body for undecodable data, 413 for a body over the
//! limit (checked after decompression), 415 for an unsupported type or encoding, and 503 with
//! `Retry-After` when the pipeline is saturated, so exporters retry instead of dropping.

use std::io::Read;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::submit::{SubmitError, Submitter};
use super::wire::{
    export_response, retryable_status, RpcStatus, EMPTY_WARNING, INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED, UNAVAILABLE,
};
use crate::ingest::batch::{Batch, WireBatch};
use crate::ingest::otlp_json::{self, JsonDocument};
use crate::model::problem::BatchReport;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

pub fn router(
    sub: Submitter,
    token: Option<crate::serve::auth::Token>,
    deadline: std::time::Duration,
) -> Router {
    // Compressed bodies can't be larger than their content; the decompressed size is
    // checked separately.
    let limit = sub.max_request_bytes;
    Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            (sub.stats.clone(), deadline),
            within_deadline,
        ))
        // The token is checked before the body is read or anything counted.
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::serve::auth::require_bearer,
        ))
        .with_state(sub)
}

/// A request must be whole within `receivers.request_timeout`, its body included: a client
/// dribbling a body a byte at a time (which the idle timeout alone would let live) is cut off.
async fn within_deadline(
    State((stats, deadline)): State<(
        std::sync::Arc<crate::serve::stats::Stats>,
        std::time::Duration,
    )>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            stats
                .receivers_conns
                .timed_out
                .fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::REQUEST_TIMEOUT,
                format!("request not received within {deadline:?}"),
            )
                .into_response()
        }
    }
}

/// OTLP/JSON's `google.rpc.Status`.
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    code: i32,
    message: &'a str,
}

/// OTLP/JSON's `ExportTraceServiceResponse`: `{}`, or the partial success.
#[derive(serde::Serialize)]
struct ExportJson<'a> {
    #[serde(rename = "partialSuccess", skip_serializing_if = "Option::is_none")]
    partial_success: Option<PartialJson<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PartialJson<'a> {
    error_message: &'a str,
    /// int64, which OTLP/JSON writes as a string.
    rejected_spans: String,
}

fn json_bytes(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn status_body(enc: Encoding, st: &RpcStatus) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => st.encode_to_vec(),
        Encoding::Json => json_bytes(&StatusJson {
            code: st.code,
            message: &st.message,
        }),
    }
}

fn error(sub: &Submitter, code: StatusCode, enc: Encoding, grpc: i32, message: String) -> Response {
    sub.stats.requests_invalid.fetch_add(1, Ordering::Relaxed);
    let st = RpcStatus {
        code: grpc,
        message,
        details: Vec::new(),
    };
    (
        code,
        [(header::CONTENT_TYPE, enc.content_type())],
        status_body(enc, &st),
    )
        .into_response()
}

fn response_body(enc: Encoding, resp: &ExportTraceServiceResponse) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => resp.encode_to_vec(),
        Encoding::Json => json_bytes(&ExportJson {
            partial_success: resp.partial_success.as_ref().map(|p| PartialJson {
                error_message: &p.error_message,
                rejected_spans: p.rejected_spans.to_string(),
            }),
        }),
    }
}

/// Bytes of the queue's memory share held while a request decodes, given back when dropped.
struct Reservation<'a> {
    sub: &'a Submitter,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    /// Reserves `cost` bytes, or answers the request: 413 when it would cost more than half
    /// the budget whatever else is held, 503 (retryable) while the share is spent.
    fn take(sub: &'a Submitter, cost: usize) -> Result<Reservation<'a>, Box<Response>> {
        let ledger = &sub.stats.ledger;
        let budget = ledger.budget();
        let bytes = cost as u64;
        if budget > 0 && bytes > budget / 2 {
            return Err(Box::new(error(
                sub,
                StatusCode::PAYLOAD_TOO_LARGE,
                Encoding::Json,
                RESOURCE_EXHAUSTED,
                format!(
                    "this OTLP/JSON request would decode to about {} MB, more than half of \
                     analysis.memory_budget_mb: send fewer objects per request",
                    bytes >> 20
                ),
            )));
        }
        if !ledger.reserve_queue(bytes) {
            sub.stats
                .requests_refused_memory
                .fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(unavailable(Encoding::Json, &SubmitError::Memory)));
        }
        Ok(Reservation { sub, bytes })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.sub.stats.ledger.release_queue(self.bytes);
    }
}

/// JSON documents larger than this decode on a blocking thread (a 15 MiB one takes a second).
const BLOCKING_JSON: usize = 256 << 10;

/// Decodes OTLP/JSON; past [`BLOCKING_JSON`] bytes on a blocking thread.
async fn decode_json(raw: Bytes) -> Result<(Batch, BatchReport), String> {
    let len = raw.len();
    let decode = move || {
        let doc = serde_json::from_slice::<JsonDocument>(&raw).map_err(|e| e.to_string())?;
        let mut report = BatchReport::default();
        let batch = Batch::Decoded(otlp_json::to_proto(&doc, &mut report));
        Ok((batch, report))
    };
    if len <= BLOCKING_JSON {
        return decode();
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| format!("decoding failed: {e}"))?
}

async fn export(State(sub): State<Submitter>, headers: HeaderMap, body: Bytes) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let enc = match ctype.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return error(
                &sub,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Encoding::Json,
                INVALID_ARGUMENT,
                format!(
                    "unsupported Content-Type {other:?}: use application/x-protobuf or application/json"
                ),
            )
        }
    };
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let max = sub.max_request_bytes;
    let raw: Bytes = match coding.as_str() {
        "" | "identity" => body,
        "gzip" | "zstd" => {
            // Inflated at most one byte past the limit: a decompression bomb stops there.
            let mut out = Vec::new();
            let read = if coding == "gzip" {
                MultiGzDecoder::new(&body[..])
                    .take(max as u64 + 1)
                    .read_to_end(&mut out)
            } else {
                zstd::stream::read::Decoder::new(&body[..])
                    .and_then(|d| d.take(max as u64 + 1).read_to_end(&mut out))
            };
            if let Err(e) = read {
                return error(
                    &sub,
                    StatusCode::BAD_REQUEST,
                    enc,
                    INVALID_ARGUMENT,
                    format!("invalid {coding} body: {e}"),
                );
            }
            Bytes::from(out)
        }
        other => {
            return error(
                &sub,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                enc,
                INVALID_ARGUMENT,
                format!("unsupported Content-Encoding {other:?}: use gzip, zstd or none"),
            )
        }
    };
    if raw.len() > max {
        return error(
            &sub,
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            RESOURCE_EXHAUSTED,
            format!(
                "request exceeds {max} bytes after decompression (receivers.max_request_bytes)"
            ),
        );
    }
    let raw_len = raw.len();
    // OTLP/JSON decodes to structs many times its size: what it may hold is reserved from
    // the queue's memory share before decoding (refused, retryably, when that is spent), and
    // a request built to decode to more than half the budget is refused outright.
    let reservation = match enc {
        Encoding::Json => match Reservation::take(&sub, otlp_json::decoded_cost(&raw)) {
            Ok(r) => Some(r),
            Err(resp) => return *resp,
        },
        Encoding::Protobuf => None,
    };
    let (spans, report) = match enc {
        Encoding::Protobuf => match WireBatch::new(raw) {
            Ok(w) => (Batch::Wire(w), BatchReport::default()),
            Err(e) => {
                return error(
                    &sub,
                    StatusCode::BAD_REQUEST,
                    enc,
                    INVALID_ARGUMENT,
                    format!("not a valid OTLP ExportTraceServiceRequest: {e}"),
                )
            }
        },
        // A large document decodes on a blocking thread, not on one the other connections
        // (and `/readyz`) are served by.
        Encoding::Json => match decode_json(raw).await {
            Ok(decoded) => decoded,
            Err(e) => {
                return error(
                    &sub,
                    StatusCode::BAD_REQUEST,
                    enc,
                    INVALID_ARGUMENT,
                    format!("not valid OTLP/JSON: {e}"),
                )
            }
        },
    };
    drop(reservation);
    let empty = (raw_len > 0 && spans.span_count() == 0 && report.seen == 0).then(|| {
        sub.stats.requests_empty.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(bytes = raw_len, "OTLP/HTTP request decoded to zero spans");
        EMPTY_WARNING
    });
    match sub.submit(spans, report).await {
        Ok(report) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, enc.content_type())],
            response_body(enc, &export_response(&report, empty)),
        )
            .into_response(),
        Err(e @ (SubmitError::Busy | SubmitError::Memory | SubmitError::Closed)) => {
            unavailable(enc, &e)
        }
    }
}

/// 503 with `Retry-After`: the exporter sends the request again.
fn unavailable(enc: Encoding, e: &SubmitError) -> Response {
    let st = retryable_status(UNAVAILABLE, &e.to_string(), 1);
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, enc.content_type())],
        status_body(enc, &st),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
