//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};

use super::problem::BatchReport;
use super::submit::{span_count, SubmitError, Submitter};
use super::wire::{export_response, retryable_status, EMPTY_WARNING, UNAVAILABLE};
use std::sync::atomic::Ordering;

pub struct GrpcReceiver {
    sub: Submitter,
}

/// The tonic service, with gzip and zstd accepted and, when a token is set, only for calls
/// carrying it. Messages are bounded at the configured limit by tonic itself, decompressed or
/// not (decompression bombs stop there), and answered RESOURCE_EXHAUSTED.
pub fn service(
    sub: Submitter,
    token: Option<crate::auth::Token>,
) -> InterceptedService<TraceServiceServer<GrpcReceiver>, crate::auth::Bearer> {
    let max = sub.max_request_bytes;
    let server = TraceServiceServer::new(GrpcReceiver { sub })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        // Decompression stops at the limit, as OTLP/HTTP's does: no 64 MB inflated first.
        .max_decoding_message_size(max);
    InterceptedService::new(server, crate::auth::Bearer(token))
}

/// tonic answers a message over its decoding limit with OUT_OF_RANGE, which OTLP exporters
/// treat as retryable: they would resend the same oversized batch for ever. This rewrites that
/// (trailers-only) answer to RESOURCE_EXHAUSTED without RetryInfo, as the specification asks
/// for a request that is too large.
/// The request is counted as invalid in `stats`.
pub fn too_large_is_not_retryable<B>(
    mut resp: http::Response<B>,
    stats: &super::submit::Stats,
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

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        let size = req.encoded_len();
        let stats = &self.sub.stats;
        if size > self.sub.max_request_bytes {
            stats.requests_invalid.fetch_add(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "request is {size} bytes, over the limit of {} (receivers.max_request_bytes)",
                self.sub.max_request_bytes
            )));
        }
        let empty = (span_count(&req.resource_spans) == 0 && size > 0).then(|| {
            stats.requests_empty.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(bytes = size, "OTLP/gRPC request decoded to zero spans");
            EMPTY_WARNING
        });
        match self
            .sub
            .submit(req.resource_spans, BatchReport::default())
            .await
        {
            Ok(report) => {
                if report.rejected > 0 {
                    tracing::debug!(rejected = report.rejected, "{}", report.summary());
                }
                Ok(Response::new(export_response(&report, empty)))
            }
            Err(e @ (SubmitError::Busy | SubmitError::Closed)) => Err(retryable(&e.to_string())),
        }
    }
}
