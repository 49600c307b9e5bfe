//! OTLP protobuf decode and normalize: never a panic, and the books balance.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        if let Err(e) = chokepoint::testkit::check_engine(&[req.resource_spans]) {
            panic!("{e}");
        }
    }
});
