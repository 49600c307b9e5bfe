//! OTLP `ResourceSpans` → [`model::Span`](crate::model::Span): the one conversion every
//! transport and file reader ends in.
//!
//! Understands old and new semantic conventions for service identity, instance identity and the
//! peers seen only from a client span (databases, brokers, external HTTP services). A span that
//! cannot be used is rejected alone, with a reason; the spans beside it still count.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, ResourceSpans, Span as OtlpSpan};
use rustc_hash::FxHashMap;

use super::otlp_wire::{self, SpanView, Value, WireError};
use crate::model::problem::{BatchReport, SpanError, SpanProblem};
use crate::model::{Interner, Link, NodeKey, NodeType, Peer, Span, SpanId, SpanKind, Sym, TraceId};

/// Links kept per span.
pub const MAX_LINKS: usize = 32;

/// The service name SDKs use when `service.name` is missing.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Span times accepted at the door. Times outside them are not data: a span from 1970, one
/// ending in the year 2554 or starting an hour ahead of the clock would poison windows and
/// percentiles, so it is rejected with its reason.
#[derive(Debug, Clone, Copy)]
pub struct TimeLimits {
    /// Earliest start accepted live (Unix ns): 2000-01-01.
    pub min_start_ns: u64,
    /// Longest duration accepted (`pipeline.max_span_duration`).
    pub max_duration_ns: u64,
    /// Live only: the wall clock and how far ahead of it a span may start.
    pub now_ns: Option<u64>,
    pub max_ahead_ns: u64,
}

impl Default for TimeLimits {
    fn default() -> Self {
        TimeLimits {
            min_start_ns: 946_684_800_000_000_000,
            max_duration_ns: 6 * 3600 * 1_000_000_000,
            now_ns: None,
            max_ahead_ns: 60_000_000_000,
        }
    }
}

/// Turns OTLP into model spans, owning the name table so that names are interned once.
#[derive(Debug, Default)]
pub struct Normalizer {
    pub interner: Interner,
    pub time_limits: TimeLimits,
    /// `(base, system)` → interned `"base (system)"`, so virtual node names are built once
    /// rather than formatted per span.
    composite: FxHashMap<(Sym, Sym), Sym>,
    /// `(host, port)` → interned `"host:port"`.
    addresses: FxHashMap<(Sym, i64), Sym>,
}

/// Resource-level facts, read once per `ResourceSpans`.
struct ResourceFacts {
    service: Sym,
    instance: Option<Sym>,
}

/// The span attributes chokepoint reads, found in one pass over the attribute list.
#[derive(Default)]
struct SpanAttrs<'a> {
    db_system: Option<&'a str>,
    db_namespace: Option<&'a str>,
    messaging_system: Option<&'a str>,
    peer_service: Option<&'a str>,
    server_address: Option<&'a str>,
    server_port: Option<i64>,
    peer_address: Option<&'a str>,
    peer_port: Option<i64>,
    url: Option<&'a str>,
    http_host: Option<&'a str>,
    /// The statement or query text of a database call.
    db_statement: Option<&'a str>,
    db_operation: Option<&'a str>,
    db_collection: Option<&'a str>,
    messaging_destination: Option<&'a str>,
    messaging_operation: Option<&'a str>,
    http_status: Option<i64>,
    /// Envoy's `component: proxy` or its upstream cluster: the span is a proxy's.
    proxy: bool,
    /// Instance identity found on the span itself (Envoy's `node_id`, or resource keys that an
    /// exporter flattened into span attributes).
    instance: Option<&'a str>,
    error_tag: bool,
}

/// An attribute value from either decoder.
fn any_value(v: &Option<AnyValue>) -> Value<'_> {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.as_bytes()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        _ => Value::Other,
    }
}

/// A non-empty string value; one that is not UTF-8 is treated as absent.
fn str_value(v: Value<'_>) -> Option<&str> {
    match v {
        Value::Str(b) if !b.is_empty() => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn int_value(v: Value<'_>) -> Option<i64> {
    match v {
        Value::Int(i) => Some(i),
        Value::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

impl<'a> SpanAttrs<'a> {
    fn read(attrs: &'a [KeyValue]) -> Self {
        let mut a = SpanAttrs::default();
        for kv in attrs {
            a.set(kv.key.as_bytes(), any_value(&kv.value));
        }
        a
    }

    /// Takes in one attribute, if it is one chokepoint reads.
    fn set(&mut self, key: &[u8], v: Value<'a>) {
        let a = self;
        match key {
            b"db.system" | b"db.system.name" => a.db_system = str_value(v),
            b"db.namespace" => a.db_namespace = str_value(v),
            b"db.name" => a.db_namespace = a.db_namespace.or(str_value(v)),
            b"messaging.system" => a.messaging_system = str_value(v),
            b"peer.service" => a.peer_service = str_value(v),
            b"server.address" => a.server_address = str_value(v),
            b"net.peer.name" => a.server_address = a.server_address.or(str_value(v)),
            b"server.port" => a.server_port = int_value(v),
            b"net.peer.port" => a.server_port = a.server_port.or(int_value(v)),
            b"network.peer.address" | b"net.sock.peer.addr" | b"net.peer.ip" => {
                a.peer_address = a.peer_address.or(str_value(v))
            }
            b"network.peer.port" | b"net.sock.peer.port" => a.peer_port = int_value(v),
            b"url.full" | b"http.url" => a.url = str_value(v),
            b"http.host" => a.http_host = str_value(v),
            b"http.response.status_code" => a.http_status = int_value(v),
            b"component" => a.proxy |= str_value(v) == Some("proxy"),
            b"upstream_cluster" | b"upstream_cluster.name" => a.proxy = true,
            b"http.status_code" => a.http_status = a.http_status.or(int_value(v)),
            b"db.query.text" => a.db_statement = str_value(v),
            b"db.statement" => a.db_statement = a.db_statement.or(str_value(v)),
            b"db.operation.name" => a.db_operation = str_value(v),
            b"db.operation" => a.db_operation = a.db_operation.or(str_value(v)),
            b"db.collection.name" => a.db_collection = str_value(v),
            b"db.sql.table" | b"db.mongodb.collection" | b"db.cassandra.table" => {
                a.db_collection = a.db_collection.or(str_value(v))
            }
            b"messaging.destination.template" => a.messaging_destination = str_value(v),
            b"messaging.destination.name" | b"messaging.destination" => {
                a.messaging_destination = a.messaging_destination.or(str_value(v))
            }
            b"messaging.operation.type" => a.messaging_operation = str_value(v),
            b"messaging.operation" | b"messaging.operation.name" => {
                a.messaging_operation = a.messaging_operation.or(str_value(v))
            }
            b"service.instance.id" | b"k8s.pod.name" | b"node_id" => {
                a.instance = a.instance.or(str_value(v))
            }
            b"error" => {
                // Zipkin and OpenTracing mark errors with an `error` tag; any value but a
                // false boolean (or "false") means error, even an empty string.
                a.error_tag = match v {
                    Value::Bool(b) => b,
                    Value::Str(s) => s != b"false",
                    _ => true,
                }
            }
            _ => {}
        }
    }
}

/// The resource attributes chokepoint reads.
#[derive(Default)]
struct ResourceAttrs<'a> {
    service: Option<&'a str>,
    instance_id: Option<&'a str>,
    pod: Option<&'a str>,
    host: Option<&'a str>,
    pid: Option<i64>,
}

impl<'a> ResourceAttrs<'a> {
    fn set(&mut self, key: &[u8], v: Value<'a>) {
        match key {
            b"service.name" => self.service = str_value(v),
            b"service.instance.id" => self.instance_id = str_value(v),
            b"k8s.pod.name" => self.pod = str_value(v),
            b"host.name" => self.host = str_value(v),
            b"process.pid" => self.pid = int_value(v),
            _ => {}
        }
    }
}

/// How many spans one stands for, from the OpenTelemetry probability-sampling threshold in
/// its W3C `tracestate` (`ot=th:<hex>`): the threshold `T` (up to 14 hex digits, padded
/// with zeros to 56 bits) rejects traces whose randomness is below it, so a span was kept
/// with probability `(2^56 - T) / 2^56` and counts for the inverse. 1 without a threshold,
/// or with one that is malformed (a span never counts for less than itself).
pub fn adjusted_count(trace_state: &str) -> f32 {
    if trace_state.is_empty() {
        return 1.0;
    }
    let ot = trace_state
        .split(',')
        .filter_map(|m| m.trim().split_once('='))
        .find(|(k, _)| *k == "ot")
        .map(|(_, v)| v);
    let th = ot.and_then(|v| {
        v.split(';')
            .filter_map(|kv| kv.split_once(':'))
            .find(|(k, _)| *k == "th")
            .map(|(_, v)| v)
    });
    let Some(th) = th.filter(|t| !t.is_empty() && t.len() <= 14) else {
        return 1.0;
    };
    let Ok(t) = u64::from_str_radix(th, 16) else {
        return 1.0;
    };
    let threshold = t << (4 * (14 - th.len()));
    let keep = (1u64 << 56) - threshold;
    if keep == 0 {
        return 1.0;
    }
    ((1u64 << 56) as f64 / keep as f64) as f32
}

/// One span's fields as the normalizer reads them, whichever decoder found them.
struct SpanInput<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    status_error: bool,
    attrs: SpanAttrs<'a>,
    links: Vec<Link>,
    /// For a failed span only: its status message and its first exception's message.
    fault_text: [Option<&'a str>; 2],
    /// The W3C `tracestate`, for the sampling threshold.
    trace_state: &'a str,
}

impl<'a> SpanInput<'a> {
    fn from_otlp(s: &'a OtlpSpan) -> Self {
        SpanInput {
            trace_id: &s.trace_id,
            span_id: &s.span_id,
            parent_span_id: &s.parent_span_id,
            name: &s.name,
            kind: s.kind,
            start: s.start_time_unix_nano,
            end: s.end_time_unix_nano,
            status_error: s
                .status
                .as_ref()
                .is_some_and(|st| st.code == StatusCode::Error as i32),
            attrs: SpanAttrs::read(&s.attributes),
            links: links(s.links.iter().map(|l| (&l.trace_id[..], &l.span_id[..]))),
            fault_text: [None; 2],
            trace_state: &s.trace_state,
        }
        .with_fault_text(|| {
            let status = s.status.as_ref().map(|st| st.message.as_str());
            let exception = s
                .events
                .iter()
                .filter(|e| e.name == "exception")
                .flat_map(|e| &e.attributes)
                .find(|kv| kv.key == "exception.message")
                .and_then(|kv| str_value(any_value(&kv.value)));
            [status, exception]
        })
    }

    fn failed(&self) -> bool {
        self.status_error || self.attrs.error_tag
    }

    /// Reads the error text of a failed span (only then: it costs a pass over the events).
    fn with_fault_text(mut self, read: impl FnOnce() -> [Option<&'a str>; 2]) -> Self {
        if self.failed() {
            self.fault_text = read().map(|t| t.filter(|t| !t.is_empty()));
        }
        self
    }

    fn from_wire(v: &SpanView<'a>) -> Result<Self, SpanError> {
        let malformed = |e: WireError| SpanError::Malformed(e.to_string());
        let name = std::str::from_utf8(v.name)
            .map_err(|_| SpanError::Malformed("span name is not UTF-8".into()))?;
        let mut attrs = SpanAttrs::default();
        for kv in v.attributes() {
            let kv = kv.map_err(malformed)?;
            attrs.set(kv.key, kv.value);
        }
        let mut ids = Vec::new();
        for l in v.links().take(MAX_LINKS) {
            ids.push(l.map_err(malformed)?);
        }
        let mut input = SpanInput {
            trace_id: v.trace_id,
            span_id: v.span_id,
            parent_span_id: v.parent_span_id,
            name,
            kind: v.kind,
            start: v.start_time_unix_nano,
            end: v.end_time_unix_nano,
            status_error: v.status_code == StatusCode::Error as i32,
            attrs,
            links: links(ids.into_iter()),
            fault_text: [None; 2],
            trace_state: std::str::from_utf8(v.trace_state).unwrap_or(""),
        };
        if input.failed() {
            let status = std::str::from_utf8(v.status_message).ok();
            let mut exception = None;
            for e in v.events() {
                let (name, attrs) = e.map_err(malformed)?;
                if name != b"exception" || exception.is_some() {
                    continue;
                }
                for kv in attrs {
                    let kv = kv.map_err(malformed)?;
                    if kv.key == b"exception.message" {
                        exception = str_value(kv.value);
                    }
                }
            }
            input.fault_text = [status, exception].map(|t| t.filter(|t| !t.is_empty()));
        }
        Ok(input)
    }
}

/// Links are evidence for messaging hops; a handful is plenty, and a span carrying half a
/// million of them must not cost memory or time downstream. Links with bad ids are left out.
fn links<'a>(ids: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<Link> {
    ids.take(MAX_LINKS)
        .filter_map(|(t, s)| {
            Some(Link {
                trace_id: trace_id_opt(t)?,
                span_id: span_id(s).ok()?,
            })
        })
        .collect()
}

/// The explicit port of a URL, if it has one.
fn url_port(url: &str) -> Option<i64> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once("]:")?.1,
        None => host_port.rsplit_once(':')?.1,
    };
    port.parse::<u16>().ok().filter(|&p| p > 0).map(i64::from)
}

/// `localhost` or an IP address: where a process is, not what it is.
fn is_address_literal(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// The host part of a URL, without userinfo and port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(stripped) = host_port.strip_prefix('[') {
        stripped.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl Normalizer {
    pub fn new(interner: Interner) -> Self {
        Normalizer {
            interner,
            ..Default::default()
        }
    }

    fn resource_facts(&mut self, r: &ResourceAttrs<'_>) -> ResourceFacts {
        let service = self.interner.intern(r.service.unwrap_or(UNKNOWN_SERVICE));
        let instance = match (r.instance_id.or(r.pod), r.host, r.pid) {
            (Some(id), _, _) => Some(self.interner.intern(id)),
            (None, Some(h), Some(p)) => Some(self.interner.intern(&format!("{h}/{p}"))),
            (None, Some(h), None) => Some(self.interner.intern(h)),
            (None, None, _) => None,
        };
        ResourceFacts { service, instance }
    }

    fn composite(&mut self, base: &str, system: &str) -> Sym {
        let (b, s) = (self.interner.intern(base), self.interner.intern(system));
        if let Some(&sym) = self.composite.get(&(b, s)) {
            return sym;
        }
        let sym = self.interner.intern(&format!("{base} ({system})"));
        // Full tables fold into the overflow symbol; caching that would grow without bound.
        if sym != Interner::OVERFLOW && b != Interner::OVERFLOW {
            self.composite.insert((b, s), sym);
        }
        sym
    }

    fn address(&mut self, host: Option<&str>, port: Option<i64>) -> Option<Sym> {
        let h = self.interner.intern(host?);
        let Some(port) = port.filter(|p| (1..=65535).contains(p)) else {
            return Some(h);
        };
        if let Some(&sym) = self.addresses.get(&(h, port)) {
            return Some(sym);
        }
        let host = self.interner.resolve(h);
        let joined = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let sym = self.interner.intern(&joined);
        if sym != Interner::OVERFLOW && h != Interner::OVERFLOW {
            self.addresses.insert((h, port), sym);
        }
        Some(sym)
    }

    /// The uninstrumented far side of a span, if its attributes name one. Whether a client
    /// span's peer becomes a graph edge is the graph's decision (an instrumented server child
    /// takes precedence); this only names it.
    ///
    /// A database or broker is named by what its callers call it (`peer.service`, a database
    /// name); one they name only by its system is a *raw* backend keyed by its address, which
    /// the identity resolver later groups with the addresses used interchangeably with it.
    fn peer(
        &mut self,
        kind: SpanKind,
        span_name: &str,
        a: &SpanAttrs<'_>,
        local_service: Sym,
    ) -> Option<Peer> {
        let (addr_host, addr_port) = match (a.server_address, a.peer_address) {
            (Some(h), _) => (Some(h), a.server_port),
            (None, Some(h)) => (Some(h), a.peer_port.or(a.server_port)),
            (None, None) => (None, None),
        };
        let messaging_kind = matches!(kind, SpanKind::Producer | SpanKind::Consumer);
        let backend = match (a.messaging_system, a.db_system) {
            (Some(system), _) => Some((NodeType::Messaging, system)),
            (None, Some(system)) => Some((NodeType::Database, system)),
            (None, None) => None,
        };
        if let Some((ty, system)) = backend {
            let address = self.address(addr_host, addr_port);
            // A Redis database index ("0") names nothing a person would recognise.
            let namespace = a
                .db_namespace
                .filter(|n| !n.bytes().all(|b| b.is_ascii_digit()));
            // `peer.service` is the user's own name for it: one node, whatever the address.
            // A database name is a label: two servers that each hold a database called
            // `app` for different callers are still two nodes, so addressed calls stay raw
            // and the identity resolver groups them by how they are used.
            let node = match (a.peer_service, namespace, address) {
                (Some(p), _, _) if p == system => NodeKey::named(ty, self.interner.intern(system)),
                (Some(p), _, _) => NodeKey::named(ty, self.composite(p, system)),
                (None, Some(n), None) => NodeKey::named(ty, self.composite(n, system)),
                (None, label, address) => {
                    let system = self.interner.intern(system);
                    NodeKey {
                        ty,
                        name: address.unwrap_or(system),
                        system: Some(system),
                        label: label.map(|l| self.interner.intern(l)),
                    }
                }
            };
            let (usage, idle) = match ty {
                NodeType::Messaging => messaging_usage(span_name, a),
                _ => db_usage(span_name, a),
            };
            return Some(Peer {
                node,
                address,
                usage,
                idle,
            });
        }
        if messaging_kind {
            // A producer or consumer naming only its peer (Zipkin's remoteEndpoint "kafka").
            let name = self.interner.intern(a.peer_service?);
            let address = self.address(addr_host, addr_port);
            let (usage, idle) = messaging_usage(span_name, a);
            return Some(Peer {
                node: NodeKey::named(NodeType::Messaging, name),
                address,
                usage,
                idle,
            });
        }
        if kind != SpanKind::Client {
            return None;
        }
        let url_h = a.url.and_then(url_host);
        // Read only where the URL is what names the peer (the hot path has server.address).
        let url_port = || a.url.and_then(url_port);
        let name_str = a
            .peer_service
            .or(a.server_address)
            .or(url_h)
            .or(a.http_host)?;
        // A loopback or IP address names no service; with the URL's port it names one
        // (`localhost:58080`), as the caller's spans show it.
        let by_url_address = (a.peer_service.is_none() && a.server_address.is_none())
            .then_some(url_h)
            .flatten()
            .filter(|h| is_address_literal(h))
            .zip(url_port());
        let name = match by_url_address {
            Some((h, p)) => self.address(Some(h), Some(p)),
            None => None,
        }
        .unwrap_or_else(|| self.interner.intern(name_str));
        if name == local_service {
            // Instrumentation that names the local service as its peer: not an edge.
            return None;
        }
        // Distinct resolved addresses are the instances; a host name alone says only that one
        // name was used, which is still one address.
        let address = match a.peer_address {
            Some(ip) => self.address(Some(ip), a.peer_port.or(a.server_port)),
            None if addr_host.is_none() && url_h.is_some() => self.address(url_h, url_port()),
            None => self.address(addr_host.or(url_h).or(a.http_host), addr_port),
        };
        Some(Peer {
            node: NodeKey::named(NodeType::External, name),
            address,
            usage: 0,
            idle: false,
        })
    }

    fn span(
        &mut self,
        res: &ResourceFacts,
        s: SpanInput<'_>,
    ) -> Result<(Span, Option<SpanError>), SpanError> {
        let trace_id = trace_id(s.trace_id)?;
        let id = span_id(s.span_id).map_err(|e| match e {
            IdError::Len(n) => SpanError::SpanIdLength(n),
            IdError::Zero => SpanError::ZeroSpanId,
        })?;
        let mut repaired = None;
        let parent = if s.parent_span_id.is_empty() {
            None
        } else {
            match span_id(s.parent_span_id) {
                Ok(p) if p == id => {
                    repaired = Some(SpanError::OwnParent);
                    None
                }
                Ok(p) => Some(p),
                Err(IdError::Zero) => None,
                Err(IdError::Len(n)) => return Err(SpanError::ParentIdLength(n)),
            }
        };
        // Zero is a legal start (synthetic traces count from it); both zero means no times.
        if s.start == 0 && s.end == 0 {
            return Err(SpanError::MissingStart);
        }
        if s.end < s.start {
            return Err(SpanError::EndBeforeStart {
                start: s.start,
                end: s.end,
            });
        }
        let limits = &self.time_limits;
        // Only live: replayed files may be synthetic, counting from zero.
        if limits.now_ns.is_some() && s.start < limits.min_start_ns {
            return Err(SpanError::TooOld(s.start));
        }
        let duration = s.end - s.start;
        if duration > limits.max_duration_ns {
            return Err(SpanError::TooLong {
                secs: duration / 1_000_000_000,
                max_secs: limits.max_duration_ns / 1_000_000_000,
            });
        }
        if let Some(now) = limits.now_ns {
            // A span is exported once it has ended: one ending ahead of the clock by more
            // than a bucket (a 5-hour span "starting now") would push the window's end
            // hours into the future, so it is refused as one starting there is.
            if s.start > now.saturating_add(limits.max_ahead_ns) {
                return Err(SpanError::InFuture {
                    secs_ahead: (s.start - now) / 1_000_000_000,
                });
            }
            if s.end > now.saturating_add(limits.max_ahead_ns) {
                return Err(SpanError::EndsInFuture {
                    secs_ahead: (s.end - now) / 1_000_000_000,
                });
            }
        }
        let kind = SpanKind::from_otlp(s.kind).ok_or(SpanError::UnknownKind(s.kind))?;
        let attrs = &s.attrs;
        let instance = match (res.instance, attrs.instance) {
            (Some(i), _) => Some(i),
            (None, Some(i)) => Some(self.interner.intern(i)),
            (None, None) => None,
        };
        let peer = self.peer(kind, s.name, attrs, res.service);
        let mut fault_addrs = [None; 2];
        let named = s
            .fault_text
            .iter()
            .flatten()
            .flat_map(|t| super::fault_text::addresses(t));
        let mut n = 0;
        for (host, port) in named {
            let a = self.address(Some(host), Some(i64::from(port)));
            if n < fault_addrs.len() && a.is_some() && !fault_addrs.contains(&a) {
                fault_addrs[n] = a;
                n += 1;
            }
        }
        let span = Span {
            trace_id,
            span_id: id,
            parent,
            service: res.service,
            instance,
            name: self.interner.intern(s.name),
            kind,
            start_ns: s.start,
            end_ns: s.end,
            error: (s.status_error || attrs.error_tag || server_error(kind, attrs.http_status))
                && !client_refused(kind, attrs.http_status),
            peer,
            links: s.links,
            proxy: attrs.proxy,
            fault_addrs,
            weight: adjusted_count(s.trace_state),
        };
        Ok((span, repaired))
    }

    /// Adds one span's outcome to `out` and `report`; `ids` locates a rejected span.
    fn record(
        result: Result<(Span, Option<SpanError>), SpanError>,
        index: u64,
        ids: impl FnOnce() -> (Option<TraceId>, Option<SpanId>),
        out: &mut Vec<Span>,
        report: &mut BatchReport,
    ) {
        match result {
            Ok((span, repaired)) => {
                if let Some(error) = repaired {
                    report.repaired(SpanProblem {
                        index,
                        trace_id: Some(span.trace_id),
                        span_id: Some(span.span_id),
                        error,
                    });
                }
                out.push(span);
                report.accepted += 1;
            }
            Err(error) => {
                let (trace_id, span_id) = ids();
                report.reject(SpanProblem {
                    index,
                    trace_id,
                    span_id,
                    error,
                })
            }
        }
    }

    /// Normalizes a batch; bad spans are reported in `report` and skipped, good ones pushed to
    /// `out`.
    pub fn normalize(
        &mut self,
        resource_spans: &[ResourceSpans],
        out: &mut Vec<Span>,
        report: &mut BatchReport,
    ) {
        for rs in resource_spans {
            let mut r = ResourceAttrs::default();
            for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
                r.set(kv.key.as_bytes(), any_value(&kv.value));
            }
            let facts = self.resource_facts(&r);
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let index = report.seen;
                    report.seen += 1;
                    let result = self.span(&facts, SpanInput::from_otlp(s));
                    let ids = || (trace_id(&s.trace_id).ok(), span_id(&s.span_id).ok());
                    Self::record(result, index, ids, out, report);
                }
            }
        }
    }

    /// Either kind of batch.
    pub fn normalize_batch(
        &mut self,
        batch: &super::batch::Batch,
        out: &mut Vec<Span>,
        report: &mut BatchReport,
    ) {
        match batch {
            super::batch::Batch::Decoded(rs) => self.normalize(rs, out, report),
            super::batch::Batch::Wire(w) => self.normalize_wire(w, out, report),
        }
    }

    /// [`Normalizer::normalize`] straight from the protobuf bytes of an
    /// `ExportTraceServiceRequest` (or `TracesData`), without decoding what is not read. Their
    /// framing was checked when the [`WireBatch`](super::batch::WireBatch) was made; a fault
    /// inside one span or resource rejects the spans it affects.
    pub fn normalize_wire(
        &mut self,
        batch: &super::batch::WireBatch,
        out: &mut Vec<Span>,
        report: &mut BatchReport,
    ) {
        let msg = batch.bytes();
        // Checked when the batch was made: the framing iterators below cannot fail.
        for rs in otlp_wire::resource_spans(msg).flatten() {
            let mut r = ResourceAttrs::default();
            let mut bad_resource = None;
            for kv in otlp_wire::resource_attributes(rs) {
                match kv {
                    Ok(kv) => r.set(kv.key, kv.value),
                    Err(e) => bad_resource = Some(e),
                }
            }
            let facts = self.resource_facts(&r);
            for ss in otlp_wire::scope_spans(rs).flatten() {
                for raw in otlp_wire::spans(ss).flatten() {
                    let index = report.seen;
                    report.seen += 1;
                    let view = SpanView::parse(raw);
                    let result = match (&view, bad_resource) {
                        (_, Some(e)) => Err(SpanError::Malformed(format!("its resource: {e}"))),
                        (Err(e), None) => Err(SpanError::Malformed(e.to_string())),
                        (Ok(v), None) => {
                            SpanInput::from_wire(v).and_then(|input| self.span(&facts, input))
                        }
                    };
                    let ids = || match &view {
                        Ok(v) => (trace_id(v.trace_id).ok(), span_id(v.span_id).ok()),
                        Err(_) => (None, None),
                    };
                    Self::record(result, index, ids, out, report);
                }
            }
        }
    }
}

/// An HTTP client span whose server answered 4xx: the semantic conventions mark it an
/// error, but the server did its job and refused the request (a 404, a failed validation).
/// That is no failure of any dependency, so it is not counted as one. 408 (timeout) and 429
/// (overloaded) are the server's trouble and stay failures.
/// A 5xx answer is a failure of the server, whether or not the instrumentation set the
/// status (the HTTP semantic conventions say it should, on both sides).
fn server_error(kind: SpanKind, status: Option<i64>) -> bool {
    matches!(kind, SpanKind::Client | SpanKind::Server)
        && status.is_some_and(|c| (500..600).contains(&c))
}

fn client_refused(kind: SpanKind, status: Option<i64>) -> bool {
    kind == SpanKind::Client
        && status.is_some_and(|c| (400..500).contains(&c) && c != 408 && c != 429)
}

/// Redis commands that block until work arrives: a worker's wait, not the server's latency.
const BLOCKING_COMMANDS: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
];

/// What a database call asked for (hashed) and whether it only waited for work.
fn db_usage(span_name: &str, a: &SpanAttrs<'_>) -> (u64, bool) {
    let command = a
        .db_operation
        .or(a.db_statement)
        .unwrap_or(span_name)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let idle = BLOCKING_COMMANDS.contains(&command.as_str())
        || (matches!(command.as_str(), "XREAD" | "XREADGROUP")
            && a.db_statement
                .is_some_and(|st| st.to_ascii_uppercase().contains(" BLOCK ")));
    let usage = match (a.db_statement, a.db_operation, a.db_collection) {
        (Some(st), _, _) => hash_normalized(st),
        (None, Some(op), Some(coll)) => hash_normalized(&format!("{op} {coll}")),
        (None, Some(op), None) => hash_normalized(op),
        (None, None, Some(coll)) => hash_normalized(&format!("{span_name} {coll}")),
        (None, None, None) => hash_normalized(span_name),
    };
    (usage, idle)
}

/// What a messaging call used (its destination) and whether it only waited for messages.
fn messaging_usage(span_name: &str, a: &SpanAttrs<'_>) -> (u64, bool) {
    let first = span_name.split_whitespace().next().unwrap_or("");
    let op = a.messaging_operation.unwrap_or(first);
    let idle = op.eq_ignore_ascii_case("receive") || op.eq_ignore_ascii_case("poll");
    let usage = hash_normalized(a.messaging_destination.unwrap_or(span_name));
    (usage, idle)
}

/// A hash of `text` with its literals blanked (numbers and quoted strings become `?`, runs
/// of blanks one space, case folded), so the same statement with other values hashes alike.
/// Never 0 (0 means "nothing said").
fn hash_normalized(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    let mut quote: Option<u8> = None;
    let mut prev = b' ';
    for &b in text.as_bytes().iter().take(512) {
        if let Some(q) = quote {
            if b == q {
                quote = None;
            }
            continue;
        }
        let out = match b {
            b'\'' | b'"' => {
                quote = Some(b);
                b'?'
            }
            b'0'..=b'9' if !prev.is_ascii_alphabetic() && prev != b'_' => b'?',
            b if b.is_ascii_whitespace() => b' ',
            b => b.to_ascii_lowercase(),
        };
        if out == prev && (out == b' ' || out == b'?') {
            continue;
        }
        h.write_u8(out);
        prev = out;
    }
    h.finish().max(1)
}

enum IdError {
    Len(usize),
    Zero,
}

fn trace_id(b: &[u8]) -> Result<TraceId, SpanError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| SpanError::TraceIdLength(b.len()))?;
    if arr == [0; 16] {
        return Err(SpanError::ZeroTraceId);
    }
    Ok(TraceId(arr))
}

fn trace_id_opt(b: &[u8]) -> Option<TraceId> {
    trace_id(b).ok()
}

fn span_id(b: &[u8]) -> Result<SpanId, IdError> {
    let arr: [u8; 8] = b.try_into().map_err(|_| IdError::Len(b.len()))?;
    if arr == [0; 8] {
        return Err(IdError::Zero);
    }
    Ok(SpanId(arr))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sampling_threshold_gives_each_span_its_adjusted_count() {
        use super::adjusted_count;
        assert_eq!(adjusted_count(""), 1.0);
        assert_eq!(adjusted_count("vendor=x"), 1.0);
        // th:0 keeps everything; th:8 (2^55, padded) rejects half; th:c three quarters.
        assert_eq!(adjusted_count("ot=th:0"), 1.0);
        assert_eq!(adjusted_count("ot=th:8"), 2.0);
        assert_eq!(adjusted_count("ot=th:c"), 4.0);
        // th:fd70a4 is the specification's 1% example; an `rv` beside it changes nothing.
        assert!((adjusted_count("ot=th:fd70a4") - 100.0).abs() < 0.01);
        assert!((adjusted_count("ot=rv:1234;th:fd70a4") - 100.0).abs() < 0.01);
        // Among other members, and malformed thresholds count once.
        assert_eq!(adjusted_count("a=b, ot=th:8, c=d"), 2.0);
        assert_eq!(adjusted_count("ot=th:zz"), 1.0);
        assert_eq!(adjusted_count("ot=th:123456789abcdef0"), 1.0);
    }

    use super::*;

    #[test]
    fn a_url_port_names_a_peer_known_only_by_an_address() {
        assert_eq!(url_port("http://localhost:58080/v1/check"), Some(58080));
        assert_eq!(url_port("http://[::1]:8443/x"), Some(8443));
        assert_eq!(url_port("https://bank.example/pay?x=1:2"), None);
        assert_eq!(url_port("http://user:pw@api:9000"), Some(9000));
        assert!(is_address_literal("localhost") && is_address_literal("10.0.0.5"));
        assert!(is_address_literal("::1") && !is_address_literal("bank.example"));
    }

    /// Both decoders, on every test file (JSON, Jaeger, Zipkin and protobuf, re-encoded as
    /// protobuf) and the simulated shop: the same spans, rejections and repairs, in order.
    #[test]
    fn the_wire_reader_normalizes_exactly_as_prost_does() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let mut batches = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("testdata")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                !p.to_string_lossy().ends_with(".json")
                    || !p.to_string_lossy().contains(".findings")
                        && !p.to_string_lossy().contains(".graph")
            })
            .collect();
        files.sort();
        for f in &files {
            let mut sink = |_: super::super::Location, b: super::super::batch::Batch, _| {
                batches.push(b.into_resource_spans().expect("testdata decodes"))
            };
            let _ = super::super::read_path(f, &mut sink);
        }
        let cfg = crate::simulate::SimConfig {
            scenario: crate::simulate::Scenario::SlowPayment,
            traces: 200,
            ..Default::default()
        };
        batches.extend(crate::simulate::generate(&cfg).map(|r| r.resource_spans));
        assert!(batches.len() > 100, "{} batches", batches.len());
        let (mut a, mut b) = (Normalizer::default(), Normalizer::default());
        let (mut spans, mut named_faults) = (0, 0);
        for rs in batches {
            let (mut out_a, mut rep_a) = (Vec::new(), BatchReport::default());
            a.normalize(&rs, &mut out_a, &mut rep_a);
            let bytes = ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec();
            let (mut out_b, mut rep_b) = (Vec::new(), BatchReport::default());
            let wire = super::super::batch::WireBatch::new(bytes.into()).expect("valid");
            b.normalize_wire(&wire, &mut out_b, &mut rep_b);
            assert_eq!(format!("{out_a:?}"), format!("{out_b:?}"));
            assert_eq!(format!("{rep_a:?}"), format!("{rep_b:?}"));
            spans += out_a.len();
            named_faults += out_a.iter().filter(|s| s.fault_addrs[0].is_some()).count();
        }
        assert!(spans > 10_000, "{spans} spans");
        // Exception events naming an address (lab-refused-connections) are read both ways.
        assert!(
            named_faults > 10,
            "{named_faults} failed spans naming an address"
        );
        assert_eq!(
            a.interner.names().collect::<Vec<_>>(),
            b.interner.names().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_malformed_span_is_rejected_alone_and_a_cut_request_whole() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let cfg = crate::simulate::SimConfig {
            traces: 2,
            ..Default::default()
        };
        let req = crate::simulate::generate(&cfg).next().expect("a trace");
        let mut bytes = req.encode_to_vec();
        let n = super::super::otlp_wire::count_spans(&bytes).expect("valid");
        let wire = |b: &[u8]| super::super::batch::WireBatch::new(b.to_vec().into());
        assert!(wire(&bytes[..bytes.len() - 3]).is_err());
        let mut norm = Normalizer::default();
        // Turn the first span's first attribute's key (field 1, a string) into a varint field
        // of the same number, which prost refuses for the whole request.
        let name = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .find_map(|s| s.attributes.first())
            .expect("an attribute")
            .key
            .as_bytes();
        let at = bytes
            .windows(name.len() + 2)
            .position(|w| w[0] == 0x0a && w[1] as usize == name.len() && &w[2..] == name)
            .expect("first key");
        bytes[at] = 0x08;
        assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err());
        let (mut out, mut report) = (Vec::new(), BatchReport::default());
        norm.normalize_wire(
            &wire(&bytes).expect("framing intact"),
            &mut out,
            &mut report,
        );
        assert_eq!(
            (report.seen, report.rejected),
            (n, 1),
            "{}",
            report.summary()
        );
        assert_eq!(out.len() as u64, n - 1);
        assert!(
            report.summary().contains("malformed"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://bank.example.com:443/pay"),
            Some("bank.example.com")
        );
        assert_eq!(url_host("http://u:p@h/x"), Some("h"));
        assert_eq!(url_host("http://[::1]:80/"), Some("::1"));
        assert_eq!(url_host("bank/x"), Some("bank"));
        assert_eq!(url_host("http:///x"), None);
    }

    #[test]
    fn statements_with_other_values_are_the_same_usage() {
        assert_eq!(
            hash_normalized("SELECT * FROM t WHERE id = 42 AND n = 'x'"),
            hash_normalized("select *  from t where id = 7 and n = 'yy'")
        );
        assert_ne!(
            hash_normalized("SELECT * FROM orders"),
            hash_normalized("SELECT * FROM invoices")
        );
        assert_ne!(hash_normalized("GET table1"), hash_normalized("GET table2"));
    }

    #[test]
    fn blocking_pops_and_polls_are_idle_waits() {
        let a = SpanAttrs {
            db_statement: Some("BRPOP jobs 5"),
            ..Default::default()
        };
        assert!(db_usage("BRPOP", &a).1);
        let a = SpanAttrs {
            db_statement: Some("XREAD COUNT 1 BLOCK 5000 STREAMS s $"),
            ..Default::default()
        };
        assert!(db_usage("XREAD", &a).1);
        let a = SpanAttrs {
            db_statement: Some("XREAD COUNT 1 STREAMS s 0"),
            ..Default::default()
        };
        assert!(!db_usage("XREAD", &a).1);
        assert!(!db_usage("GET", &SpanAttrs::default()).1);
        let a = SpanAttrs {
            messaging_operation: Some("receive"),
            ..Default::default()
        };
        assert!(messaging_usage("orders receive", &a).1);
        assert!(!messaging_usage("orders process", &SpanAttrs::default()).1);
    }
}
