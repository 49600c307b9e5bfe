//! The few Google RPC messages OTLP answers carry (`google.rpc.Status`, `RetryInfo`), written
//! out here rather than pulling in a crate for three messages, and the OTLP responses.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::model::problem::BatchReport;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// gRPC status codes used here.
pub const INVALID_ARGUMENT: i32 = 3;
pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const UNAVAILABLE: i32 = 14;

/// A `google.rpc.Status` with a `RetryInfo` telling the client when to retry.
pub fn retryable_status(code: i32, message: &str, retry_after_s: i64) -> RpcStatus {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: retry_after_s,
            nanos: 0,
        }),
    };
    RpcStatus {
        code,
        message: message.to_owned(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: prost::Message::encode_to_vec(&info),
        }],
    }
}

/// The OTLP answer to a taken batch: partial success when some spans were rejected (or the
/// request held none), as the specification asks.
pub fn export_response(
    report: &BatchReport,
    empty_warning: Option<&str>,
) -> ExportTraceServiceResponse {
    let partial_success = if report.rejected > 0 {
        Some(ExportTracePartialSuccess {
            rejected_spans: report.rejected as i64,
            error_message: report.summary(),
        })
    } else {
        empty_warning.map(|w| ExportTracePartialSuccess {
            rejected_spans: 0,
            error_message: w.to_owned(),
        })
    };
    ExportTraceServiceResponse { partial_success }
}

/// The warning for a non-empty request that decoded to no spans.
pub const EMPTY_WARNING: &str = "the request decoded to zero spans; check that it is an \
    ExportTraceServiceRequest and, for JSON, that keys are lowerCamelCase (resourceSpans, \
    scopeSpans) as OTLP/JSON requires";
