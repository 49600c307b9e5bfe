//! Jaeger JSON (the query API's `{"data": [...]}`, also what the UI downloads) → OTLP.
//!
//! Jaeger ids are hex without leading zeros; a few hand-written files (CRISP's test cases) use
//! arbitrary strings, which are hashed to stable ids rather than rejected. Fields only the UI
//! uses (`warnings`, the parent copy the UI embeds in each reference) are ignored.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::Link, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use serde::Deserialize;
use serde_json::Value;

use super::ids;
use super::otlp_json::key_value;

#[derive(Deserialize)]
pub struct JaegerDocument {
    #[serde(default)]
    pub(crate) data: Vec<JaegerTrace>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JaegerTrace {
    #[serde(default)]
    spans: Vec<JaegerSpan>,
    #[serde(default)]
    processes: BTreeMap<String, JaegerProcess>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct JaegerProcess {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    tags: Vec<JaegerTag>,
}

#[derive(Deserialize, Clone)]
struct JaegerTag {
    key: String,
    #[serde(default, rename = "type")]
    ty: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct JaegerRef {
    #[serde(default, rename = "refType")]
    ref_type: String,
    #[serde(default, rename = "traceID")]
    trace_id: String,
    #[serde(default, rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize)]
struct JaegerSpan {
    #[serde(default, rename = "traceID")]
    trace_id: String,
    #[serde(default, rename = "spanID")]
    span_id: String,
    #[serde(default, rename = "parentSpanID")]
    parent_span_id: String,
    #[serde(default, rename = "operationName")]
    operation_name: String,
    #[serde(default)]
    references: Vec<JaegerRef>,
    /// Microseconds since the epoch.
    #[serde(default, rename = "startTime")]
    start_time: i64,
    /// Microseconds.
    #[serde(default)]
    duration: i64,
    #[serde(default)]
    tags: Vec<JaegerTag>,
    #[serde(default, rename = "processID")]
    process_id: String,
    /// Some exports embed the process in each span instead of the trace's `processes` map.
    #[serde(default)]
    process: Option<JaegerProcess>,
}

fn tag_value(t: &JaegerTag) -> Option<AnyValue> {
    let v = match (t.ty.as_str(), &t.value) {
        ("bool", Value::Bool(b)) => any_value::Value::BoolValue(*b),
        ("bool", Value::String(s)) => any_value::Value::BoolValue(s == "true"),
        ("int64", Value::Number(n)) => any_value::Value::IntValue(n.as_i64()?),
        ("float64", Value::Number(n)) => any_value::Value::DoubleValue(n.as_f64()?),
        (_, Value::String(s)) => any_value::Value::StringValue(s.clone()),
        (_, Value::Bool(b)) => any_value::Value::BoolValue(*b),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64()?),
        },
        _ => return None,
    };
    Some(AnyValue { value: Some(v) })
}

/// Jaeger process tag names → OTel resource attribute names.
fn resource_key(k: &str) -> &str {
    match k {
        "hostname" => "host.name",
        "client-uuid" => "service.instance.id",
        "ip" => "host.ip",
        other => other,
    }
}

fn resource(p: &JaegerProcess) -> Resource {
    let mut attributes = vec![key_value(
        "service.name",
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(p.service_name.clone())),
        }),
    )];
    attributes.extend(
        p.tags
            .iter()
            .map(|t| key_value(resource_key(&t.key), tag_value(t))),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

fn kind(tags: &[JaegerTag]) -> i32 {
    let k = tags
        .iter()
        .find(|t| t.key == "span.kind")
        .and_then(|t| t.value.as_str())
        .unwrap_or("");
    match k {
        "internal" => 1,
        "server" => 2,
        "client" => 3,
        "producer" => 4,
        "consumer" => 5,
        _ => 0,
    }
}

fn is_error(tags: &[JaegerTag]) -> bool {
    tags.iter().any(|t| match t.key.as_str() {
        "error" => !matches!(&t.value, Value::Bool(false)) && t.value != "false",
        "otel.status_code" => t.value == "ERROR",
        _ => false,
    })
}

fn span(s: &JaegerSpan) -> Span {
    // The parent is the first CHILD_OF reference (or the legacy parentSpanID field), else the
    // first FOLLOWS_FROM; the remaining references become links.
    let mut refs: Vec<&JaegerRef> = s.references.iter().collect();
    refs.sort_by_key(|r| r.ref_type != "CHILD_OF");
    let mut parent = ids::span_id_lenient(&s.parent_span_id);
    let mut links = Vec::new();
    for r in refs {
        let same_trace = r.trace_id.is_empty() || r.trace_id == s.trace_id;
        if parent.is_empty() && same_trace {
            parent = ids::span_id_lenient(&r.span_id);
        } else {
            links.push(Link {
                trace_id: ids::trace_id_lenient(if same_trace { &s.trace_id } else { &r.trace_id }),
                span_id: ids::span_id_lenient(&r.span_id),
                ..Default::default()
            });
        }
    }
    let start = u64::try_from(s.start_time)
        .unwrap_or(0)
        .saturating_mul(1000);
    // A negative duration is kept negative so the normalizer rejects it as ending before start.
    let end = if s.duration < 0 {
        start.saturating_sub(1)
    } else {
        start.saturating_add((s.duration as u64).saturating_mul(1000))
    };
    Span {
        trace_id: ids::trace_id_lenient(&s.trace_id),
        span_id: ids::span_id_lenient(&s.span_id),
        parent_span_id: parent,
        name: s.operation_name.clone(),
        kind: kind(&s.tags),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: s
            .tags
            .iter()
            .map(|t| key_value(t.key.clone(), tag_value(t)))
            .collect(),
        status: is_error(&s.tags).then(|| Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        links,
        ..Default::default()
    }
}

/// One `ResourceSpans` per process per trace.
pub fn to_proto(doc: &JaegerDocument) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    for t in &doc.data {
        let mut by_process: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
        let mut embedded: BTreeMap<&str, &JaegerProcess> = BTreeMap::new();
        for s in &t.spans {
            if let Some(p) = &s.process {
                embedded.entry(&s.process_id).or_insert(p);
            }
            by_process.entry(&s.process_id).or_default().push(span(s));
        }
        for (pid, spans) in by_process {
            let process = t
                .processes
                .get(pid)
                .or_else(|| embedded.get(pid).copied())
                .cloned()
                .unwrap_or_default();
            out.push(ResourceSpans {
                resource: Some(resource(&process)),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    out
}
