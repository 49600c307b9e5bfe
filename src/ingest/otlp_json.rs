//! OTLP/JSON → OTLP protobuf messages, leniently.
//!
//! The specification's JSON mapping uses lowerCamelCase keys, hex ids, integer enums and
//! 64-bit integers as strings. Real files also carry base64 ids (proto3's default JSON mapping
//! of `bytes`, as Tempo's API returns), enum names (`"SPAN_KIND_CLIENT"`), integers as numbers,
//! the `{"batches": [...]}` wrapper of Tempo and the pre-1.0 `instrumentationLibrarySpans`.
//! The document's structure is parsed with typed structs; every leaf is read leniently, and a
//! span with a bad leaf is rejected alone.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Link, ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;
use serde_json::Value;

use super::problem::{BatchReport, SpanError, SpanProblem};

/// A whole OTLP/JSON document: `ExportTraceServiceRequest`/`TracesData`, or Tempo's response.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct JsonDocument {
    #[serde(default)]
    pub(crate) resource_spans: Vec<JsonResourceSpans>,
    #[serde(default)]
    pub(crate) batches: Vec<JsonResourceSpans>,
}

impl JsonDocument {
    /// True when the document had neither `resourceSpans` nor `batches` (e.g. snake_case keys).
    pub fn is_empty(&self) -> bool {
        self.resource_spans.is_empty() && self.batches.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsonResourceSpans {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default)]
    scope_spans: Vec<JsonScopeSpans>,
    #[serde(default)]
    instrumentation_library_spans: Vec<JsonScopeSpans>,
}

#[derive(Deserialize)]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonScopeSpans {
    #[serde(default, alias = "instrumentationLibrary")]
    scope: Option<JsonScope>,
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
struct JsonScope {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    #[serde(default)]
    trace_id: Value,
    #[serde(default)]
    span_id: Value,
    #[serde(default)]
    parent_span_id: Value,
    #[serde(default)]
    name: Value,
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    start_time_unix_nano: Value,
    #[serde(default)]
    end_time_unix_nano: Value,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
    #[serde(default)]
    links: Vec<JsonLink>,
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLink {
    #[serde(default)]
    trace_id: Value,
    #[serde(default)]
    span_id: Value,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    #[serde(default)]
    value: Value,
}

/// An OTLP attribute. (`KeyValue` has fields for the profiles signal that traces never use.)
pub fn key_value(key: impl Into<String>, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// Decodes an id given as hex (the OTLP/JSON rule) or base64 (proto3's generic mapping).
/// `want` is the byte length; an all-hex string of another even length decodes as hex, so the
/// normalizer can report the wrong length precisely.
pub fn decode_id(s: &str, want: usize) -> Result<Vec<u8>, SpanError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let is_hex = s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && (s.len() == want * 2 || !looks_base64_of(s, want)) {
        return decode_hex(s).ok_or_else(|| SpanError::BadId(s.to_owned()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|_| SpanError::BadId(s.to_owned()))
}

fn looks_base64_of(s: &str, want: usize) -> bool {
    s.len() == want.div_ceil(3) * 4
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn id_field(v: &Value, want: usize, what: &str) -> Result<Vec<u8>, SpanError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => decode_id(s, want),
        other => Err(SpanError::Malformed(format!(
            "{what} is not a string: {other}"
        ))),
    }
}

fn u64_field(v: &Value, what: &str) -> Result<u64, SpanError> {
    match v {
        Value::Null => Ok(0),
        Value::String(s) => s
            .parse()
            .map_err(|_| SpanError::Malformed(format!("{what} {s:?} is not an integer"))),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| SpanError::Malformed(format!("{what} {n} is not a whole number"))),
        other => Err(SpanError::Malformed(format!(
            "{what} is not a number: {other}"
        ))),
    }
}

fn enum_field(v: &Value, names: &[&str], what: &str) -> Result<i32, SpanError> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| SpanError::Malformed(format!("{what} {n} is out of range"))),
        Value::String(s) => names
            .iter()
            .position(|n| n == s)
            .map(|i| i as i32)
            .or_else(|| s.parse().ok())
            .ok_or_else(|| SpanError::Malformed(format!("unknown {what} {s:?}"))),
        other => Err(SpanError::Malformed(format!(
            "{what} is not valid: {other}"
        ))),
    }
}

const KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// An OTLP `AnyValue` from its JSON form; unknown shapes become `None` (the attribute is kept
/// with no value rather than failing the span: attributes are evidence, not identity).
fn any_value(v: &Value) -> Option<AnyValue> {
    let obj = v.as_object()?;
    let (k, inner) = obj.iter().next()?;
    let value = match k.as_str() {
        "stringValue" => any_value::Value::StringValue(inner.as_str()?.to_owned()),
        "boolValue" => any_value::Value::BoolValue(inner.as_bool()?),
        "intValue" => any_value::Value::IntValue(match inner {
            Value::String(s) => s.parse().ok()?,
            n => n.as_i64()?,
        }),
        "doubleValue" => any_value::Value::DoubleValue(match inner {
            Value::String(s) => s.parse().ok()?,
            n => n.as_f64()?,
        }),
        "bytesValue" => any_value::Value::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(inner.as_str()?)
                .ok()?,
        ),
        "arrayValue" => any_value::Value::ArrayValue(ArrayValue {
            values: inner
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(any_value).collect())
                .unwrap_or_default(),
        }),
        "kvlistValue" => any_value::Value::KvlistValue(KeyValueList {
            values: inner
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|kv| {
                            Some(key_value(
                                kv.get("key")?.as_str()?,
                                kv.get("value").and_then(any_value),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

fn attributes(kvs: &[JsonKeyValue]) -> Vec<KeyValue> {
    kvs.iter()
        .map(|kv| key_value(kv.key.clone(), any_value(&kv.value)))
        .collect()
}

fn span(s: &JsonSpan) -> Result<Span, SpanError> {
    let links = s
        .links
        .iter()
        .map(|l| {
            Ok(Link {
                trace_id: id_field(&l.trace_id, 16, "link traceId")?,
                span_id: id_field(&l.span_id, 8, "link spanId")?,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, SpanError>>()?;
    Ok(Span {
        trace_id: id_field(&s.trace_id, 16, "traceId")?,
        span_id: id_field(&s.span_id, 8, "spanId")?,
        parent_span_id: id_field(&s.parent_span_id, 8, "parentSpanId")?,
        name: match &s.name {
            Value::String(n) => n.clone(),
            Value::Null => String::new(),
            other => {
                return Err(SpanError::Malformed(format!(
                    "name is not a string: {other}"
                )))
            }
        },
        kind: enum_field(&s.kind, KINDS, "span kind")?,
        start_time_unix_nano: u64_field(&s.start_time_unix_nano, "startTimeUnixNano")?,
        end_time_unix_nano: u64_field(&s.end_time_unix_nano, "endTimeUnixNano")?,
        attributes: attributes(&s.attributes),
        status: match &s.status {
            Some(st) => Some(Status {
                code: enum_field(&st.code, STATUS_CODES, "status code")?,
                message: st.message.clone().unwrap_or_default(),
            }),
            None => None,
        },
        links,
        ..Default::default()
    })
}

/// Converts a parsed document; spans with bad leaves are reported in `report` and left out.
pub fn to_proto(doc: &JsonDocument, report: &mut BatchReport) -> Vec<ResourceSpans> {
    let mut index = 0u64;
    doc.resource_spans
        .iter()
        .chain(&doc.batches)
        .map(|rs| ResourceSpans {
            resource: rs.resource.as_ref().map(|r| Resource {
                attributes: attributes(&r.attributes),
                ..Default::default()
            }),
            scope_spans: rs
                .scope_spans
                .iter()
                .chain(&rs.instrumentation_library_spans)
                .map(|ss| ScopeSpans {
                    scope: ss.scope.as_ref().map(|sc| InstrumentationScope {
                        name: sc.name.clone().unwrap_or_default(),
                        version: sc.version.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    spans: ss
                        .spans
                        .iter()
                        .filter_map(|s| {
                            index += 1;
                            match span(s) {
                                Ok(sp) => Some(sp),
                                Err(error) => {
                                    report.seen += 1;
                                    report.reject(SpanProblem {
                                        index: index - 1,
                                        trace_id: None,
                                        span_id: None,
                                        error,
                                    });
                                    None
                                }
                            }
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_hex_and_base64() {
        assert_eq!(
            decode_id("0102030405060708", 8).unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            decode_id("AQIDBAUGBwg=", 8).unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        // hex of the wrong length decodes, so the normalizer can name the length
        assert_eq!(decode_id("01020304050607", 8).unwrap().len(), 7);
        assert!(decode_id("not an id!", 8).is_err());
    }

    #[test]
    fn enum_names_and_numbers() {
        assert_eq!(
            enum_field(&Value::from("SPAN_KIND_CLIENT"), KINDS, "k").unwrap(),
            3
        );
        assert_eq!(enum_field(&Value::from(2), KINDS, "k").unwrap(), 2);
        assert!(enum_field(&Value::from("CLIENTISH"), KINDS, "k").is_err());
    }
}
