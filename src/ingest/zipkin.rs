//! Zipkin v2 JSON (an array of spans) → OTLP.
//!
//! Zipkin differs from OTLP in ways that lose edges if read naively:
//! - **shared spans**: an RPC's client and server halves carry the *same* span id (the server
//!   half says `"shared": true`). Keyed on id alone, half the edges vanish. The server half gets
//!   a derived id and the client half as parent; children are re-pointed to the half of their
//!   own service.
//! - a span may arrive in pieces with the same id (one carrying only annotations, no
//!   timestamp); pieces of the same side are merged.
//! - `kind` may be missing; `remoteEndpoint` names the peer; an `error` tag with any value,
//!   even empty, means error; database client spans may name the local service as their
//!   remote service (not a self-loop).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::ids;
use super::otlp_json::key_value;

#[derive(Deserialize, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

impl Endpoint {
    fn ip(&self) -> Option<&str> {
        self.ipv4.as_deref().or(self.ipv6.as_deref())
    }
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// Microseconds since the epoch.
    #[serde(default)]
    timestamp: Option<u64>,
    /// Microseconds.
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<Endpoint>,
    #[serde(default)]
    remote_endpoint: Option<Endpoint>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    shared: bool,
}

impl ZipkinSpan {
    fn service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }

    fn is_server_side(&self) -> bool {
        self.shared || self.kind.as_deref() == Some("SERVER")
    }

    /// Fills what `self` lacks from another piece of the same span.
    fn absorb(&mut self, other: ZipkinSpan) {
        if self.timestamp.is_none() {
            self.timestamp = other.timestamp;
        }
        if self.duration.is_none() {
            self.duration = other.duration;
        }
        if self.kind.is_none() {
            self.kind = other.kind;
        }
        if self.parent_id.is_none() {
            self.parent_id = other.parent_id;
        }
        if self.name.as_deref().is_none_or(str::is_empty) {
            self.name = other.name;
        }
        if self.remote_endpoint.is_none() {
            self.remote_endpoint = other.remote_endpoint;
        }
        if self.local_endpoint.is_none() {
            self.local_endpoint = other.local_endpoint;
        }
        for (k, v) in other.tags {
            self.tags.entry(k).or_insert(v);
        }
        self.shared |= other.shared;
    }
}

/// `(trace, original id)` → the server halves split off it, as `(service, new id)`.
type ServerHalves = FxHashMap<(String, String), Vec<(Option<String>, Vec<u8>)>>;

/// Merges pieces of one span id and splits shared client/server halves. Returns spans with
/// final ids as `(span, id, parent id)` byte vectors.
fn resolve_shared(spans: Vec<ZipkinSpan>) -> Vec<(ZipkinSpan, Vec<u8>, Vec<u8>)> {
    // Group by (trace, id), keeping input order for determinism.
    let mut groups: Vec<Vec<ZipkinSpan>> = Vec::new();
    let mut index: FxHashMap<(String, String), usize> = FxHashMap::default();
    for s in spans {
        let key = (s.trace_id.clone(), s.id.clone());
        match index.get(&key) {
            Some(&i) => groups[i].push(s),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![s]);
            }
        }
    }
    // Per group: one client-side span (merged) and any number of server halves.
    let mut out = Vec::new();
    let mut server_halves: ServerHalves = FxHashMap::default();
    let mut resolved = Vec::new();
    for group in groups {
        let (mut servers, mut others): (Vec<_>, Vec<_>) =
            group.into_iter().partition(ZipkinSpan::is_server_side);
        // Kind-less pieces join the server half of their own service if there is one.
        let mut client: Option<ZipkinSpan> = None;
        for piece in others.drain(..) {
            if piece.kind.is_none() {
                if let Some(sv) = servers
                    .iter_mut()
                    .find(|sv| sv.service() == piece.service())
                {
                    sv.absorb(piece);
                    continue;
                }
            }
            match &mut client {
                Some(c) => c.absorb(piece),
                None => client = Some(piece),
            }
        }
        // Server pieces from the same endpoint are one half; distinct endpoints are distinct
        // halves (one request answered by several servers).
        let mut halves: Vec<ZipkinSpan> = Vec::new();
        for piece in servers {
            match halves
                .iter_mut()
                .find(|h| h.local_endpoint == piece.local_endpoint)
            {
                Some(h) => h.absorb(piece),
                None => halves.push(piece),
            }
        }
        match client {
            None if halves.len() == 1 => {
                let s = halves.remove(0);
                let id = ids::span_id_lenient(&s.id);
                resolved.push((s, id, None));
            }
            client => {
                let orig = ids::span_id_lenient(halves.first().map_or_else(
                    || client.as_ref().map_or("", |c| c.id.as_str()),
                    |h| h.id.as_str(),
                ));
                let client_present = client.is_some();
                if let Some(c) = client {
                    resolved.push((c, orig.clone(), None));
                }
                for (k, h) in halves.into_iter().enumerate() {
                    let id = if client_present || k > 0 {
                        ids::derive_span_id(&orig, k as u64 + 1)
                    } else {
                        orig.clone()
                    };
                    let parent = client_present.then(|| orig.clone());
                    server_halves
                        .entry((h.trace_id.clone(), h.id.clone()))
                        .or_default()
                        .push((h.service().map(str::to_owned), id.clone()));
                    resolved.push((h, id, parent));
                }
            }
        }
    }
    for (s, id, parent_override) in resolved {
        let parent = match parent_override {
            Some(p) => p,
            None => match s.parent_id.as_deref() {
                None | Some("") => Vec::new(),
                Some(pid) => {
                    // A child of a shared span hangs off the half of its own service.
                    let halves = server_halves.get(&(s.trace_id.clone(), pid.to_owned()));
                    halves
                        .and_then(|hs| {
                            hs.iter()
                                .find(|(svc, _)| svc.as_deref() == s.service())
                                .map(|(_, id)| id.clone())
                        })
                        .unwrap_or_else(|| ids::span_id_lenient(pid))
                }
            },
        };
        out.push((s, id, parent));
    }
    out
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    key_value(
        key,
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    )
}

/// Tag prefixes of database instrumentations that predate `db.system`.
const DB_TAG_PREFIXES: &[(&str, &str, Option<&str>)] = &[
    ("cassandra.", "cassandra", Some("cassandra.keyspace")),
    ("sql.", "sql", None),
    ("jdbc.", "sql", None),
    ("mongodb.", "mongodb", None),
    ("redis.", "redis", None),
    ("memcached.", "memcached", None),
];

fn attributes(s: &ZipkinSpan) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = s.tags.iter().map(|(k, v)| string_kv(k, v)).collect();
    let local = s.service();
    if !s.tags.contains_key("db.system") {
        if let Some((prefix, system, ns)) = DB_TAG_PREFIXES
            .iter()
            .find(|(p, _, _)| s.tags.keys().any(|k| k.starts_with(p)))
        {
            let _ = prefix;
            attrs.push(string_kv("db.system", system));
            if let Some(ns) = ns.and_then(|k| s.tags.get(k)) {
                attrs.push(string_kv("db.namespace", ns));
            }
        }
    }
    if let Some(r) = &s.remote_endpoint {
        if let Some(name) = r.service_name.as_deref().filter(|n| Some(*n) != local) {
            attrs.push(string_kv("peer.service", name));
        }
        if let Some(ip) = r.ip() {
            attrs.push(string_kv("network.peer.address", ip));
        }
        if let Some(port) = r.port {
            attrs.push(key_value(
                "network.peer.port",
                Some(AnyValue {
                    value: Some(any_value::Value::IntValue(port)),
                }),
            ));
        }
    }
    attrs
}

fn kind(k: Option<&str>) -> i32 {
    match k {
        Some("SERVER") => 2,
        Some("CLIENT") => 3,
        Some("PRODUCER") => 4,
        Some("CONSUMER") => 5,
        _ => 0,
    }
}

/// Converts a Zipkin v2 span array; spans are grouped into one `ResourceSpans` per local
/// endpoint (service and address, Zipkin's only instance identity).
pub fn to_proto(spans: Vec<ZipkinSpan>) -> Vec<ResourceSpans> {
    let mut by_endpoint: BTreeMap<(String, Option<String>), Vec<Span>> = BTreeMap::new();
    for (s, id, parent) in resolve_shared(spans) {
        let service = s.service().unwrap_or("").to_owned();
        let instance = s.local_endpoint.as_ref().and_then(|e| {
            let ip = e.ip()?;
            Some(match e.port {
                Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                Some(p) => format!("{ip}:{p}"),
                None => ip.to_owned(),
            })
        });
        let start = s.timestamp.unwrap_or(0).saturating_mul(1000);
        let end = start.saturating_add(s.duration.unwrap_or(0).saturating_mul(1000));
        let span = Span {
            trace_id: ids::trace_id_lenient(&s.trace_id),
            span_id: id,
            parent_span_id: parent,
            name: s.name.clone().unwrap_or_default(),
            kind: kind(s.kind.as_deref()),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: attributes(&s),
            ..Default::default()
        };
        by_endpoint
            .entry((service, instance))
            .or_default()
            .push(span);
    }
    by_endpoint
        .into_iter()
        .map(|((service, instance), spans)| {
            let mut attributes = vec![string_kv("service.name", &service)];
            if let Some(i) = instance {
                attributes.push(string_kv("service.instance.id", &i));
            }
            ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect()
}
