//! The shop's request flows, span by span.
//!
//! ```text
//! api-gateway ─► order-service ─► orders (postgresql)
//!                     └─► saga-orchestrator ─► saga (postgresql)
//!                            ├─► payment-service ─► orders (postgresql)
//!                            │        ├─► api.bank.example (uninstrumented, HTTP)
//!                            │        └─► kafka ─ ─► email-service ─► smtp.mail.example
//!                            └─► shipping-service ─► orders (postgresql)
//! ```
//! 70% of entry requests are checkouts (`POST /checkout`), 30% order lookups
//! (`GET /orders/{id}`), which touch only the gateway, order-service and its database.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

use super::{Rng, Scenario, SimConfig};
use crate::ingest::otlp_json::key_value;

/// Per-scenario knobs.
struct Params {
    instances: BTreeMap<&'static str, usize>,
    orders_db: &'static [&'static str],
    saga_db: &'static [&'static str],
    kafka: &'static [&'static str],
    bank_ips: &'static [&'static str],
    bank_median_ms: f64,
    saga_db_median_ms: f64,
    /// Queue delay before email-service, in ms, as a function of run progress (0..1).
    email_queue_ms: fn(f64) -> f64,
    /// Which dependency is down during `outage` (a fraction of the run).
    down: Option<Down>,
    outage: (f64, f64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Down {
    OrdersDb,
    Kafka,
    Orchestrator,
}

impl Params {
    fn of(s: Scenario) -> Params {
        let mut p = Params {
            instances: [
                ("api-gateway", 2),
                ("order-service", 3),
                ("saga-orchestrator", 3),
                ("payment-service", 3),
                ("shipping-service", 2),
                ("email-service", 2),
            ]
            .into_iter()
            .collect(),
            orders_db: &["pg-orders-1", "pg-orders-2"],
            saga_db: &["pg-saga-1", "pg-saga-2"],
            kafka: &["kafka-1", "kafka-2", "kafka-3"],
            bank_ips: &["203.0.113.10", "203.0.113.11", "203.0.113.12"],
            bank_median_ms: 7.0,
            saga_db_median_ms: 1.5,
            email_queue_ms: |_| 15.0,
            down: None,
            outage: (0.45, 0.55),
        };
        match s {
            Scenario::Healthy => {}
            Scenario::SlowPayment => p.bank_median_ms = 650.0,
            Scenario::EmailBacklog => p.email_queue_ms = |x| 15.0 + 40_000.0 * x,
            Scenario::SingleDb => {
                p.orders_db = &["pg-orders-1"];
                p.down = Some(Down::OrdersDb);
            }
            Scenario::SingleKafka => {
                p.kafka = &["kafka-1"];
                p.down = Some(Down::Kafka);
            }
            Scenario::SingleOrchestrator => {
                p.instances.insert("saga-orchestrator", 1);
                p.down = Some(Down::Orchestrator);
            }
            Scenario::SlowOrchestratorDb => p.saga_db_median_ms = 140.0,
        }
        p
    }
}

/// Where a span was produced: service and instance index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Res {
    service: &'static str,
    instance: usize,
}

/// A service's request handler: parent span id and start time in, the reply out.
type Handler = fn(&mut Shop, &[u8], u64) -> Reply;

/// The outcome of a call: when the caller got its answer, and whether it was a failure.
struct Reply {
    end: u64,
    error: bool,
}

pub struct Shop {
    p: Params,
    rng: Rng,
    cfg: SimConfig,
    /// Spans of the trace being built, by resource.
    spans: BTreeMap<Res, Vec<Span>>,
    trace_id: Vec<u8>,
    progress: f64,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    key_value(key, Some(AnyValue { value: Some(v) }))
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_owned()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

impl Shop {
    pub fn new(cfg: &SimConfig) -> Shop {
        Shop {
            p: Params::of(cfg.scenario),
            rng: Rng::new(cfg.seed),
            cfg: cfg.clone(),
            spans: BTreeMap::new(),
            trace_id: Vec::new(),
            progress: 0.0,
        }
    }

    fn id(&mut self) -> Vec<u8> {
        (self.rng.next_u64() | 1).to_be_bytes().to_vec()
    }

    fn res(&mut self, service: &'static str) -> Res {
        let n = self.p.instances.get(service).copied().unwrap_or(1);
        Res {
            service,
            instance: self.rng.below(n),
        }
    }

    fn down(&self, d: Down) -> bool {
        self.p.down == Some(d) && (self.p.outage.0..self.p.outage.1).contains(&self.progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        res: Res,
        id: Vec<u8>,
        parent: &[u8],
        name: &str,
        kind: SpanKind,
        start: u64,
        end: u64,
        attributes: Vec<KeyValue>,
        error: bool,
    ) {
        let span = Span {
            trace_id: self.trace_id.clone(),
            span_id: id,
            parent_span_id: parent.to_vec(),
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: error.then(|| Status {
                code: StatusCode::Error as i32,
                message: "request failed".into(),
            }),
            ..Default::default()
        };
        self.spans.entry(res).or_default().push(span);
    }

    /// One entry request, as one OTLP request.
    pub fn trace(&mut self, index: usize) -> ExportTraceServiceRequest {
        self.progress = index as f64 / self.cfg.traces.max(1) as f64;
        let mut tid = self.id();
        tid.extend(self.id());
        self.trace_id = tid;
        let gap = (1e9 / self.cfg.rate_per_s.max(1e-3)) as u64;
        let start = self.cfg.start_unix_ns
            + index as u64 * gap
            + self.rng.below(gap as usize / 2 + 1) as u64;
        self.gateway(start);
        let spans = std::mem::take(&mut self.spans);
        ExportTraceServiceRequest {
            resource_spans: spans
                .into_iter()
                .map(|(res, spans)| self.resource_spans(res, spans))
                .collect(),
        }
    }

    fn resource_spans(&self, res: Res, spans: Vec<Span>) -> ResourceSpans {
        let instance = format!("{}-{}", res.service, res.instance + 1);
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", res.service),
                    s("service.namespace", "shop"),
                    s("service.instance.id", &instance),
                    s("host.name", &format!("node-{}", res.instance + 1)),
                    s("deployment.environment.name", "demo"),
                    s("telemetry.sdk.name", "chokepoint-simulate"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "chokepoint.simulate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn gateway(&mut self, start: u64) {
        let res = self.res("api-gateway");
        let id = self.id();
        let t = start + self.rng.ms(0.3, 0.3);
        let t = self.internal(res, &id, "authenticate", t, 2.0);
        let checkout = self.rng.chance(0.7);
        let (route, method, path, callee): (&str, &str, &str, Handler) = if checkout {
            ("/checkout", "POST", "/orders", Shop::order_create)
        } else {
            ("/orders/{id}", "GET", "/orders/4711", Shop::order_lookup)
        };
        let r = self.http(res, &id, method, "order-service", path, t, callee);
        let end = r.end + self.rng.ms(0.2, 0.3);
        let status = if r.error { 502 } else { 200 };
        self.emit(
            res,
            id,
            &[],
            &format!("{method} {route}"),
            SpanKind::Server,
            start,
            end,
            vec![
                s("http.request.method", method),
                s("http.route", route),
                i("http.response.status_code", status),
                s("url.scheme", "https"),
            ],
            r.error,
        );
    }

    /// A synchronous HTTP call from `caller` to an instrumented service.
    #[allow(clippy::too_many_arguments)]
    fn http(
        &mut self,
        caller: Res,
        parent: &[u8],
        method: &str,
        service: &'static str,
        path: &str,
        start: u64,
        serve: Handler,
    ) -> Reply {
        let id = self.id();
        let refused = service == "saga-orchestrator" && self.down(Down::Orchestrator);
        let net_out = self.rng.ms(0.4, 0.4);
        let reply = if refused {
            // Nothing answers: the connection is refused after a short wait; no server span.
            Reply {
                end: start + self.rng.ms(1.0, 0.3),
                error: true,
            }
        } else {
            let served = serve(self, &id, start + net_out);
            Reply {
                end: served.end + self.rng.ms(0.4, 0.4),
                error: served.error,
            }
        };
        let status = if reply.error { 503 } else { 200 };
        self.emit(
            caller,
            id,
            parent,
            method,
            SpanKind::Client,
            start,
            reply.end,
            vec![
                s("http.request.method", method),
                s("server.address", service),
                i("server.port", 8080),
                s("url.full", &format!("http://{service}:8080{path}")),
                i("http.response.status_code", status),
            ],
            reply.error,
        );
        reply
    }

    /// A server span of `service` around `body`.
    fn serve(
        &mut self,
        service: &'static str,
        parent: &[u8],
        start: u64,
        route: &str,
        method: &str,
        body: impl FnOnce(&mut Shop, Res, &[u8], u64) -> Reply,
    ) -> Reply {
        let res = self.res(service);
        let id = self.id();
        let t = start + self.rng.ms(0.2, 0.3);
        let r = body(self, res, &id, t);
        let end = r.end + self.rng.ms(0.2, 0.3);
        self.emit(
            res,
            id,
            parent,
            &format!("{method} {route}"),
            SpanKind::Server,
            start,
            end,
            vec![
                s("http.request.method", method),
                s("http.route", route),
                i("http.response.status_code", if r.error { 500 } else { 200 }),
            ],
            r.error,
        );
        Reply {
            end,
            error: r.error,
        }
    }

    /// A PostgreSQL call. A failed call against a replicated database is retried on another
    /// address and succeeds: the caller absorbs the error.
    #[allow(clippy::too_many_arguments)]
    fn db(
        &mut self,
        caller: Res,
        parent: &[u8],
        start: u64,
        which: &'static str,
        op: &str,
        table: &str,
        median_ms: f64,
    ) -> Reply {
        let (addrs, outage) = match which {
            "orders" => (self.p.orders_db, self.down(Down::OrdersDb)),
            _ => (self.p.saga_db, false),
        };
        let mut t = start;
        let first = self.rng.below(addrs.len());
        for attempt in 0..2 {
            let addr = addrs[(first + attempt) % addrs.len()];
            let fails = outage || self.rng.chance(0.004);
            let dur = if outage {
                self.rng.ms(3.0, 0.3)
            } else {
                self.rng.ms(median_ms, 0.5)
            };
            let id = self.id();
            self.emit(
                caller,
                id,
                parent,
                &format!("{op} {which}.{table}"),
                SpanKind::Client,
                t,
                t + dur,
                vec![
                    s("db.system.name", "postgresql"),
                    s("db.system", "postgresql"),
                    s("db.namespace", which),
                    s("db.operation.name", op),
                    s("db.collection.name", table),
                    s("server.address", addr),
                    i("server.port", 5432),
                ],
                fails,
            );
            t += dur;
            if !fails {
                return Reply {
                    end: t,
                    error: false,
                };
            }
            if addrs.len() < 2 {
                return Reply {
                    end: t,
                    error: true,
                };
            }
        }
        Reply {
            end: t,
            error: true,
        }
    }

    fn order_lookup(&mut self, parent: &[u8], start: u64) -> Reply {
        self.serve(
            "order-service",
            parent,
            start,
            "/orders/{id}",
            "GET",
            |sh, res, id, t| {
                let t = t + sh.rng.ms(0.5, 0.4);
                sh.db(res, id, t, "orders", "SELECT", "orders", 1.2)
            },
        )
    }

    fn order_create(&mut self, parent: &[u8], start: u64) -> Reply {
        self.serve(
            "order-service",
            parent,
            start,
            "/orders",
            "POST",
            |sh, res, id, t| {
                let t = sh.internal(res, id, "validate cart", t, 3.0);
                let r = sh.db(res, id, t, "orders", "INSERT", "orders", 1.5);
                if r.error {
                    return r;
                }
                let r = sh.http(
                    res,
                    id,
                    "POST",
                    "saga-orchestrator",
                    "/sagas",
                    r.end,
                    Shop::saga,
                );
                let failed = r.error;
                let r2 = sh.db(res, id, r.end, "orders", "UPDATE", "orders", 1.2);
                Reply {
                    end: r2.end,
                    error: failed || r2.error,
                }
            },
        )
    }

    fn saga(&mut self, parent: &[u8], start: u64) -> Reply {
        self.serve(
            "saga-orchestrator",
            parent,
            start,
            "/sagas",
            "POST",
            |sh, res, id, t| {
                let m = sh.p.saga_db_median_ms;
                let t = sh.internal(res, id, "plan saga", t, 1.0);
                let mut t = sh.db(res, id, t, "saga", "INSERT", "saga_state", m).end;
                let pay = sh.http(
                    res,
                    id,
                    "POST",
                    "payment-service",
                    "/payments",
                    t,
                    Shop::payment,
                );
                t = sh
                    .db(res, id, pay.end, "saga", "UPDATE", "saga_state", m)
                    .end;
                if pay.error {
                    return Reply {
                        end: t,
                        error: true,
                    };
                }
                let ship = sh.http(
                    res,
                    id,
                    "POST",
                    "shipping-service",
                    "/shipments",
                    t,
                    Shop::shipping,
                );
                t = sh
                    .db(res, id, ship.end, "saga", "UPDATE", "saga_state", m)
                    .end;
                Reply {
                    end: t,
                    error: ship.error,
                }
            },
        )
    }

    fn payment(&mut self, parent: &[u8], start: u64) -> Reply {
        self.serve(
            "payment-service",
            parent,
            start,
            "/payments",
            "POST",
            |sh, res, id, t| {
                let r = sh.db(res, id, t, "orders", "SELECT", "accounts", 1.0);
                if r.error {
                    return r;
                }
                let t = sh.internal(res, id, "fraud check", r.end, 3.0);
                let bank = sh.bank(res, id, t);
                if bank.error {
                    return bank;
                }
                let t = bank.end + sh.rng.ms(0.3, 0.3);
                sh.publish(res, id, t)
            },
        )
    }

    /// The bank's API: uninstrumented, seen only from payment's client span. A failed call is
    /// retried once on another address.
    fn bank(&mut self, caller: Res, parent: &[u8], start: u64) -> Reply {
        let mut t = start;
        let ips = self.p.bank_ips;
        let first = self.rng.below(ips.len());
        for attempt in 0..2 {
            let fails = self.rng.chance(0.005);
            let dur = self.rng.ms(self.p.bank_median_ms, 0.35);
            let id = self.id();
            self.emit(
                caller,
                id,
                parent,
                "POST",
                SpanKind::Client,
                t,
                t + dur,
                vec![
                    s("http.request.method", "POST"),
                    s("server.address", "api.bank.example"),
                    i("server.port", 443),
                    s("url.full", "https://api.bank.example/v1/charges"),
                    s("network.peer.address", ips[(first + attempt) % ips.len()]),
                    i("http.response.status_code", if fails { 503 } else { 201 }),
                ],
                fails,
            );
            t += dur;
            if !fails {
                return Reply {
                    end: t,
                    error: false,
                };
            }
        }
        Reply {
            end: t,
            error: true,
        }
    }

    /// Publishes `payment.completed` to Kafka; email-service consumes it later.
    fn publish(&mut self, caller: Res, parent: &[u8], start: u64) -> Reply {
        let id = self.id();
        let down = self.down(Down::Kafka);
        let broker = self.p.kafka[self.rng.below(self.p.kafka.len())];
        let dur = if down {
            self.rng.ms(30.0, 0.2)
        } else {
            self.rng.ms(2.0, 0.4)
        };
        let end = start + dur;
        if !down {
            let queue = self
                .rng
                .lognormal((self.p.email_queue_ms)(self.progress), 0.25);
            self.email(&id, end + (queue * 1e6) as u64);
        }
        self.emit(
            caller,
            id,
            parent,
            "publish payments",
            SpanKind::Producer,
            start,
            end,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "send"),
                s("messaging.destination.name", "payments"),
                s("server.address", broker),
                i("server.port", 9092),
            ],
            down,
        );
        Reply { end, error: down }
    }

    fn email(&mut self, producer: &[u8], start: u64) {
        let res = self.res("email-service");
        let id = self.id();
        let t = start + self.rng.ms(0.5, 0.3);
        let render = self.id();
        let t2 = t + self.rng.ms(4.0, 0.3);
        self.emit(
            res,
            render,
            &id,
            "render confirmation",
            SpanKind::Internal,
            t,
            t2,
            vec![],
            false,
        );
        let smtp = self.id();
        let t3 = t2 + self.rng.ms(60.0, 0.3);
        self.emit(
            res,
            smtp,
            &id,
            "smtp send",
            SpanKind::Client,
            t2,
            t3,
            vec![
                s("server.address", "smtp.mail.example"),
                i("server.port", 587),
                s("network.peer.address", "198.51.100.25"),
            ],
            false,
        );
        let end = t3 + self.rng.ms(0.3, 0.3);
        self.emit(
            res,
            id,
            producer,
            "process payments",
            SpanKind::Consumer,
            start,
            end,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "process"),
                s("messaging.destination.name", "payments"),
                s("messaging.consumer.group.name", "email"),
            ],
            false,
        );
    }

    /// An internal span of `median_ms` (log-normal) starting at `start`; returns its end.
    fn internal(&mut self, res: Res, parent: &[u8], name: &str, start: u64, median_ms: f64) -> u64 {
        let id = self.id();
        let end = start + self.rng.ms(median_ms, 0.4);
        self.emit(
            res,
            id,
            parent,
            name,
            SpanKind::Internal,
            start,
            end,
            vec![],
            false,
        );
        end
    }

    fn shipping(&mut self, parent: &[u8], start: u64) -> Reply {
        self.serve(
            "shipping-service",
            parent,
            start,
            "/shipments",
            "POST",
            |sh, res, id, t| {
                let t2 = sh.internal(res, id, "compute route", t, 5.0);
                sh.db(res, id, t2, "orders", "INSERT", "shipments", 1.5)
            },
        )
    }
}
