//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};

use super::submit::{SubmitError, Submitter};
use super::wire::{export_response, retryable_status, EMPTY_WARNING, UNAVAILABLE};
use crate::ingest::batch::{Batch, WireBatch};
use crate::model::problem::BatchReport;
use std::sync::atomic::Ordering;

/// The OTLP trace service, answered from the request's bytes: the generated server would
/// decode every span with prost before the normalizer reads a tenth of it.
#[derive(Clone)]
pub struct TraceServer {
    sub: Arc<Submitter>,
    /// `receivers.request_timeout`: an export must be whole within it, body included.
    deadline: std::time::Duration,
}

impl NamedService for TraceServer {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for TraceServer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT {
            return Box::pin(async {
                Ok(Status::unimplemented("only TraceService/Export is served here").into_http())
            });
        }
        let sub = self.sub.clone();
        let deadline = self.deadline;
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            // Decompression stops at the limit, as OTLP/HTTP's does: no 64 MB inflated first.
            let max = sub.max_request_bytes;
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            // tonic's own timeout answers CANCELLED, as if the client had given up.
            match tokio::time::timeout(deadline, grpc.unary(Export(sub.clone()), req)).await {
                Ok(answer) => Ok(answer),
                Err(_) => {
                    let cut = &sub.stats.receivers_conns.timed_out;
                    cut.fetch_add(1, Ordering::Relaxed);
                    let message = format!("export not received within {deadline:?}");
                    Ok(Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}

/// Requests as bytes, answers encoded with prost.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the answer: {e}")))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct Export(Arc<Submitter>);

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let sub = self.0.clone();
        Box::pin(async move { export(&sub, request.into_inner()).await })
    }
}

/// The service, with gzip and zstd accepted and, when a token is set, only for calls
/// carrying it. Messages are bounded at the configured limit by tonic itself, decompressed or
/// not (decompression bombs stop there), and answered RESOURCE_EXHAUSTED.
pub fn service(
    sub: Submitter,
    token: Option<crate::serve::auth::Token>,
    deadline: std::time::Duration,
) -> InterceptedService<TraceServer, crate::serve::auth::Bearer> {
    let server = TraceServer {
        sub: Arc::new(sub),
        deadline,
    };
    InterceptedService::new(server, crate::serve::auth::Bearer(token))
}

/// tonic answers a message over its decoding limit with OUT_OF_RANGE, which OTLP exporters
/// treat as retryable: they would resend the same oversized batch for ever. This rewrites that
/// (trailers-only) answer to RESOURCE_EXHAUSTED without RetryInfo, as the specification asks
/// for a request that is too large.
/// The request is counted as invalid in `stats`.
pub fn too_large_is_not_retryable<B>(
    mut resp: http::Response<B>,
    stats: &crate::serve::stats::Stats,
) -> http::Response<B> {
    let out_of_range = resp
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    if out_of_range {
        stats.requests_invalid.fetch_add(1, Ordering::Relaxed);
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

/// A retryable status: UNAVAILABLE with a RetryInfo detail, so exporters back off and retry.
pub fn retryable(message: &str) -> Status {
    let details = retryable_status(UNAVAILABLE, message, 1);
    Status::with_details(Code::Unavailable, message, details.encode_to_vec().into())
}

async fn export(
    sub: &Submitter,
    bytes: Bytes,
) -> Result<Response<ExportTraceServiceResponse>, Status> {
    let size = bytes.len();
    let stats = &sub.stats;
    let batch = match WireBatch::new(bytes) {
        Ok(w) => w,
        Err(e) => {
            stats.requests_invalid.fetch_add(1, Ordering::Relaxed);
            return Err(Status::invalid_argument(format!(
                "not a valid OTLP ExportTraceServiceRequest: {e}"
            )));
        }
    };
    let empty = (batch.spans() == 0 && size > 0).then(|| {
        stats.requests_empty.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(bytes = size, "OTLP/gRPC request decoded to zero spans");
        EMPTY_WARNING
    });
    match sub.submit(Batch::Wire(batch), BatchReport::default()).await {
        Ok(report) => {
            if report.rejected > 0 {
                tracing::debug!(rejected = report.rejected, "{}", report.summary());
            }
            Ok(Response::new(export_response(&report, empty)))
        }
        Err(e @ (SubmitError::Busy | SubmitError::Memory | SubmitError::Closed)) => {
            Err(retryable(&e.to_string()))
        }
    }
}
