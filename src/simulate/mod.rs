//! The reference online shop of DOMAIN.md as a trace generator, for tests, benchmarks and the
//! demo. Output is real OTLP with current semantic conventions; runs are deterministic for a
//! given seed, so a generated file can be checked in beside its expected graph.

pub mod lab;
mod rng;
mod shop;
pub mod stream;

use std::fmt;
use std::str::FromStr;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

pub use lab::Lab;
pub use rng::Rng;

/// The shop's scenarios (one healthy baseline, and one per weak spot of DOMAIN.md), and the
/// lab's systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Scenario {
    /// Everything replicated, latencies balanced, the odd error absorbed by a retry.
    Healthy,
    /// The bank behind payment-service answers slowly: payment drags every checkout.
    SlowPayment,
    /// email-service can't keep up: the queue delay before it grows; checkout is unaffected.
    EmailBacklog,
    /// One PostgreSQL without a replica, used by orders, payment and shipping; it has an outage.
    SingleDb,
    /// One Kafka broker; it has an outage and publishing fails.
    SingleKafka,
    /// One saga-orchestrator instance; it has an outage.
    SingleOrchestrator,
    /// The orchestrator's saga-state writes are slow.
    SlowOrchestratorDb,
    /// One of the small systems of [`lab`], not the shop.
    Lab(Lab),
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Healthy,
        Scenario::SlowPayment,
        Scenario::EmailBacklog,
        Scenario::SingleDb,
        Scenario::SingleKafka,
        Scenario::SingleOrchestrator,
        Scenario::SlowOrchestratorDb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Lab(l) => l.name(),
            shop => shop.into(),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let all = || {
            Scenario::ALL
                .into_iter()
                .chain(Lab::ALL.into_iter().map(Scenario::Lab))
        };
        all().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<_> = all().map(|s| s.name()).collect();
            format!("unknown scenario {s:?}; one of: {}", names.join(", "))
        })
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub scenario: Scenario,
    pub seed: u64,
    /// Number of traces (entry requests).
    pub traces: usize,
    /// Entry requests per second of span time.
    pub rate_per_s: f64,
    /// Start of the first trace, Unix nanoseconds.
    pub start_unix_ns: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            scenario: Scenario::Healthy,
            seed: 1,
            traces: 300,
            rate_per_s: 10.0,
            // 2026-01-15T10:00:00Z: fixed, so generated files are reproducible.
            start_unix_ns: 1_768_471_200_000_000_000,
        }
    }
}

/// One OTLP request per trace, in start order.
pub fn generate(cfg: &SimConfig) -> impl Iterator<Item = ExportTraceServiceRequest> + '_ {
    let next: Box<dyn FnMut(usize) -> ExportTraceServiceRequest> = match cfg.scenario {
        Scenario::Lab(l) => {
            let mut g = lab::Generator::new(l, cfg);
            Box::new(move |i| g.trace(i))
        }
        _ => {
            let mut shop = shop::Shop::new(cfg);
            Box::new(move |i| shop.trace(i))
        }
    };
    (0..cfg.traces).map(next)
}
