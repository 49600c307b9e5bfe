//! OTLP `ResourceSpans` → [`model::Span`](crate::model::Span): the one conversion every
//! transport and file reader ends in.
//!
//! Understands old and new semantic conventions for service identity, instance identity and the
//! peers seen only from a client span (databases, brokers, external HTTP services). A span that
//! cannot be used is rejected alone, with a reason; the spans beside it still count.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, ResourceSpans, Span as OtlpSpan};
use rustc_hash::FxHashMap;

use super::problem::{BatchReport, SpanError, SpanProblem};
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

fn str_value(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

fn int_value(v: &Option<AnyValue>) -> Option<i64> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

impl<'a> SpanAttrs<'a> {
    fn read(attrs: &'a [KeyValue]) -> Self {
        let mut a = SpanAttrs::default();
        for kv in attrs {
            let v = &kv.value;
            match kv.key.as_str() {
                "db.system" | "db.system.name" => a.db_system = str_value(v),
                "db.namespace" => a.db_namespace = str_value(v),
                "db.name" => a.db_namespace = a.db_namespace.or(str_value(v)),
                "messaging.system" => a.messaging_system = str_value(v),
                "peer.service" => a.peer_service = str_value(v),
                "server.address" => a.server_address = str_value(v),
                "net.peer.name" => a.server_address = a.server_address.or(str_value(v)),
                "server.port" => a.server_port = int_value(v),
                "net.peer.port" => a.server_port = a.server_port.or(int_value(v)),
                "network.peer.address" | "net.sock.peer.addr" | "net.peer.ip" => {
                    a.peer_address = a.peer_address.or(str_value(v))
                }
                "network.peer.port" | "net.sock.peer.port" => a.peer_port = int_value(v),
                "url.full" | "http.url" => a.url = str_value(v),
                "http.host" => a.http_host = str_value(v),
                "http.response.status_code" => a.http_status = int_value(v),
                "component" => a.proxy |= str_value(v) == Some("proxy"),
                "upstream_cluster" | "upstream_cluster.name" => a.proxy = true,
                "http.status_code" => a.http_status = a.http_status.or(int_value(v)),
                "db.query.text" => a.db_statement = str_value(v),
                "db.statement" => a.db_statement = a.db_statement.or(str_value(v)),
                "db.operation.name" => a.db_operation = str_value(v),
                "db.operation" => a.db_operation = a.db_operation.or(str_value(v)),
                "db.collection.name" => a.db_collection = str_value(v),
                "db.sql.table" | "db.mongodb.collection" | "db.cassandra.table" => {
                    a.db_collection = a.db_collection.or(str_value(v))
                }
                "messaging.destination.template" => a.messaging_destination = str_value(v),
                "messaging.destination.name" | "messaging.destination" => {
                    a.messaging_destination = a.messaging_destination.or(str_value(v))
                }
                "messaging.operation.type" => a.messaging_operation = str_value(v),
                "messaging.operation" | "messaging.operation.name" => {
                    a.messaging_operation = a.messaging_operation.or(str_value(v))
                }
                "service.instance.id" | "k8s.pod.name" | "node_id" => {
                    a.instance = a.instance.or(str_value(v))
                }
                "error" => {
                    // Zipkin and OpenTracing mark errors with an `error` tag; any value but a
                    // false boolean (or "false") means error, even an empty string.
                    a.error_tag = match v.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::BoolValue(b)) => *b,
                        Some(any_value::Value::StringValue(s)) => s != "false",
                        _ => true,
                    }
                }
                _ => {}
            }
        }
        a
    }
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

    fn resource_facts(&mut self, rs: &ResourceSpans) -> ResourceFacts {
        let mut service = None;
        let (mut instance_id, mut pod, mut host, mut pid) = (None, None, None, None);
        if let Some(res) = &rs.resource {
            for kv in &res.attributes {
                match kv.key.as_str() {
                    "service.name" => service = str_value(&kv.value),
                    "service.instance.id" => instance_id = str_value(&kv.value),
                    "k8s.pod.name" => pod = str_value(&kv.value),
                    "host.name" => host = str_value(&kv.value),
                    "process.pid" => pid = int_value(&kv.value),
                    _ => {}
                }
            }
        }
        let service = self.interner.intern(service.unwrap_or(UNKNOWN_SERVICE));
        let instance = match (instance_id.or(pod), host, pid) {
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
        let name_str = a
            .peer_service
            .or(a.server_address)
            .or(url_h)
            .or(a.http_host)?;
        let name = self.interner.intern(name_str);
        if name == local_service {
            // Instrumentation that names the local service as its peer: not an edge.
            return None;
        }
        // Distinct resolved addresses are the instances; a host name alone says only that one
        // name was used, which is still one address.
        let address = match a.peer_address {
            Some(ip) => self.address(Some(ip), a.peer_port.or(a.server_port)),
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
        s: &OtlpSpan,
    ) -> Result<(Span, Option<SpanError>), SpanError> {
        let trace_id = trace_id(&s.trace_id)?;
        let id = span_id(&s.span_id).map_err(|e| match e {
            IdError::Len(n) => SpanError::SpanIdLength(n),
            IdError::Zero => SpanError::ZeroSpanId,
        })?;
        let mut repaired = None;
        let parent = if s.parent_span_id.is_empty() {
            None
        } else {
            match span_id(&s.parent_span_id) {
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
        if s.start_time_unix_nano == 0 && s.end_time_unix_nano == 0 {
            return Err(SpanError::MissingStart);
        }
        if s.end_time_unix_nano < s.start_time_unix_nano {
            return Err(SpanError::EndBeforeStart {
                start: s.start_time_unix_nano,
                end: s.end_time_unix_nano,
            });
        }
        let limits = &self.time_limits;
        // Only live: replayed files may be synthetic, counting from zero.
        if limits.now_ns.is_some() && s.start_time_unix_nano < limits.min_start_ns {
            return Err(SpanError::TooOld(s.start_time_unix_nano));
        }
        let duration = s.end_time_unix_nano - s.start_time_unix_nano;
        if duration > limits.max_duration_ns {
            return Err(SpanError::TooLong {
                secs: duration / 1_000_000_000,
                max_secs: limits.max_duration_ns / 1_000_000_000,
            });
        }
        if let Some(now) = limits.now_ns {
            if s.start_time_unix_nano > now.saturating_add(limits.max_ahead_ns) {
                return Err(SpanError::InFuture {
                    secs_ahead: (s.start_time_unix_nano - now) / 1_000_000_000,
                });
            }
        }
        let kind = SpanKind::from_otlp(s.kind).ok_or(SpanError::UnknownKind(s.kind))?;
        let attrs = SpanAttrs::read(&s.attributes);
        let status_error = s
            .status
            .as_ref()
            .is_some_and(|st| st.code == StatusCode::Error as i32);
        let instance = match (res.instance, attrs.instance) {
            (Some(i), _) => Some(i),
            (None, Some(i)) => Some(self.interner.intern(i)),
            (None, None) => None,
        };
        let peer = self.peer(kind, &s.name, &attrs, res.service);
        // Links are evidence for messaging hops; a handful is plenty, and a span carrying
        // half a million of them must not cost memory or time downstream.
        let links = s
            .links
            .iter()
            .take(MAX_LINKS)
            .filter_map(|l| {
                Some(Link {
                    trace_id: trace_id_opt(&l.trace_id)?,
                    span_id: span_id(&l.span_id).ok()?,
                })
            })
            .collect();
        let span = Span {
            trace_id,
            span_id: id,
            parent,
            service: res.service,
            instance,
            name: self.interner.intern(&s.name),
            kind,
            start_ns: s.start_time_unix_nano,
            end_ns: s.end_time_unix_nano,
            error: (status_error || attrs.error_tag) && !client_refused(kind, attrs.http_status),
            peer,
            links,
            proxy: attrs.proxy,
        };
        Ok((span, repaired))
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
            let facts = self.resource_facts(rs);
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let index = report.seen;
                    report.seen += 1;
                    match self.span(&facts, s) {
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
                        Err(error) => report.reject(SpanProblem {
                            index,
                            trace_id: trace_id(&s.trace_id).ok(),
                            span_id: span_id(&s.span_id).ok(),
                            error,
                        }),
                    }
                }
            }
        }
    }
}

/// An HTTP client span whose server answered 4xx: the semantic conventions mark it an
/// error, but the server did its job and refused the request (a 404, a failed validation).
/// That is no failure of any dependency, so it is not counted as one. 408 (timeout) and 429
/// (overloaded) are the server's trouble and stay failures.
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
    use super::*;

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
