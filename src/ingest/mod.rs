//! The only code that sees OTLP, protobuf and JSON wire types. Everything else receives
//! [`model::Span`](crate::model::Span)s.
//!
//! Every source (files here; gRPC and HTTP receivers later) ends in the same
//! [`Normalizer::normalize`]: one conversion, one set of rules for names and peers.

pub mod batch;
pub mod encode;
pub mod fault_text;
pub mod file;
pub mod grpc;
pub mod http;
mod ids;
pub mod jaeger;
pub mod local;
pub mod normalize;
pub mod otlp_json;
pub mod otlp_wire;
pub mod problem;
pub mod submit;
pub mod wire;
pub mod zipkin;

pub use file::{read_path, read_path_counted, FileError, FileSummary, Format, Location};
pub use normalize::{Normalizer, UNKNOWN_SERVICE};
pub use problem::{BatchReport, SpanError, SpanProblem};
