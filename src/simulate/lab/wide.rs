//! A system of 300 services, for what a large map asks of the dashboard (layout in about a
//! second, labels that do not collide, groups to collapse) and of the engine: twelve edge
//! gateways in front of twelve domains (an API, seven core services, eight workers, eight
//! stores each, every domain with its own PostgreSQL), calls fanning out through the tiers
//! and, now and then, across domains. Names share their domain's prefix, so the dashboard
//! can fold a domain into one node; one service has a name too long to show whole.

use std::sync::OnceLock;

use super::{pick, At, Done, Tb};

const DOMAINS: [&str; 12] = [
    "catalog",
    "search",
    "cart",
    "checkout",
    "payments",
    "shipping",
    "accounts",
    "reviews",
    "ads",
    "pricing",
    "inventory",
    "notify",
];
const CORES: usize = 7;
const WORKERS: usize = 8;
const STORES: usize = 8;

/// Every service name, made once: `edge-gateway-N`, then per domain `D-api`, `D-core-N`,
/// `D-worker-N`, `D-store-N`.
struct Names {
    gateways: Vec<String>,
    api: Vec<String>,
    core: Vec<Vec<String>>,
    worker: Vec<Vec<String>>,
    store: Vec<Vec<String>>,
    db: Vec<String>,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let per = |role: &str, k: usize| -> Vec<Vec<String>> {
            DOMAINS
                .iter()
                .map(|d| (1..=k).map(|i| format!("{d}-{role}-{i}")).collect())
                .collect()
        };
        let mut core = per("core", CORES);
        core[3][0] = "checkout-payment-authorisation-and-fraud-screening-service".to_owned();
        Names {
            gateways: (1..=12).map(|i| format!("edge-gateway-{i}")).collect(),
            api: DOMAINS.iter().map(|d| format!("{d}-api")).collect(),
            core,
            worker: per("worker", WORKERS),
            store: per("store", STORES),
            db: DOMAINS.iter().map(|d| format!("{d}-pg:5432")).collect(),
        }
    })
}

/// The number of services the system has.
pub const SERVICES: usize = 12 + DOMAINS.len() * (1 + CORES + WORKERS + STORES);

pub(super) fn many_services(tb: &mut Tb<'_>, start: u64) {
    let n = names();
    let g = tb.rng.below(n.gateways.len());
    let gw = pick(tb, &n.gateways[g], 2);
    tb.server(gw, &[], "GET /", start, |tb, id, t| {
        let mut t = t;
        let mut error = false;
        for d in [g % DOMAINS.len(), (g + 5) % DOMAINS.len()] {
            let api = pick(tb, &n.api[d], 3);
            let r = tb.http(gw, id, api, "GET /api", t, 0, |tb, id, t| {
                domain(tb, n, d, api, id, t)
            });
            t = r.end;
            error |= r.error;
        }
        Done { end: t, error }
    });
}

fn domain(tb: &mut Tb<'_>, n: &'static Names, d: usize, api: At, parent: &[u8], t: u64) -> Done {
    let a = tb.rng.below(CORES);
    let b = (a + 1 + tb.rng.below(CORES - 1)) % CORES;
    let mut end = t;
    let mut error = false;
    for c in [a, b] {
        let core = pick(tb, &n.core[d][c], 2);
        let r = tb.http(api, parent, core, "POST /run", t, 0, |tb, id, t| {
            let t = tb.work(core, id, "plan", t, 1.5);
            let w = (c + tb.rng.below(2)) % WORKERS;
            let worker = pick(tb, &n.worker[d][w], 2);
            let r = tb.http(core, id, worker, "POST /job", t, 0, |tb, id, t| {
                let t = tb.work(worker, id, "compute", t, 2.0);
                let s = if tb.rng.chance(0.5) {
                    w
                } else {
                    (w + 3) % STORES
                };
                store(tb, n, d, s, worker, id, t)
            });
            // Now and then a core reads the next domain's data directly.
            if tb.rng.chance(0.1) {
                let other = (d + 1) % DOMAINS.len();
                let s = tb.rng.below(STORES);
                return store(tb, n, other, s, core, id, r.end);
            }
            r
        });
        end = end.max(r.end);
        error |= r.error;
    }
    Done { end, error }
}

fn store(
    tb: &mut Tb<'_>,
    n: &'static Names,
    d: usize,
    s: usize,
    from: At,
    parent: &[u8],
    t: u64,
) -> Done {
    let to = pick(tb, &n.store[d][s], 2);
    tb.http(from, parent, to, "GET /rows", t, 0, |tb, id, t| {
        tb.db(
            to,
            id,
            "postgresql",
            None,
            &n.db[d],
            "SELECT * FROM rows WHERE id = $1",
            t,
            1.0,
            false,
        )
    })
}
