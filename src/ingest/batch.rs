//! A batch of spans as a source hands it over: decoded OTLP messages (JSON, Jaeger and Zipkin
//! end there) or the protobuf bytes themselves, which the normalizer reads in place.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::otlp_wire::{count_spans, resource_spans_entries, WireError};

/// Spans in decoded OTLP resources.
pub fn span_count(spans: &[ResourceSpans]) -> u64 {
    spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

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

    /// Cut at `resource_spans` boundaries into requests of about `max_spans` spans (more when
    /// one resource holds more), sharing these bytes: a whole capture in one message is then
    /// normalized and analysed piece by piece, on two threads, instead of all at once.
    pub fn split(self, max_spans: u64) -> Vec<WireBatch> {
        if self.spans <= max_spans {
            return vec![self];
        }
        let mut out = Vec::new();
        let (mut from, mut to, mut n) = (None, 0, 0);
        for (range, spans) in resource_spans_entries(&self.bytes) {
            from = from.or(Some(range.start));
            to = range.end;
            n += spans;
            if n >= max_spans {
                out.push(WireBatch {
                    bytes: self.bytes.slice(from.unwrap_or(0)..to),
                    spans: n,
                });
                (from, n) = (None, 0);
            }
        }
        if let Some(from) = from {
            out.push(WireBatch {
                bytes: self.bytes.slice(from..to),
                spans: n,
            });
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_split_request_is_its_resources_in_order() {
        let cfg = crate::simulate::SimConfig {
            traces: 50,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: crate::simulate::generate(&cfg)
                .flat_map(|r| r.resource_spans)
                .collect(),
        };
        let whole = WireBatch::new(req.encode_to_vec().into()).expect("valid");
        let total = whole.spans();
        let parts = whole.split(100);
        assert!(parts.len() > 3);
        assert_eq!(parts.iter().map(WireBatch::spans).sum::<u64>(), total);
        let mut again = Vec::new();
        for p in parts {
            assert_eq!(count_spans(p.bytes()), Ok(p.spans()));
            again.extend(Batch::Wire(p).into_resource_spans().expect("decodes"));
        }
        assert_eq!(again, req.resource_spans);
    }
}
