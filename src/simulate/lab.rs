//! Small systems other than the shop, each built to show one lesson of reading traces, with
//! other names and the conventions of other instrumentations (the Python SDK's old
//! `db.statement` / `net.peer.name`, Java's `db.system` with `server.address`, Redis commands
//! as span names). Deterministic per seed, like the shop.
//!
//! | scenario | what it shows |
//! |---|---|
//! | `two-databases` | two PostgreSQL servers, no database names: two nodes, one replicated |
//! | `broker-cluster` | a three-broker Kafka cluster: one node with three instances |
//! | `redis-cache-and-queue` | one Redis as cache and job queue: one node; the worker's `BRPOP` is background |
//! | `background-poller` | a poller and a blocking stream reader beside a healthy request path |
//! | `replica-lost` | a database loses one of its two replicas a third of the way in |
//! | `all-single-instance` | every service runs one instance: ranked by what their loss takes down |
//! | `balanced-chain` | a healthy chain of four services of about equal weight |
//! | `starved-caller` | a caller whose CPU is starved: every call it makes waits, its callees are fine |
//! | `saturating-callee` | load doubles and more; one callee's latency climbs with it |
//! | `absorbed-failures` | a recommender fails one call in five; its caller falls back |
//! | `worker-slots` | load ramps past what `inventory` can do (2 instances × 2 workers, 180 ms a request): callers queue |
//! | `worker-slots-light` | the same system at 30% of its capacity |
//! | `slow-consumer` | 20 jobs a second arrive; the one `thumbnailer` completes 13 |
//! | `many-services` | 300 services in twelve domains: what a large map asks of the dashboard ([`wide`]) |
//! | `quotes-healthy` / `quotes-wrong-answers` | a quote flow, healthy, then with a bad release that gives up midway: no status anywhere, only calls that vanish |
//!
//! The systems of SPOF harm and failing dependencies are in [`harm`].

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

use super::{Rng, SimConfig};

mod harm;
pub mod wide;
use crate::ingest::otlp_json::key_value;

/// The lab's systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Lab {
    TwoDatabases,
    BrokerCluster,
    RedisCacheAndQueue,
    BackgroundPoller,
    ReplicaLost,
    AllSingleInstance,
    BalancedChain,
    StarvedCaller,
    SaturatingCallee,
    AbsorbedFailures,
    QuotesHealthy,
    QuotesWrongAnswers,
    TokenCheck,
    SyncBroker,
    SharedMysql,
    DegradedForecast,
    ShortDominant,
    RefusedConnections,
    WorkerSlots,
    WorkerSlotsLight,
    SlowConsumer,
    ManyServices,
}

impl Lab {
    pub const ALL: [Lab; 22] = [
        Lab::TwoDatabases,
        Lab::BrokerCluster,
        Lab::RedisCacheAndQueue,
        Lab::BackgroundPoller,
        Lab::ReplicaLost,
        Lab::AllSingleInstance,
        Lab::BalancedChain,
        Lab::StarvedCaller,
        Lab::SaturatingCallee,
        Lab::AbsorbedFailures,
        Lab::QuotesHealthy,
        Lab::QuotesWrongAnswers,
        Lab::TokenCheck,
        Lab::SyncBroker,
        Lab::SharedMysql,
        Lab::DegradedForecast,
        Lab::ShortDominant,
        Lab::RefusedConnections,
        Lab::WorkerSlots,
        Lab::WorkerSlotsLight,
        Lab::SlowConsumer,
        Lab::ManyServices,
    ];

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether `testdata/` holds its file (`lab-NAME.otlp.jsonl.gz`): all but the 300-service
    /// system, whose 66,000 spans the browser tests generate when they need them.
    pub fn checked_in(self) -> bool {
        self != Lab::ManyServices
    }

    /// Traces its checked-in file has (`simulate` without `--traces`): the capacity systems
    /// need minutes of span time, the others 300 traces.
    pub fn default_traces(self) -> usize {
        match self {
            Lab::WorkerSlots => 4000,
            Lab::WorkerSlotsLight => 2000,
            Lab::SlowConsumer => 1600,
            Lab::ManyServices => 2000,
            _ => 300,
        }
    }

    /// Arrivals are a Poisson process (exponential gaps), as independent users make them:
    /// queueing depends on it, so the capacity systems use it. The others keep even gaps.
    fn poisson(self) -> bool {
        matches!(
            self,
            Lab::WorkerSlots | Lab::WorkerSlotsLight | Lab::SlowConsumer
        )
    }
}

/// Workers of the lab's fixed-capacity processes: when each of a process's workers is next
/// free (ns), so a request that finds them all busy waits for the first to finish.
#[derive(Default)]
struct Workers(BTreeMap<At, Vec<u64>>);

impl Workers {
    /// A request for `at` (one of `k` workers) arriving at `arrive` and needing `service_ns`:
    /// when it starts and ends.
    fn serve(&mut self, at: At, k: usize, arrive: u64, service_ns: u64) -> (u64, u64) {
        let free = self.0.entry(at).or_insert_with(|| vec![0; k.max(1)]);
        let (slot, first) = free
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
            .unwrap_or((0, 0));
        let start = arrive.max(first);
        let end = start + service_ns;
        if let Some(f) = free.get_mut(slot) {
            *f = end;
        }
        (start, end)
    }
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

/// A process: a service and which of its instances.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct At {
    svc: &'static str,
    inst: usize,
}

/// The outcome of a piece of work: when it ended and whether it failed.
#[derive(Clone, Copy, Debug)]
struct Done {
    end: u64,
    error: bool,
}

/// Builds one trace's spans, grouped by the process that reports them.
struct Tb<'a> {
    rng: &'a mut Rng,
    trace_id: Vec<u8>,
    spans: BTreeMap<At, Vec<Span>>,
    workers: &'a mut Workers,
}

impl Tb<'_> {
    fn id(&mut self) -> Vec<u8> {
        (self.rng.next_u64() | 1).to_be_bytes().to_vec()
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        at: At,
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
            end_time_unix_nano: end.max(start),
            attributes,
            status: error.then(|| Status {
                code: StatusCode::Error as i32,
                message: "failed".into(),
            }),
            ..Default::default()
        };
        self.spans.entry(at).or_default().push(span);
    }

    /// A server span of `at` around `body`, which gets the span's id and its start.
    fn server(
        &mut self,
        at: At,
        parent: &[u8],
        route: &str,
        start: u64,
        body: impl FnOnce(&mut Self, &[u8], u64) -> Done,
    ) -> Done {
        let id = self.id();
        let t = start + self.rng.ms(0.2, 0.3);
        let r = body(self, &id, t);
        let end = r.end + self.rng.ms(0.2, 0.3);
        let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
        self.emit(
            at,
            id,
            parent,
            route,
            SpanKind::Server,
            start,
            end,
            vec![
                s("http.method", method),
                s("http.route", path),
                i("http.status_code", if r.error { 500 } else { 200 }),
            ],
            r.error,
        );
        Done {
            end,
            error: r.error,
        }
    }

    /// An HTTP call from `from` to the instrumented `to`; the server starts after the
    /// network and `wait_ns` more (a queue, a starved process on either side).
    #[allow(clippy::too_many_arguments)]
    fn http(
        &mut self,
        from: At,
        parent: &[u8],
        to: At,
        route: &str,
        start: u64,
        wait_ns: u64,
        body: impl FnOnce(&mut Self, &[u8], u64) -> Done,
    ) -> Done {
        let id = self.id();
        let net = self.rng.ms(0.3, 0.3);
        let served = self.server(to, &id, route, start + net + wait_ns, body);
        let end = served.end + self.rng.ms(0.3, 0.3);
        let (method, _) = route.split_once(' ').unwrap_or(("GET", route));
        self.emit(
            from,
            id,
            parent,
            method,
            SpanKind::Client,
            start,
            end,
            vec![
                s("http.method", method),
                s("net.peer.name", to.svc),
                i("net.peer.port", 8000),
                i("http.status_code", if served.error { 500 } else { 200 }),
            ],
            served.error,
        );
        Done {
            end,
            error: served.error,
        }
    }

    /// A database call as Python's instrumentations report it: the statement's verb as the
    /// span name, `db.statement`, `net.peer.name` and `net.peer.port`, `db.name` if given.
    #[allow(clippy::too_many_arguments)]
    fn db(
        &mut self,
        from: At,
        parent: &[u8],
        system: &str,
        name: Option<&str>,
        address: &str,
        statement: &str,
        start: u64,
        ms: f64,
        error: bool,
    ) -> Done {
        let id = self.id();
        let end = start + self.rng.ms(ms, 0.4);
        let (host, port) = address.split_once(':').unwrap_or((address, "0"));
        let verb = statement.split_whitespace().next().unwrap_or(statement);
        let mut attrs = vec![
            s("db.system", system),
            s("db.statement", statement),
            s("net.peer.name", host),
            i("net.peer.port", port.parse().unwrap_or(0)),
        ];
        if let Some(n) = name {
            attrs.push(s("db.name", n));
        }
        if system == "redis" {
            attrs.push(i("db.redis.database_index", 0));
        }
        self.emit(
            from,
            id,
            parent,
            verb,
            SpanKind::Client,
            start,
            end,
            attrs,
            error,
        );
        Done { end, error }
    }

    /// A Kafka message: `producer` publishes it (span `pid`, under `parent`, from `start` to
    /// the broker's acknowledgement at `end`) to `destination` on `broker`; `consumer`, of
    /// `group`, picks it up `queue_ms` later and does `work` for about `ms`.
    #[allow(clippy::too_many_arguments)]
    fn kafka_message(
        &mut self,
        producer: At,
        parent: &[u8],
        pid: Vec<u8>,
        (start, end): (u64, u64),
        (host, port): (&str, i64),
        destination: &str,
        (consumer, group): (At, &str),
        queue_ms: f64,
        (work, ms): (&str, f64),
    ) {
        let cid = self.id();
        let c0 = end + self.rng.ms(queue_ms, 0.4);
        let c1 = self.work(consumer, &cid, work, c0 + 100_000, ms);
        self.emit(
            consumer,
            cid,
            &pid,
            &format!("{destination} process"),
            SpanKind::Consumer,
            c0,
            c1 + 50_000,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation", "process"),
                s("messaging.destination.name", destination),
                s("messaging.kafka.consumer.group", group),
            ],
            false,
        );
        self.emit(
            producer,
            pid,
            parent,
            &format!("{destination} publish"),
            SpanKind::Producer,
            start,
            end,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation", "publish"),
                s("messaging.destination.name", destination),
                s("server.address", host),
                i("server.port", port),
            ],
            false,
        );
    }

    fn work(&mut self, at: At, parent: &[u8], name: &str, start: u64, ms: f64) -> u64 {
        let id = self.id();
        let end = start + self.rng.ms(ms, 0.4);
        self.emit(
            at,
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

    fn request(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self
                .spans
                .into_iter()
                .map(|(at, spans)| resource_spans(at, spans))
                .collect(),
        }
    }
}

fn resource_spans(at: At, spans: Vec<Span>) -> ResourceSpans {
    let pod = format!(
        "{}-{}",
        at.svc,
        ["7d9f4", "b2c81", "e5a07", "41f3d"][at.inst % 4]
    );
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                s("service.name", at.svc),
                s("service.instance.id", &pod),
                s("host.name", &pod),
                s("telemetry.sdk.language", "python"),
                s("telemetry.sdk.name", "opentelemetry"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "chokepoint.simulate.lab".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Generates a lab system's traces: one OTLP request per trace, in start order. Background
/// traces (pollers, workers) are interleaved with the entry requests, each counting as one.
pub struct Generator {
    lab: Lab,
    rng: Rng,
    cfg: SimConfig,
    /// Where the next trace starts (ns since the first), for labs whose rate changes.
    clock_ns: u64,
    workers: Workers,
}

impl Generator {
    pub fn new(lab: Lab, cfg: &SimConfig) -> Generator {
        Generator {
            lab,
            rng: Rng::new(cfg.seed),
            cfg: cfg.clone(),
            clock_ns: 0,
            workers: Workers::default(),
        }
    }

    /// Requests per second at `progress`: the configured rate, except where a lab's load
    /// changes over the run.
    fn rate(&self, progress: f64) -> f64 {
        let r = self.cfg.rate_per_s.max(1e-3);
        match self.lab {
            // From a fifth of the rate to the full rate: the callee saturates as it rises.
            Lab::SaturatingCallee => r * (0.2 + 0.8 * progress),
            // From 4 to 30 a second (at the default rate of 10): past the 22 `inventory` does.
            Lab::WorkerSlots => r * (0.4 + 2.6 * progress),
            // 30% of that capacity.
            Lab::WorkerSlotsLight => r * 0.667,
            Lab::SlowConsumer => r * 2.0,
            _ => r,
        }
    }

    pub fn trace(&mut self, index: usize) -> ExportTraceServiceRequest {
        let progress = index as f64 / self.cfg.traces.max(1) as f64;
        let gap = (1e9 / self.rate(progress)) as u64;
        let start = if self.lab.poisson() {
            let gap = -(1.0 - self.rng.f64()).ln() * 1e9 / self.rate(progress);
            self.clock_ns += gap as u64;
            self.cfg.start_unix_ns + self.clock_ns
        } else {
            let start = self.cfg.start_unix_ns
                + self.clock_ns
                + self.rng.below(gap as usize / 2 + 1) as u64;
            self.clock_ns += gap;
            start
        };
        let load = self.rate(progress) / self.cfg.rate_per_s.max(1e-3);
        let mut trace_id = (self.rng.next_u64() | 1).to_be_bytes().to_vec();
        trace_id.extend((self.rng.next_u64() | 1).to_be_bytes());
        let lab = self.lab;
        let mut tb = Tb {
            rng: &mut self.rng,
            trace_id,
            spans: BTreeMap::new(),
            workers: &mut self.workers,
        };
        match lab {
            Lab::TwoDatabases => two_databases(&mut tb, start),
            Lab::BrokerCluster => broker_cluster(&mut tb, start),
            Lab::RedisCacheAndQueue => redis_cache_and_queue(&mut tb, index, start),
            Lab::BackgroundPoller => background_poller(&mut tb, index, start),
            Lab::ReplicaLost => replica_lost(&mut tb, progress, start),
            Lab::AllSingleInstance => all_single_instance(&mut tb, start),
            Lab::BalancedChain => balanced_chain(&mut tb, start),
            Lab::StarvedCaller => starved_caller(&mut tb, start),
            Lab::SaturatingCallee => saturating_callee(&mut tb, load, start),
            Lab::AbsorbedFailures => absorbed_failures(&mut tb, start),
            Lab::QuotesHealthy => quotes(&mut tb, false, start),
            Lab::QuotesWrongAnswers => quotes(&mut tb, true, start),
            Lab::TokenCheck => harm::token_check(&mut tb, start),
            Lab::SyncBroker => harm::sync_broker(&mut tb, start),
            Lab::SharedMysql => harm::shared_mysql(&mut tb, start),
            Lab::DegradedForecast => harm::degraded_forecast(&mut tb, start),
            Lab::ShortDominant => harm::short_dominant(&mut tb, start),
            Lab::RefusedConnections => harm::refused_connections(&mut tb, progress, start),
            Lab::WorkerSlots | Lab::WorkerSlotsLight => worker_slots(&mut tb, start),
            Lab::SlowConsumer => slow_consumer(&mut tb, start),
            Lab::ManyServices => wide::many_services(&mut tb, start),
        }
        tb.request()
    }
}

fn pick(tb: &mut Tb<'_>, svc: &'static str, instances: usize) -> At {
    At {
        svc,
        inst: tb.rng.below(instances),
    }
}

/// A library: `catalog` reads books from `catalog-pg`, `lending` writes loans to the
/// replicated `loans-pg-1`/`-2`. Neither names its database.
fn two_databases(tb: &mut Tb<'_>, start: u64) {
    let web = pick(tb, "library-web", 2);
    if tb.rng.chance(0.6) {
        tb.server(web, &[], "GET /books/<id>", start, |tb, id, t| {
            let catalog = pick(tb, "catalog", 2);
            tb.http(web, id, catalog, "GET /books/<id>", t, 0, |tb, id, t| {
                tb.db(
                    catalog,
                    id,
                    "postgresql",
                    None,
                    "catalog-pg:5432",
                    "SELECT id, title, author FROM books WHERE id = %s",
                    t,
                    1.5,
                    false,
                )
            })
        });
    } else {
        tb.server(web, &[], "POST /loans", start, |tb, id, t| {
            let lending = pick(tb, "lending", 2);
            tb.http(web, id, lending, "POST /loans", t, 0, |tb, id, t| {
                let replica = ["loans-pg-1:5432", "loans-pg-2:5432"][tb.rng.below(2)];
                let r = tb.db(
                    lending,
                    id,
                    "postgresql",
                    None,
                    replica,
                    "SELECT count(*) FROM loans WHERE member_id = %s",
                    t,
                    1.0,
                    false,
                );
                let replica = ["loans-pg-1:5432", "loans-pg-2:5432"][tb.rng.below(2)];
                tb.db(
                    lending,
                    id,
                    "postgresql",
                    None,
                    replica,
                    "INSERT INTO loans (member_id, book_id) VALUES (%s, %s)",
                    r.end,
                    2.0,
                    false,
                )
            })
        });
    }
}

/// Telemetry ingest: `collector-api` publishes each event to a three-broker Kafka cluster
/// (by key hash); `indexer` consumes and indexes it.
fn broker_cluster(tb: &mut Tb<'_>, start: u64) {
    let api = pick(tb, "collector-api", 2);
    tb.server(api, &[], "POST /v1/events", start, |tb, id, t| {
        let t = tb.work(api, id, "validate event", t, 0.8);
        let pid = tb.id();
        let broker = ["broker-a:9092", "broker-b:9092", "broker-c:9092"][tb.rng.below(3)];
        let end = t + tb.rng.ms(1.5, 0.3);
        let (host, port) = broker.split_once(':').unwrap_or((broker, "9092"));
        // The consumer picks it up after a short queue delay.
        let indexer = pick(tb, "indexer", 2);
        tb.kafka_message(
            api,
            id,
            pid,
            (t, end),
            (host, port.parse().unwrap_or(9092)),
            "events",
            (indexer, "indexer"),
            8.0,
            ("index document", 6.0),
        );
        Done {
            end: end + 100_000,
            error: false,
        }
    });
}

/// A notes app: `notes-web` caches in Redis (`cache:6379`) in front of PostgreSQL and
/// enqueues render jobs on the same Redis; `notes-worker` blocks on `BRPOP` for them (a
/// trace of its own each time) and renders each job in another.
fn redis_cache_and_queue(tb: &mut Tb<'_>, index: usize, start: u64) {
    let worker = At {
        svc: "notes-worker",
        inst: 0,
    };
    match index % 4 {
        // The worker's blocking pop: mostly waiting for work.
        3 => {
            let id = tb.id();
            let end = start + tb.rng.ms(900.0, 0.3);
            tb.emit(
                worker,
                id,
                &[],
                "BRPOP",
                SpanKind::Client,
                start,
                end,
                vec![
                    s("db.system", "redis"),
                    s("db.statement", "BRPOP render-jobs 5"),
                    s("net.peer.name", "cache"),
                    i("net.peer.port", 6379),
                    i("db.redis.database_index", 0),
                ],
                false,
            );
        }
        // Rendering a job.
        2 => {
            let id = tb.id();
            let t = start + tb.rng.ms(0.1, 0.3);
            let r = tb.db(
                worker,
                &id,
                "postgresql",
                Some("notes"),
                "notes-db:5432",
                "SELECT body FROM notes WHERE id = %s",
                t,
                1.2,
                false,
            );
            let t = tb.work(worker, &id, "render markdown", r.end, 12.0);
            let r = tb.db(
                worker,
                &id,
                "redis",
                None,
                "cache:6379",
                "SET note:? ?",
                t,
                0.3,
                false,
            );
            tb.emit(
                worker,
                id,
                &[],
                "render_note",
                SpanKind::Internal,
                start,
                r.end + 50_000,
                vec![s("code.function", "render_note")],
                false,
            );
        }
        // A user reading or writing a note.
        _ => {
            let web = pick(tb, "notes-web", 2);
            if tb.rng.chance(0.7) {
                tb.server(web, &[], "GET /notes/<id>", start, |tb, id, t| {
                    let hit = tb.db(
                        web,
                        id,
                        "redis",
                        None,
                        "cache:6379",
                        "GET note:?",
                        t,
                        0.3,
                        false,
                    );
                    if tb.rng.chance(0.8) {
                        return hit;
                    }
                    let r = tb.db(
                        web,
                        id,
                        "postgresql",
                        Some("notes"),
                        "notes-db:5432",
                        "SELECT id, body FROM notes WHERE id = %s",
                        hit.end,
                        1.5,
                        false,
                    );
                    tb.db(
                        web,
                        id,
                        "redis",
                        None,
                        "cache:6379",
                        "SET note:? ?",
                        r.end,
                        0.3,
                        false,
                    )
                });
            } else {
                tb.server(web, &[], "POST /notes", start, |tb, id, t| {
                    let r = tb.db(
                        web,
                        id,
                        "postgresql",
                        Some("notes"),
                        "notes-db:5432",
                        "INSERT INTO notes (body) VALUES (%s) RETURNING id",
                        t,
                        2.5,
                        false,
                    );
                    tb.db(
                        web,
                        id,
                        "redis",
                        None,
                        "cache:6379",
                        "LPUSH render-jobs ?",
                        r.end,
                        0.3,
                        false,
                    )
                });
            }
        }
    }
}

/// Invoicing: `invoices-api` answers users from a replicated database; `reminder-poller`
/// sweeps due invoices every few seconds (a cron-like root span) and blocks on a Redis
/// stream (`XREAD BLOCK`) for payment events, a long span of its own each time.
fn background_poller(tb: &mut Tb<'_>, index: usize, start: u64) {
    let poller = At {
        svc: "reminder-poller",
        inst: 0,
    };
    match index % 5 {
        4 => {
            let id = tb.id();
            let end = start + tb.rng.ms(2000.0, 0.2);
            tb.emit(
                poller,
                id,
                &[],
                "XREAD",
                SpanKind::Client,
                start,
                end,
                vec![
                    s("db.system", "redis"),
                    s(
                        "db.statement",
                        "XREAD COUNT 10 BLOCK 2000 STREAMS payments $",
                    ),
                    s("net.peer.name", "events-redis"),
                    i("net.peer.port", 6379),
                ],
                false,
            );
        }
        3 => {
            let id = tb.id();
            let t = start + tb.rng.ms(0.1, 0.3);
            let r = tb.db(
                poller,
                &id,
                "postgresql",
                Some("invoices"),
                "invoices-db-1:5432",
                "SELECT id FROM invoices WHERE due < now() FOR UPDATE SKIP LOCKED",
                t,
                40.0,
                false,
            );
            tb.emit(
                poller,
                id,
                &[],
                "sweep due invoices",
                SpanKind::Internal,
                start,
                r.end + 100_000,
                vec![],
                false,
            );
        }
        _ => {
            let api = pick(tb, "invoices-api", 2);
            tb.server(api, &[], "GET /invoices/<id>", start, |tb, id, t| {
                let t = tb.work(api, id, "authorize", t, 1.0);
                let replica = ["invoices-db-1:5432", "invoices-db-2:5432"][tb.rng.below(2)];
                let r = tb.db(
                    api,
                    id,
                    "postgresql",
                    Some("invoices"),
                    replica,
                    "SELECT * FROM invoices WHERE id = %s",
                    t,
                    1.5,
                    false,
                );
                let end = tb.work(api, id, "render json", r.end, 1.0);
                Done { end, error: false }
            });
        }
    }
}

/// Inventory: `stock` reads from `stock-db-1`/`-2` (database `stock`); a third of the way
/// in, `stock-db-2` is gone and every call goes to `stock-db-1`.
fn replica_lost(tb: &mut Tb<'_>, progress: f64, start: u64) {
    let front = pick(tb, "storefront", 2);
    tb.server(front, &[], "GET /products/<sku>", start, |tb, id, t| {
        let stock = pick(tb, "stock", 3);
        tb.http(front, id, stock, "GET /stock/<sku>", t, 0, |tb, id, t| {
            let replicas: &[&str] = if progress < 0.33 {
                &["stock-db-1:5432", "stock-db-2:5432"]
            } else {
                &["stock-db-1:5432"]
            };
            let replica = replicas[tb.rng.below(replicas.len())];
            tb.db(
                stock,
                id,
                "postgresql",
                Some("stock"),
                replica,
                "SELECT quantity FROM stock WHERE sku = %s",
                t,
                1.2,
                false,
            )
        })
    });
}

/// A news site where every service runs one instance: `edge` → `session` and `feed`;
/// `feed` → `ranker` and `articles`; `articles` → its database.
fn all_single_instance(tb: &mut Tb<'_>, start: u64) {
    let one = |svc| At { svc, inst: 0 };
    let edge = one("edge");
    tb.server(edge, &[], "GET /front-page", start, |tb, id, t| {
        let s = tb.http(
            edge,
            id,
            one("session"),
            "GET /session",
            t,
            0,
            |tb, id, t| {
                let end = tb.work(one("session"), id, "verify token", t, 0.8);
                Done { end, error: false }
            },
        );
        tb.http(edge, id, one("feed"), "GET /feed", s.end, 0, |tb, id, t| {
            let feed = one("feed");
            let r = tb.http(feed, id, one("ranker"), "POST /rank", t, 0, |tb, id, t| {
                let end = tb.work(one("ranker"), id, "score candidates", t, 6.0);
                Done { end, error: false }
            });
            tb.http(
                feed,
                id,
                one("articles"),
                "GET /articles",
                r.end,
                0,
                |tb, id, t| {
                    tb.db(
                        one("articles"),
                        id,
                        "mysql",
                        Some("news"),
                        "news-db:3306",
                        "SELECT id, title FROM articles WHERE id IN (%s)",
                        t,
                        2.0,
                        false,
                    )
                },
            )
        })
    });
}

/// A healthy, fast, balanced chain: `portal` → `accounts` → `billing` → `ledger`, each doing
/// about the same work. Nothing in it is a problem.
fn balanced_chain(tb: &mut Tb<'_>, start: u64) {
    let chain = ["portal", "accounts", "billing", "ledger"];
    fn hop(tb: &mut Tb<'_>, chain: &[&'static str], parent: &[u8], t: u64) -> Done {
        let at = At {
            svc: chain[0],
            inst: tb.rng.below(2),
        };
        let route = format!("GET /{}", chain[0]);
        tb.server(at, parent, &route, t, |tb, id, t| {
            let t = tb.work(at, id, "handle", t, 3.0);
            match chain.get(1..).filter(|rest| !rest.is_empty()) {
                Some(rest) => {
                    let next = At {
                        svc: rest[0],
                        inst: tb.rng.below(2),
                    };
                    let cid = tb.id();
                    let net = tb.rng.ms(0.3, 0.3);
                    let r = hop(tb, rest, &cid, t + net);
                    let end = r.end + tb.rng.ms(0.3, 0.3);
                    tb.emit(
                        at,
                        cid,
                        id,
                        "GET",
                        SpanKind::Client,
                        t,
                        end,
                        vec![s("http.method", "GET"), s("net.peer.name", next.svc)],
                        false,
                    );
                    Done { end, error: false }
                }
                None => Done {
                    end: t,
                    error: false,
                },
            }
        })
    }
    hop(tb, &chain, &[], start);
}

/// `front`'s CPU is starved: each call it makes waits 30–60 ms in front before the request
/// leaves and after the answer arrives, while `users`, `orders` and `prices` answer in a few
/// milliseconds, as they do for `batch`, their other caller.
fn starved_caller(tb: &mut Tb<'_>, start: u64) {
    let callees = ["users", "orders", "prices"];
    if tb.rng.chance(0.3) {
        // A healthy caller of the same callees: they are fine.
        let batch = pick(tb, "batch", 2);
        tb.server(batch, &[], "POST /reconcile", start, |tb, id, mut t| {
            for svc in callees {
                let to = pick(tb, svc, 2);
                let r = tb.http(batch, id, to, "GET /lookup", t, 0, |tb, id, t| {
                    let end = tb.work(to, id, "query", t, 3.0);
                    Done { end, error: false }
                });
                t = r.end;
            }
            Done {
                end: t,
                error: false,
            }
        });
        return;
    }
    let front = pick(tb, "front", 2);
    tb.server(front, &[], "GET /dashboard", start, |tb, id, mut t| {
        for svc in callees {
            let to = pick(tb, svc, 2);
            let before = tb.rng.ms(20.0, 0.3);
            let after = tb.rng.ms(20.0, 0.3);
            let cid = tb.id();
            let served = tb.server(to, &cid, "GET /lookup", t + before, |tb, id, t| {
                let end = tb.work(to, id, "query", t, 3.0);
                Done { end, error: false }
            });
            let end = served.end + after;
            tb.emit(
                front,
                cid,
                id,
                "GET",
                SpanKind::Client,
                t,
                end,
                vec![s("http.method", "GET"), s("net.peer.name", svc)],
                false,
            );
            t = end;
        }
        let end = tb.work(front, id, "render", t, 8.0);
        Done { end, error: false }
    });
}

/// Load rises from a fifth to the whole rate over the run; `ledger`'s latency climbs with it
/// (a queue in front of a fixed capacity: 2 ms / (1 − utilisation)).
fn saturating_callee(tb: &mut Tb<'_>, load: f64, start: u64) {
    let api = pick(tb, "payments-api", 3);
    tb.server(api, &[], "POST /payments", start, |tb, id, t| {
        let t = tb.work(api, id, "validate", t, 2.0);
        let ledger = pick(tb, "ledger", 2);
        let utilisation = (0.9 * load).min(0.95);
        let r = tb.http(api, id, ledger, "POST /entries", t, 0, |tb, id, t| {
            let end = tb.work(ledger, id, "append entry", t, 2.0 / (1.0 - utilisation));
            Done { end, error: false }
        });
        let end = tb.work(api, id, "respond", r.end, 1.0);
        Done { end, error: false }
    });
}

/// `checkout-api` asks `inventory` to reserve stock. `inventory` runs two instances of two
/// workers each, a reservation taking about 180 ms: it completes about 22 a second, and a
/// request that finds its instance's workers busy waits in the listen queue, inside the
/// caller's client span and before its own server span starts.
fn worker_slots(tb: &mut Tb<'_>, start: u64) {
    let api = pick(tb, "checkout-api", 3);
    tb.server(api, &[], "POST /checkout", start, |tb, id, t| {
        let t = tb.work(api, id, "validate cart", t, 3.0);
        let inv = pick(tb, "inventory", 2);
        let cid = tb.id();
        let arrive = t + tb.rng.ms(0.3, 0.3);
        let service = tb.rng.ms(175.0, 0.25);
        let (s0, s1) = tb.workers.serve(inv, 2, arrive, service);
        let sid = tb.id();
        tb.emit(
            inv,
            sid,
            &cid,
            "POST /reservations",
            SpanKind::Server,
            s0,
            s1,
            vec![
                s("http.request.method", "POST"),
                s("http.route", "/reservations"),
                i("http.response.status_code", 201),
            ],
            false,
        );
        let end = s1 + tb.rng.ms(0.3, 0.3);
        tb.emit(
            api,
            cid,
            id,
            "POST",
            SpanKind::Client,
            t,
            end,
            vec![
                s("http.request.method", "POST"),
                s("server.address", "inventory"),
                i("server.port", 8080),
                i("http.response.status_code", 201),
            ],
            false,
        );
        let end = tb.work(api, id, "respond", end, 1.0);
        Done { end, error: false }
    });
}

/// `uploads-api` accepts photos and publishes a job per photo to Kafka; the one
/// `thumbnailer`, one job at a time at about 77 ms each, completes 13 a second while 20
/// arrive: its queue grows for as long as the uploads go on.
fn slow_consumer(tb: &mut Tb<'_>, start: u64) {
    let api = pick(tb, "uploads-api", 2);
    tb.server(api, &[], "POST /photos", start, |tb, id, t| {
        let t = tb.work(api, id, "store original", t, 4.0);
        let pid = tb.id();
        let sent = t + tb.rng.ms(1.5, 0.3);
        let worker = At {
            svc: "thumbnailer",
            inst: 0,
        };
        let service = tb.rng.ms(75.0, 0.2);
        let (c0, c1) = tb
            .workers
            .serve(worker, 1, sent + tb.rng.ms(2.0, 0.3), service);
        let cid = tb.id();
        let rid = tb.id();
        tb.emit(
            worker,
            rid,
            &cid,
            "resize",
            SpanKind::Internal,
            c0 + 100_000,
            c1.saturating_sub(100_000).max(c0 + 100_000),
            vec![],
            false,
        );
        tb.emit(
            worker,
            cid,
            &pid,
            "thumbnails process",
            SpanKind::Consumer,
            c0,
            c1,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "process"),
                s("messaging.destination.name", "thumbnails"),
                s("messaging.consumer.group.name", "thumbnailer"),
            ],
            false,
        );
        tb.emit(
            api,
            pid,
            id,
            "thumbnails publish",
            SpanKind::Producer,
            t,
            sent,
            vec![
                s("messaging.system", "kafka"),
                s("messaging.operation.type", "send"),
                s("messaging.destination.name", "thumbnails"),
                s("server.address", "kafka-1"),
                i("server.port", 9092),
            ],
            false,
        );
        Done {
            end: sent + tb.rng.ms(0.5, 0.3),
            error: false,
        }
    });
}

/// `recommender` fails one call in five; `storefront` catches it and shows the page without
/// recommendations: the user's request succeeds.
fn absorbed_failures(tb: &mut Tb<'_>, start: u64) {
    let front = pick(tb, "storefront", 2);
    tb.server(front, &[], "GET /product/<id>", start, |tb, id, t| {
        let catalog = pick(tb, "catalog", 2);
        let r = tb.http(front, id, catalog, "GET /items/<id>", t, 0, |tb, id, t| {
            let end = tb.work(catalog, id, "load item", t, 3.0);
            Done { end, error: false }
        });
        let rec = At {
            svc: "recommender",
            inst: 0,
        };
        let fails = tb.rng.chance(0.2);
        let r = tb.http(
            front,
            id,
            rec,
            "GET /similar/<id>",
            r.end,
            0,
            |tb, id, t| {
                let end = tb.work(rec, id, "rank", t, 4.0);
                Done { end, error: fails }
            },
        );
        // The failure stops here: the page renders without recommendations.
        let end = tb.work(front, id, "render", r.end, 2.0);
        Done { end, error: false }
    });
}

/// Insurance quotes: `quote-api` asks `risk` for a score, then `pricing` and `underwriting`.
/// With wrong answers (a bad release of `quote-api`), it gives up after scoring two quotes
/// in three and answers an error page with status 200: no error status anywhere; the calls
/// to `pricing` and `underwriting` that every quote makes simply don't happen.
fn quotes(tb: &mut Tb<'_>, wrong: bool, start: u64) {
    let api = pick(tb, "quote-api", 2);
    tb.server(api, &[], "POST /quotes", start, |tb, id, t| {
        let risk = pick(tb, "risk", 2);
        let r = tb.http(api, id, risk, "GET /score", t, 0, |tb, id, t| {
            let end = tb.work(risk, id, "score applicant", t, 4.0);
            Done { end, error: false }
        });
        if wrong && tb.rng.chance(0.67) {
            let end = tb.work(api, id, "reject quote", r.end, 0.5);
            return Done { end, error: false };
        }
        let mut t = r.end;
        for svc in ["pricing", "underwriting"] {
            let to = pick(tb, svc, 2);
            let r = tb.http(api, id, to, "POST /evaluate", t, 0, |tb, id, t| {
                let end = tb.work(to, id, "evaluate", t, 5.0);
                Done { end, error: false }
            });
            t = r.end;
        }
        Done {
            end: t,
            error: false,
        }
    });
}
