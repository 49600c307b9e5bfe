//! What to do about a finding, fitted to the node's type, its system (PostgreSQL, Kafka,
//! Redis, ...) and, for a bottleneck, its cause.

use crate::analyze::bottleneck::Cause;
use crate::analyze::capacity::{Capacity, Limit};
use crate::model::NodeType;
use crate::report::format::rate;

/// The system named in a backend's name (`orders (postgresql)` → `postgresql`), or the
/// name itself for a backend named after its system (`kafka`).
pub fn system_of(name: &str) -> &str {
    match name.rsplit_once(" (") {
        Some((_, rest)) => rest.trim_end_matches(')'),
        None => name,
    }
}

/// The cure, fitted to the node's type, its system and why it is a bottleneck.
pub fn bottleneck_cure(ty: NodeType, system: &str, cause: &Cause, name: &str) -> String {
    if let Cause::Capacity(c) = cause {
        return capacity_cure(c, name);
    }
    if matches!(cause, Cause::Backlog(_)) {
        return "The consumer can't keep up: scale it out (more instances, and enough \
                partitions or queues for them), process messages in batches or with background \
                workers, and alert on consumer lag."
            .into();
    }
    match (ty, cause) {
        (NodeType::Service, Cause::SlowCaller(_)) => format!(
            "{name}'s own process is starved: give it CPU (raise or remove its CPU limit, move \
             it off a noisy node), look for GC pauses or a blocked event loop, size its thread \
             and connection pools, or run more instances."
        ),
        (NodeType::Service, Cause::Waiting(_)) => format!(
            "Requests queue before {name} serves them: add instances or worker threads, raise \
             its CPU limit if it is throttled, check its connection and thread pools, and the \
             network path to it."
        ),
        (NodeType::Service, Cause::Saturation(_)) => format!(
            "{name} runs out of capacity as load rises: scale it out (or autoscale on its \
             latency), raise its concurrency limits if it has idle CPU, and shed or queue load \
             it can't take."
        ),
        (NodeType::Service, Cause::Change(_)) => format!(
            "Find what changed in {name} (a deploy, a dependency, data growth, a noisy \
             neighbour), then profile its hot path; scale it out or cache while you do."
        ),
        (NodeType::Service, _) => {
            "Profile and optimise its hot path, cache what it computes again and again, move \
             work the response doesn't need off the request path (asynchronous processing), \
             and scale it out."
                .into()
        }
        (NodeType::Database, _) => {
            let specific = match system {
                "redis" => {
                    "Look for slow commands (SLOWLOG), big keys and a saturated single thread; \
                     pipeline round trips, and shard with Redis Cluster."
                }
                "mongodb" => "Check the slow-query profiler and add the missing indexes.",
                "cassandra" => {
                    "Look for hot partitions and large partitions, and tune consistency levels."
                }
                "memcached" => "Check its hit rate and evictions; add memory or nodes.",
                _ => {
                    "Find the slow statements (indexes, query plans), cache hot reads and add read \
                     replicas; for writes on every request, batch them or use the outbox \
                     pattern."
                }
            };
            format!("{specific} Check its connection pool and the host's CPU and disk too.")
        }
        (NodeType::Messaging, _) => {
            "Publishing waits on the broker: publish asynchronously (batching, acknowledgements \
             off the request path) or scale the broker."
                .into()
        }
        (NodeType::External, _) => {
            "Cache its answers, call it in parallel or asynchronously where the flow allows, \
             and set tight timeouts so its slowness can't hold every request."
                .into()
        }
    }
}

/// The cure, fitted to the node's type and system; when it is failing now, what to do first.
pub fn spof_cure(ty: NodeType, system: &str, active: bool) -> String {
    let cure = match ty {
        NodeType::Service => {
            "Run several instances behind a load balancer, in different zones; keep the state \
             they hold in a store that survives an instance, and give callers timeouts, \
             retries with backoff and a fallback."
        }
        NodeType::Database => match system {
            "postgresql" => {
                "Add a streaming replica with automatic failover (Patroni, or a managed \
                 high-availability service) and have clients reconnect to the new primary."
            }
            "mysql" | "mariadb" => {
                "Add a replica with automatic failover (Group Replication / InnoDB Cluster, \
                 Orchestrator, or a managed high-availability service)."
            }
            "redis" => "Run Redis Sentinel (a replica with automatic failover) or Redis Cluster.",
            "mongodb" => "Run a replica set of three members.",
            "cassandra" => "Use replication factor 3 and quorum reads and writes.",
            "memcached" => {
                "Spread keys over several nodes and let callers fall back to the source on a \
                 miss."
            }
            _ => "Add a replica with automatic failover and have clients reconnect to it.",
        },
        NodeType::Messaging => match system {
            "kafka" => {
                "Run three brokers with replication factor 3 and min.insync.replicas 2, so \
                 losing one broker loses no topic."
            }
            "rabbitmq" => "Run a three-node cluster with quorum queues.",
            "nats" => "Run a JetStream cluster with streams replicated three times.",
            _ => "Run a broker cluster with replicated queues.",
        },
        NodeType::External => {
            "Add a fallback (a second provider, a cached or degraded answer) and guard the call \
             with timeouts, retries with backoff and a circuit breaker."
        }
    };
    if active {
        format!(
            "It is failing requests now: look at its recent changes (deploys, configuration) \
             and its logs first. Then: {cure}"
        )
    } else {
        cure.to_owned()
    }
}

/// What more instances or slots would give a node near its capacity.
fn capacity_cure(c: &Capacity, name: &str) -> String {
    let cap = c.capacity_rps.unwrap_or(0.0);
    let n = c.instances.unwrap_or(1).max(1);
    let per = cap / n as f64;
    let need = (c.rate_rps * 1.25 / per.max(1e-9))
        .ceil()
        .max(n as f64 + 1.0) as usize;
    let scale = format!(
        "each instance adds about {}/s: {need} instances would carry today's {}/s with 25% \
         to spare",
        rate(per),
        rate(c.rate_rps)
    );
    match (c.limit, c.slots) {
        (Limit::Concurrency, Some(k)) => format!(
            "{name} serves at most {k:.0} request(s) at a time per instance: raise its workers \
             or threads per instance if its CPU is idle (each adds about {}/s per instance), \
             or add instances ({scale}); shed or queue what it cannot take.",
            rate(per / k.max(1.0))
        ),
        (Limit::Consumer, _) => format!(
            "{name} can't keep up with its queue: add consumers ({scale}, given enough \
             partitions or queues for them), batch the work, or lift the limit it waits on \
             (a provider's rate limit, a pool)."
        ),
        _ => format!(
            "{name} is near the rate where its latency diverges: scale it out ({scale}), \
             cache or batch what it is asked, and shed load it can't take."
        ),
    }
}
