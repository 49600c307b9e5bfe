//! Live traffic: the shop's traces with current timestamps, sent over OTLP/gRPC at a steady
//! rate, following a schedule of scenarios (`healthy:30s,single-db`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{shop::Shop, Scenario, SimConfig};

/// One step of a schedule: a scenario, for a while or (last step) for ever.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub scenario: Scenario,
    pub duration: Option<Duration>,
}

/// Parses `healthy:30s,single-db` (the last step may omit its duration).
pub fn parse_schedule(s: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, dur) = match part.split_once(':') {
            Some((n, d)) => (n, Some(crate::clock::parse_duration(d)?)),
            None => (part, None),
        };
        out.push(Step {
            scenario: name.parse()?,
            duration: dur,
        });
    }
    if out.is_empty() {
        return Err("empty scenario schedule".into());
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
}

/// Streams until the schedule ends (or, with an open-ended last step, until `total` ends;
/// `None` for ever). Export failures are logged and counted, not fatal: the receiver may be
/// restarting.
pub async fn stream(
    endpoint: &str,
    schedule: &[Step],
    rate_per_s: f64,
    seed: u64,
    total: Option<Duration>,
) -> Result<u64, StreamError> {
    let mut client = TraceServiceClient::connect(endpoint.to_owned())
        .await
        .map_err(|e| StreamError::Connect {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })?;
    let started = Instant::now();
    let mut sent = 0u64;
    let tick = Duration::from_millis(100);
    let per_tick = (rate_per_s * tick.as_secs_f64()).max(0.0);
    let mut owed = 0.0;
    for (i, step) in schedule.iter().enumerate() {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // An outage (in the single-* scenarios) recurs every minute of the stream.
        let per_minute = (rate_per_s * 60.0).max(1.0) as usize;
        let cfg = SimConfig {
            scenario: step.scenario,
            seed: seed.wrapping_add(i as u64),
            traces: per_minute,
            rate_per_s,
            start_unix_ns: now_ns,
        };
        let mut shop = Shop::new(&cfg);
        let step_start = Instant::now();
        let mut index = 0usize;
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let elapsed = step_start.elapsed();
            if step.duration.is_some_and(|d| elapsed >= d)
                || total.is_some_and(|t| started.elapsed() >= t)
            {
                break;
            }
            owed += per_tick;
            let n = owed.floor() as usize;
            owed -= n as f64;
            if n == 0 {
                continue;
            }
            let mut req = ExportTraceServiceRequest::default();
            for _ in 0..n {
                // Timestamps follow the wall clock: trace `index` starts `index / rate` after
                // the step began.
                let mut t = shop.trace(index % per_minute);
                shift(&mut t, shop_offset(&cfg, index, per_minute));
                req.resource_spans.extend(t.resource_spans);
                index += 1;
            }
            match client.export(req).await {
                Ok(_) => sent += n as u64,
                Err(e) => tracing::warn!(%e, "export failed"),
            }
        }
        if total.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
    }
    Ok(sent)
}

/// Trace `index % per_minute` is generated at its place within a minute; later minutes are
/// shifted forward so time keeps moving.
fn shop_offset(cfg: &SimConfig, index: usize, per_minute: usize) -> u64 {
    let _ = cfg;
    (index / per_minute) as u64 * 60_000_000_000
}

fn shift(req: &mut ExportTraceServiceRequest, by_ns: u64) {
    if by_ns == 0 {
        return;
    }
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.start_time_unix_nano += by_ns;
                s.end_time_unix_nano += by_ns;
            }
        }
    }
}
