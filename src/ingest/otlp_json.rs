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
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link},
    ResourceSpans, ScopeSpans, Span, Status,
};
use serde::Deserialize;

use crate::model::problem::{BatchReport, SpanError, SpanProblem};

/// A whole OTLP/JSON document: `ExportTraceServiceRequest`/`TracesData`, or Tempo's response.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct JsonDocument {
    #[serde(default, deserialize_with = "filled")]
    pub(crate) resource_spans: Vec<JsonResourceSpans>,
    #[serde(default, deserialize_with = "filled")]
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
    #[serde(default, deserialize_with = "filled")]
    scope_spans: Vec<JsonScopeSpans>,
    #[serde(default, deserialize_with = "filled")]
    instrumentation_library_spans: Vec<JsonScopeSpans>,
}

/// Whether a list element holds no span, so dropping it as it is read changes nothing.
trait Hollow {
    fn hollow(&self) -> bool;
}

impl Hollow for JsonResourceSpans {
    fn hollow(&self) -> bool {
        self.scope_spans.is_empty() && self.instrumentation_library_spans.is_empty()
    }
}

impl Hollow for JsonScopeSpans {
    fn hollow(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A list with its hollow elements dropped as they are read: a request of `{},{},...` costs
/// its bytes, not a struct per three bytes (15 MiB of them decoded to 1.1 GB).
fn filled<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Hollow,
{
    struct Filled<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Hollow> serde::de::Visitor<'de> for Filled<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = seq.next_element::<T>()? {
                if !x.hollow() {
                    out.push(x);
                }
            }
            Ok(out)
        }
        fn visit_unit<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Filled(std::marker::PhantomData))
}

/// What decoding `raw` as OTLP/JSON may hold at most, estimated before decoding from how many
/// objects and lists it opens (each becomes a struct of a few hundred bytes, and again as
/// protobuf), so a receiver can reserve it first or refuse a request built to decode huge.
pub fn decoded_cost(raw: &[u8]) -> usize {
    /// Bytes per object or list opened: a span's JSON struct and its protobuf together.
    const PER_OPEN: usize = 256;
    let mut opens = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in raw {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => opens += 1,
                _ => {}
            }
        }
    }
    opens.saturating_mul(PER_OPEN).saturating_add(2 * raw.len())
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
    trace_id: Leaf,
    #[serde(default)]
    span_id: Leaf,
    #[serde(default)]
    parent_span_id: Leaf,
    /// The W3C `tracestate` (its sampling threshold scales the span's counts).
    #[serde(default)]
    trace_state: Leaf,
    #[serde(default)]
    name: Leaf,
    #[serde(default)]
    kind: Leaf,
    #[serde(default)]
    start_time_unix_nano: Leaf,
    #[serde(default)]
    end_time_unix_nano: Leaf,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
    #[serde(default)]
    links: Vec<JsonLink>,
    /// Read for the exception events of failed spans (their message may name the backend).
    #[serde(default)]
    events: Vec<JsonEvent>,
}

#[derive(Deserialize)]
struct JsonEvent {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default)]
    code: Leaf,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLink {
    #[serde(default)]
    trace_id: Leaf,
    #[serde(default)]
    span_id: Leaf,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    #[serde(default)]
    value: JsonAnyValue,
}

/// A JSON leaf, read leniently and without building a `serde_json::Value` (whose maps and
/// boxed strings made up much of the cost of reading OTLP/JSON): what the value is decides
/// later whether the field is usable.
#[derive(Debug, Default)]
enum Leaf {
    #[default]
    Null,
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// An object or array, skipped.
    Nested,
}

impl std::fmt::Display for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leaf::Null => f.write_str("null"),
            Leaf::Str(s) => write!(f, "{s:?}"),
            Leaf::U64(n) => write!(f, "{n}"),
            Leaf::I64(n) => write!(f, "{n}"),
            Leaf::F64(n) => write!(f, "{n}"),
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::Nested => f.write_str("an object or array"),
        }
    }
}

impl<'de> Deserialize<'de> for Leaf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LeafVisitor)
    }
}

struct LeafVisitor;

impl<'de> serde::de::Visitor<'de> for LeafVisitor {
    type Value = Leaf;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf, E> {
        Ok(Leaf::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf, E> {
        Ok(Leaf::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf, E> {
        Ok(Leaf::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf, E> {
        Ok(Leaf::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf, E> {
        Ok(Leaf::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Leaf, E> {
        Ok(Leaf::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Leaf, E> {
        Ok(Leaf::Null)
    }
    fn visit_none<E>(self) -> Result<Leaf, E> {
        Ok(Leaf::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Leaf, D::Error> {
        Leaf::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Leaf::Nested)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Leaf, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Leaf::Nested)
    }
}

/// An attribute's `value`, converted as it is read; anything but an object of a known kind
/// is no value (the attribute is kept without one: attributes are evidence, not identity).
#[derive(Debug, Default)]
struct JsonAnyValue(Option<AnyValue>);

impl<'de> Deserialize<'de> for JsonAnyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValueVisitor)
    }
}

struct AnyValueVisitor;

impl<'de> serde::de::Visitor<'de> for AnyValueVisitor {
    type Value = JsonAnyValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an OTLP AnyValue")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonAnyValue, A::Error> {
        let mut found: Option<any_value::Value> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            // The first kind given wins; later keys are read past.
            if found.is_some() {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            found = match &*key {
                "stringValue" => match map.next_value::<Leaf>()? {
                    Leaf::Str(s) => Some(any_value::Value::StringValue(s)),
                    _ => None,
                },
                "boolValue" => match map.next_value::<Leaf>()? {
                    Leaf::Bool(b) => Some(any_value::Value::BoolValue(b)),
                    _ => None,
                },
                "intValue" => match map.next_value::<Leaf>()? {
                    Leaf::Str(s) => s.parse().ok(),
                    Leaf::I64(n) => Some(n),
                    Leaf::U64(n) => i64::try_from(n).ok(),
                    _ => None,
                }
                .map(any_value::Value::IntValue),
                "doubleValue" => match map.next_value::<Leaf>()? {
                    Leaf::Str(s) => s.parse().ok(),
                    Leaf::I64(n) => Some(n as f64),
                    Leaf::U64(n) => Some(n as f64),
                    Leaf::F64(n) => Some(n),
                    _ => None,
                }
                .map(any_value::Value::DoubleValue),
                "bytesValue" => match map.next_value::<Leaf>()? {
                    Leaf::Str(s) => base64::engine::general_purpose::STANDARD.decode(s).ok(),
                    _ => None,
                }
                .map(any_value::Value::BytesValue),
                // Their type is kept, their elements are not read: nothing downstream reads
                // them, and as a `Value` tree a million small ones cost 800 MB.
                "arrayValue" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    Some(any_value::Value::ArrayValue(ArrayValue::default()))
                }
                "kvlistValue" => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    Some(any_value::Value::KvlistValue(KeyValueList::default()))
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    None
                }
            };
        }
        Ok(JsonAnyValue(found.map(|v| AnyValue { value: Some(v) })))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonAnyValue, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(JsonAnyValue(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_unit<E>(self) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_none<E>(self) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(None))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<JsonAnyValue, D::Error> {
        JsonAnyValue::deserialize(d)
    }
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
    let is_hex = s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit());
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
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn id_field(v: &Leaf, want: usize, what: &str) -> Result<Vec<u8>, SpanError> {
    match v {
        Leaf::Null => Ok(Vec::new()),
        Leaf::Str(s) => decode_id(s, want),
        other => Err(SpanError::Malformed(format!(
            "{what} is not a string: {other}"
        ))),
    }
}

fn u64_field(v: &Leaf, what: &str) -> Result<u64, SpanError> {
    match v {
        Leaf::Null => Ok(0),
        Leaf::Str(s) => s
            .parse()
            .map_err(|_| SpanError::Malformed(format!("{what} {s:?} is not an integer"))),
        Leaf::U64(n) => Ok(*n),
        n @ (Leaf::I64(_) | Leaf::F64(_)) => Err(SpanError::Malformed(format!(
            "{what} {n} is not a whole number"
        ))),
        other => Err(SpanError::Malformed(format!(
            "{what} is not a number: {other}"
        ))),
    }
}

fn enum_field(v: &Leaf, names: &[&str], what: &str) -> Result<i32, SpanError> {
    let out_of_range = |n: &Leaf| SpanError::Malformed(format!("{what} {n} is out of range"));
    match v {
        Leaf::Null => Ok(0),
        Leaf::U64(n) => i32::try_from(*n).map_err(|_| out_of_range(v)),
        Leaf::I64(n) => i32::try_from(*n).map_err(|_| out_of_range(v)),
        Leaf::F64(_) => Err(out_of_range(v)),
        Leaf::Str(s) => names
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

fn attributes(kvs: &[JsonKeyValue]) -> Vec<KeyValue> {
    kvs.iter()
        .map(|kv| key_value(kv.key.clone(), kv.value.0.clone()))
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
        trace_state: match &s.trace_state {
            Leaf::Str(t) => t.clone(),
            _ => String::new(),
        },
        name: match &s.name {
            Leaf::Str(n) => n.clone(),
            Leaf::Null => String::new(),
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
        events: s
            .events
            .iter()
            .filter(|e| e.name.as_deref() == Some("exception"))
            .map(|e| Event {
                name: "exception".into(),
                attributes: attributes(&e.attributes),
                ..Default::default()
            })
            .collect(),
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

    /// Elements that hold no span are dropped as they are read; an array attribute keeps its
    /// type but not its elements; the estimate counts what opens, strings aside.
    #[test]
    fn hollow_elements_are_dropped_and_the_cost_is_estimated_before_decoding() {
        let doc: JsonDocument = serde_json::from_str(
            r#"{"resourceSpans":[{},{"scopeSpans":[{},{}]},
                {"scopeSpans":[{"spans":[{"name":"a","attributes":[
                  {"key":"k","value":{"arrayValue":{"values":[{"intValue":1}]}}}]}]}]}]}"#,
        )
        .expect("valid");
        assert_eq!(doc.resource_spans.len(), 1);
        assert_eq!(doc.resource_spans[0].scope_spans.len(), 1);
        let mut report = BatchReport::default();
        let _ = to_proto(&doc, &mut report);
        assert_eq!(decoded_cost(b"{\"a\":\"{{[[\\\"{\"}"), 256 + 2 * 15);
    }

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
            enum_field(&Leaf::Str("SPAN_KIND_CLIENT".into()), KINDS, "k").unwrap(),
            3
        );
        assert_eq!(enum_field(&Leaf::U64(2), KINDS, "k").unwrap(), 2);
        assert!(enum_field(&Leaf::Str("CLIENTISH".into()), KINDS, "k").is_err());
    }
}
