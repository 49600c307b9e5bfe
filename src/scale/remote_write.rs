//! Prometheus remote-write (protocol 1.0: a snappy-compressed protobuf `WriteRequest` POSTed
//! to the store) of the aggregates [`crate::scale::exchange`] encodes, so a store sums instances
//! that nobody scrapes (behind NAT, short-lived, or many).
//!
//! What is sent is always the latest cumulative state: every counter carries everything
//! before it, so a request that could not be delivered loses resolution, not data. The queue
//! is therefore one request deep: while one is in flight (with its retries), newer states
//! replace the waiting one and the replaced samples are counted as dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use tokio::sync::watch;

use crate::api::prom::Sample;
use crate::api::view::View;

/// `prometheus.WriteRequest` (remote-write 1.0), the fields a sender uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Series per request: Prometheus' own sender sends 2,000 samples per request by default;
/// receivers take much more, and fewer requests cost less.
const SERIES_PER_REQUEST: usize = 10_000;
/// Attempts per request (the first and its retries), with backoff doubling from this.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The requests carrying `samples` at `timestamp_ms`, each with the `chokepoint_instance`
/// label, snappy-compressed.
pub fn requests(samples: &[Sample], instance: &str, timestamp_ms: i64) -> Vec<Vec<u8>> {
    samples
        .chunks(SERIES_PER_REQUEST)
        .map(|chunk| {
            let timeseries = chunk
                .iter()
                .map(|s| {
                    let mut labels: Vec<Label> = s
                        .labels
                        .iter()
                        .map(|(k, v)| Label {
                            name: (*k).to_owned(),
                            value: v.clone(),
                        })
                        .collect();
                    labels.push(Label {
                        name: "__name__".into(),
                        value: s.name.to_owned(),
                    });
                    labels.push(Label {
                        name: "chokepoint_instance".into(),
                        value: instance.to_owned(),
                    });
                    labels.sort_by(|a, b| a.name.cmp(&b.name));
                    TimeSeries {
                        labels,
                        samples: vec![PbSample {
                            value: s.value,
                            timestamp: timestamp_ms,
                        }],
                    }
                })
                .collect();
            let pb = WriteRequest { timeseries }.encode_to_vec();
            snap::raw::Encoder::new()
                .compress_vec(&pb)
                .unwrap_or_default()
        })
        .collect()
}

/// Why a request was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store refused it (4xx but 429): retrying would not help.
    #[error("refused with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("{0}")]
    Failed(String),
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(client: &HttpClient, url: &str, body: Vec<u8>) -> Result<(), WriteError> {
    let req = http::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .header(
            "user-agent",
            concat!("chokepoint/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| WriteError::Failed(e.to_string()))?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| WriteError::Failed("timed out".into()))?
        .map_err(|e| WriteError::Failed(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| {
            String::from_utf8_lossy(&b.to_bytes())
                .chars()
                .take(300)
                .collect()
        })
        .unwrap_or_default();
    if status.is_client_error() && status.as_u16() != 429 {
        Err(WriteError::Refused {
            status: status.as_u16(),
            body,
        })
    } else {
        Err(WriteError::Failed(format!("{status}: {body}")))
    }
}

/// Sends with retries: server errors, 429 and connection failures back off and retry.
async fn send(client: &HttpClient, url: &str, body: Vec<u8>) -> Result<(), WriteError> {
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match post(client, url, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ WriteError::Refused { .. }) => return Err(e),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

/// What remote-write delivered and lost, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriteCounters {
    /// Samples sent and accepted.
    pub samples: AtomicU64,
    /// Snappy-compressed bytes sent and accepted: the export's cost to the store.
    pub bytes: AtomicU64,
    /// Requests that failed for good (after their retries).
    pub failures: AtomicU64,
    /// Samples not delivered: a failed request's, or a full queue's.
    pub dropped: AtomicU64,
}

/// Every `interval`, remote-writes the aggregates of the latest published view, until the
/// view channel closes (the daemon stopped).
pub async fn run(
    url: String,
    instance: String,
    interval: Duration,
    mut view: watch::Receiver<Arc<View>>,
    stats: Arc<WriteCounters>,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failures_logged = 0u64;
    loop {
        tick.tick().await;
        if view.has_changed().is_err() {
            return;
        }
        let samples = view.borrow_and_update().aggregates.clone();
        if samples.is_empty() {
            continue;
        }
        let ts = (crate::clock::now_ns() / 1_000_000) as i64;
        let bodies = requests(&samples, &instance, ts);
        let per = samples.len().div_ceil(bodies.len().max(1)) as u64;
        for body in bodies {
            let bytes = body.len() as u64;
            match send(&client, &url, body).await {
                Ok(()) => {
                    stats.samples.fetch_add(per, Ordering::Relaxed);
                    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    stats.dropped.fetch_add(per, Ordering::Relaxed);
                    failures_logged += 1;
                    // Powers of two: a store down for an hour is not 240 lines a minute.
                    if failures_logged.is_power_of_two() {
                        tracing::warn!(%url, error = %e, failures = failures_logged, "remote-write failed; the next state carries the counts");
                    }
                }
            }
        }
        // Ticks missed while sending are skipped: the state they would have sent is in the
        // next one.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_snappy_protobuf_with_sorted_labels_and_the_instance() {
        let s = vec![Sample {
            name: "chokepoint_edge_calls_total",
            labels: vec![("caller", "a".into()), ("callee", "b".into())],
            value: 7.0,
        }];
        let bodies = requests(&s, "i1", 1_700_000_000_000);
        assert_eq!(bodies.len(), 1);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&bodies[0])
            .expect("snappy");
        let w = WriteRequest::decode(raw.as_slice()).expect("protobuf");
        let names: Vec<&str> = w.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["__name__", "callee", "caller", "chokepoint_instance"]
        );
        assert_eq!(w.timeseries[0].samples[0].value, 7.0);
        assert_eq!(w.timeseries[0].samples[0].timestamp, 1_700_000_000_000);
    }
}
