//! OTLP receivers: gRPC ([`grpc`], port 4317) and HTTP ([`http`], port 4318, protobuf and
//! JSON) decode a request and hand it to [`submit`], the one handler that normalizes on the
//! receiver's thread and queues for the pipeline; [`wire`] holds the few `google.rpc`
//! messages their answers carry.

pub mod grpc;
pub mod http;
pub mod submit;
pub mod wire;
