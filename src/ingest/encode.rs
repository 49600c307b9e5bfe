//! Model-free OTLP/JSON writing, for `simulate --out` and anything else that must hand
//! OTLP/JSON to other tools.

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde_json::{json, Map, Value};

/// Encodes a request as one OTLP/JSON line, as the specification's JSON mapping writes it
/// (hex ids, integer enums, 64-bit integers as strings), so the Collector and other OTLP tools
/// read what chokepoint writes.
pub fn encode_line(req: &ExportTraceServiceRequest) -> String {
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    fn value(v: &AnyValue) -> Value {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => json!({ "stringValue": s }),
            Some(any_value::Value::BoolValue(b)) => json!({ "boolValue": b }),
            Some(any_value::Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
            Some(any_value::Value::DoubleValue(d)) => json!({ "doubleValue": d }),
            Some(any_value::Value::ArrayValue(a)) => {
                json!({ "arrayValue": { "values": a.values.iter().map(value).collect::<Vec<_>>() } })
            }
            Some(any_value::Value::KvlistValue(kv)) => {
                json!({ "kvlistValue": { "values": attrs(&kv.values) } })
            }
            Some(any_value::Value::BytesValue(b)) => {
                json!({ "bytesValue": base64::engine::general_purpose::STANDARD.encode(b) })
            }
            Some(any_value::Value::StringValueStrindex(_)) | None => json!({}),
        }
    }
    fn attrs(kvs: &[KeyValue]) -> Vec<Value> {
        kvs.iter()
            .map(|kv| json!({ "key": kv.key, "value": kv.value.as_ref().map_or(json!({}), value) }))
            .collect()
    }
    let resource_spans: Vec<Value> = req
        .resource_spans
        .iter()
        .map(|rs| {
            let scope_spans: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let spans: Vec<Value> = ss
                        .spans
                        .iter()
                        .map(|s| {
                            let mut m = Map::new();
                            m.insert("traceId".into(), hex(&s.trace_id).into());
                            m.insert("spanId".into(), hex(&s.span_id).into());
                            if !s.parent_span_id.is_empty() {
                                m.insert("parentSpanId".into(), hex(&s.parent_span_id).into());
                            }
                            if !s.trace_state.is_empty() {
                                m.insert("traceState".into(), s.trace_state.clone().into());
                            }
                            m.insert("name".into(), s.name.clone().into());
                            m.insert("kind".into(), s.kind.into());
                            m.insert(
                                "startTimeUnixNano".into(),
                                s.start_time_unix_nano.to_string().into(),
                            );
                            m.insert(
                                "endTimeUnixNano".into(),
                                s.end_time_unix_nano.to_string().into(),
                            );
                            if !s.attributes.is_empty() {
                                m.insert("attributes".into(), attrs(&s.attributes).into());
                            }
                            if !s.links.is_empty() {
                                let links: Vec<Value> = s
                                    .links
                                    .iter()
                                    .map(|l| json!({"traceId": hex(&l.trace_id), "spanId": hex(&l.span_id)}))
                                    .collect();
                                m.insert("links".into(), links.into());
                            }
                            if let Some(st) = &s.status {
                                let mut sm = Map::new();
                                if st.code != 0 {
                                    sm.insert("code".into(), st.code.into());
                                }
                                if !st.message.is_empty() {
                                    sm.insert("message".into(), st.message.clone().into());
                                }
                                m.insert("status".into(), sm.into());
                            }
                            Value::Object(m)
                        })
                        .collect();
                    let scope = ss.scope.as_ref().map_or(json!({}), |sc| {
                        json!({ "name": sc.name, "version": sc.version })
                    });
                    json!({ "scope": scope, "spans": spans })
                })
                .collect();
            let resource = rs
                .resource
                .as_ref()
                .map_or(json!({}), |r| json!({ "attributes": attrs(&r.attributes) }));
            json!({ "resource": resource, "scopeSpans": scope_spans })
        })
        .collect();
    json!({ "resourceSpans": resource_spans }).to_string()
}
