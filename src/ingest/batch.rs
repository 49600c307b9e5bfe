//! A batch of spans as a source hands it over: decoded OTLP messages (JSON, Jaeger and Zipkin
//! end there) or the protobuf bytes themselves, which the normalizer reads in place.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::otlp_wire::{count_spans, WireError};
use super::submit::span_count;

/// The bytes of an `ExportTraceServiceRequest` (or `TracesData`) whose framing down to each
/// span has been checked, with its span count: only [`WireBatch::new`] makes one, so a batch
/// that reaches the pipeline cannot be cut short.
#[derive(Debug, Clone)]
pub struct WireBatch {
    bytes: Bytes,
    spans: u64,
}

impl WireBatch {
    pub fn new(bytes: Bytes) -> Result<Self, WireError> {
        let spans = count_spans(&bytes)?;
        Ok(WireBatch { bytes, spans })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn spans(&self) -> u64 {
        self.spans
    }
}

#[derive(Debug, Clone)]
pub enum Batch {
    Decoded(Vec<ResourceSpans>),
    Wire(WireBatch),
}

impl Batch {
    pub fn span_count(&self) -> u64 {
        match self {
            Batch::Decoded(rs) => span_count(rs),
            Batch::Wire(w) => w.spans,
        }
    }

    /// Decoded messages, whatever the batch holds (prost decodes wire bytes): for tests and
    /// tools that want to look at or re-encode the spans.
    pub fn into_resource_spans(self) -> Result<Vec<ResourceSpans>, prost::DecodeError> {
        match self {
            Batch::Decoded(rs) => Ok(rs),
            Batch::Wire(w) => {
                prost::Message::decode(w.bytes).map(|r: ExportTraceServiceRequest| r.resource_spans)
            }
        }
    }
}

impl From<Vec<ResourceSpans>> for Batch {
    fn from(rs: Vec<ResourceSpans>) -> Self {
        Batch::Decoded(rs)
    }
}
