//! Lab systems for issue 19: what a single point of failure's loss takes down, and a failing
//! one named where the evidence points, whatever carries the error up.
//!
//! | scenario | what it shows |
//! |---|---|
//! | `token-check` | a leaf `gatekeeper`, one instance, that every request of a box office calls first |
//! | `sync-broker` | one Kafka broker that parcel bookings publish to and wait on |
//! | `shared-mysql` | one MySQL server that two services of an HR portal use |
//! | `degraded-forecast` | a radar service that fails a call in four; the forecast falls back |
//! | `short-dominant` | a 65 ms request, 90% of it in one replicated service |
//! | `refused-connections` | PostgreSQL refusing connections for a stretch: no client span, only the caller's exception naming its address |

use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};

use super::{i, pick, s, At, Done, Tb};

fn one(svc: &'static str) -> At {
    At { svc, inst: 0 }
}

impl Tb<'_> {
    /// An HTTP call from `from` to `to`, whose server does `work` for about `ms` and answers
    /// with `error`.
    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        from: At,
        parent: &[u8],
        to: At,
        route: &str,
        start: u64,
        work: &str,
        ms: f64,
        error: bool,
    ) -> Done {
        self.http(from, parent, to, route, start, 0, |tb, id, t| {
            let end = tb.work(to, id, work, t, ms);
            Done { end, error }
        })
    }

    /// Adds an exception event (as the SDKs record one) to the last span `at` reported.
    fn exception(&mut self, at: At, ty: &str, message: &str, time: u64) {
        if let Some(span) = self.spans.get_mut(&at).and_then(|v| v.last_mut()) {
            span.events.push(Event {
                time_unix_nano: time,
                name: "exception".into(),
                attributes: vec![s("exception.type", ty), s("exception.message", message)],
                ..Default::default()
            });
            if let Some(st) = span.status.as_mut() {
                st.message = format!("{ty}: {message}");
            }
        }
    }
}

/// A box office: `box-office` (two instances) checks every request's token with
/// `gatekeeper` (one instance, a leaf) before it lists shows from `seat-map` or books with
/// `booking`. Nothing else depends on the gatekeeper, and everything waits on it.
pub(super) fn token_check(tb: &mut Tb<'_>, start: u64) {
    let web = pick(tb, "box-office", 2);
    let (route, callee, work, ms) = if tb.rng.chance(0.7) {
        ("GET /shows", "seat-map", "list seats", 4.0)
    } else {
        ("POST /bookings", "booking", "hold seats", 9.0)
    };
    tb.server(web, &[], route, start, |tb, id, t| {
        let gatekeeper = one("gatekeeper");
        let g = tb.leaf(
            web,
            id,
            gatekeeper,
            "POST /introspect",
            t,
            "verify token",
            1.2,
            false,
        );
        let to = pick(tb, callee, 2);
        tb.leaf(web, id, to, route, g.end, work, ms, false)
    });
}

/// Parcel bookings: `parcel-desk` publishes each booking to Kafka on the one broker
/// `courier-bus:9092` and waits for the acknowledgement before it answers; `label-printer`
/// consumes them. Tracking reads go to a three-member MongoDB replica set instead.
pub(super) fn sync_broker(tb: &mut Tb<'_>, start: u64) {
    let desk = pick(tb, "parcel-desk", 2);
    if tb.rng.chance(0.35) {
        tb.server(desk, &[], "GET /parcels/<id>", start, |tb, id, t| {
            let member = ["track-1:27017", "track-2:27017", "track-3:27017"][tb.rng.below(3)];
            let (host, port) = member.split_once(':').unwrap_or((member, "27017"));
            let qid = tb.id();
            let end = t + tb.rng.ms(2.0, 0.3);
            tb.emit(
                desk,
                qid,
                id,
                "find parcels",
                SpanKind::Client,
                t,
                end,
                vec![
                    s("db.system", "mongodb"),
                    s("db.operation", "find"),
                    s("db.mongodb.collection", "parcels"),
                    s("server.address", host),
                    i("server.port", port.parse().unwrap_or(27017)),
                ],
                false,
            );
            Done { end, error: false }
        });
        return;
    }
    tb.server(desk, &[], "POST /parcels", start, |tb, id, t| {
        let t = tb.work(desk, id, "price parcel", t, 2.0);
        let pid = tb.id();
        // Synchronous publish: the request waits for the broker's acknowledgement.
        let end = t + tb.rng.ms(3.0, 0.3);
        let printer = pick(tb, "label-printer", 2);
        tb.kafka_message(
            desk,
            id,
            pid,
            (t, end),
            ("courier-bus", 9092),
            "bookings",
            (printer, "label-printer"),
            15.0,
            ("print label", 8.0),
        );
        Done {
            end: end + 100_000,
            error: false,
        }
    });
}

/// An HR portal: `hr-portal` sends shift lookups to `roster` and hour bookings to
/// `timesheet`; both keep their tables on one MySQL server, `hr-db:3306`, without naming a
/// database.
pub(super) fn shared_mysql(tb: &mut Tb<'_>, start: u64) {
    let portal = pick(tb, "hr-portal", 2);
    let (route, svc, statement, ms) = if tb.rng.chance(0.6) {
        (
            "GET /shifts",
            "roster",
            "SELECT day, start, hours FROM shifts WHERE person = %s",
            2.5,
        )
    } else {
        (
            "POST /hours",
            "timesheet",
            "INSERT INTO hours (person, day, hours) VALUES (%s, %s, %s)",
            4.0,
        )
    };
    tb.server(portal, &[], route, start, |tb, id, t| {
        let to = pick(tb, svc, 2);
        tb.http(portal, id, to, route, t, 0, |tb, id, t| {
            tb.db(to, id, "mysql", None, "hr-db:3306", statement, t, ms, false)
        })
    });
}

/// A weather page: `forecast-web` asks `climate-archive` (two instances) for the normals and
/// `radar` (one instance) for the live picture. Radar fails one call in four; the page then
/// shows the forecast without it, and fails only when its cached picture is missing too
/// (one failure of radar in ten).
pub(super) fn degraded_forecast(tb: &mut Tb<'_>, start: u64) {
    let web = pick(tb, "forecast-web", 2);
    tb.server(web, &[], "GET /forecast/<city>", start, |tb, id, t| {
        let archive = pick(tb, "climate-archive", 2);
        let a = tb.leaf(
            web,
            id,
            archive,
            "GET /normals/<city>",
            t,
            "read normals",
            3.0,
            false,
        );
        let fails = tb.rng.chance(0.25);
        let radar = one("radar");
        let r = tb.leaf(
            web,
            id,
            radar,
            "GET /frames/<city>",
            a.end,
            "compose frames",
            5.0,
            fails,
        );
        let no_cache = r.error && tb.rng.chance(0.1);
        let end = tb.work(web, id, "render", r.end, 1.5);
        Done {
            end,
            error: no_cache,
        }
    });
}

/// A rate lookup: `quote-edge` (two instances) answers in about 65 ms, of which `tariff`
/// (two instances) computes about 58. Nothing is broken; the time is all in one place.
pub(super) fn short_dominant(tb: &mut Tb<'_>, start: u64) {
    let edge = pick(tb, "quote-edge", 2);
    tb.server(edge, &[], "GET /rate", start, |tb, id, t| {
        let t = tb.work(edge, id, "parse request", t, 1.5);
        let tariff = pick(tb, "tariff", 2);
        let r = tb.leaf(
            edge,
            id,
            tariff,
            "POST /tariff",
            t,
            "evaluate tariff tables",
            58.0,
            false,
        );
        let end = tb.work(edge, id, "format answer", r.end, 1.5);
        Done { end, error: false }
    });
}

/// A ledger: `ledger-api` (two instances) reads and writes `books-db:5432` (PostgreSQL, one
/// server). From 40% to 55% of the run the server refuses connections: the driver fails in
/// `connect`, so there is no client span, only `ledger-api`'s server span ending in ERROR
/// with the exception libpq writes, naming the address. Its caller, `teller-app`, carries
/// the error up.
pub(super) fn refused_connections(tb: &mut Tb<'_>, progress: f64, start: u64) {
    let teller = pick(tb, "teller-app", 2);
    let down = (0.4..0.55).contains(&progress);
    let api = pick(tb, "ledger-api", 2);
    tb.server(teller, &[], "POST /transfers", start, |tb, id, t| {
        let r = tb.http(teller, id, api, "POST /entries", t, 0, |tb, id, t| {
            if down {
                return Done {
                    end: t + tb.rng.ms(1.0, 0.2),
                    error: true,
                };
            }
            tb.db(
                api,
                id,
                "postgresql",
                None,
                "books-db:5432",
                "INSERT INTO entries (account, amount) VALUES (%s, %s)",
                t,
                3.0,
                false,
            )
        });
        if down {
            tb.exception(
                api,
                "psycopg2.OperationalError",
                "connection to server at \"books-db\" (10.0.0.7), port 5432 failed: \
                 Connection refused\n\tIs the server running on that host and accepting \
                 TCP/IP connections?",
                r.end,
            );
        }
        r
    });
}
