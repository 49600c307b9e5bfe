//! Mergeable latency histograms: HdrHistogram in microseconds, two significant digits,
//! growing only as far as the largest value recorded, so an idle edge costs little memory.

use hdrhistogram::Histogram;

/// A latency histogram. Values are nanoseconds in, recorded as microseconds (rounded up, so a
/// 1 ns span is not a zero-length one).
#[derive(Clone, Debug)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        // 2 significant digits: ±1% on any percentile. Auto-resize keeps an unused histogram
        // at its minimal size.
        let mut h = Histogram::new(2).unwrap_or_else(|_| unreachable!("2 sigfig is valid"));
        h.auto(true);
        Hist(h)
    }
}

/// Snapshots store `(value µs, count)` pairs: compact, and independent of HdrHistogram's own
/// serialization format.
impl serde::Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = self
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        serde::Serialize::serialize(&pairs, s)
    }
}

impl<'de> serde::Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(u64, u64)> = serde::Deserialize::deserialize(d)?;
        let mut h = Hist::default();
        for (v, c) in pairs {
            h.0.record_n(v, c).map_err(serde::de::Error::custom)?;
        }
        Ok(h)
    }
}

impl Hist {
    pub fn record_ns(&mut self, ns: u64) {
        let us = ns.div_ceil(1000);
        // `record` grows the histogram as needed; only a value past u64 range could fail,
        // and then the clamped record is the honest best.
        if self.0.record(us).is_err() {
            self.0.saturating_record(us);
        }
    }

    pub fn add(&mut self, other: &Hist) {
        // Both auto-resize, so adding cannot fail for range; saturate counts on the
        // (theoretical) overflow rather than panic.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in nanoseconds; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(q).saturating_mul(1000)
    }

    /// Values recorded at or below `ns` (for Prometheus `le` buckets).
    pub fn count_le_ns(&self, ns: u64) -> u64 {
        let us = ns / 1000;
        self.0
            .iter_recorded()
            .filter(|v| v.value_iterated_to() <= us)
            .map(|v| v.count_at_value())
            .sum()
    }

    /// Sum of the recorded values, in nanoseconds (bucket-rounded).
    pub fn sum_ns(&self) -> f64 {
        self.0.mean() * self.0.len() as f64 * 1000.0
    }

    pub fn mean_ns(&self) -> f64 {
        self.0.mean() * 1000.0
    }

    pub fn max_ns(&self) -> u64 {
        self.0.max().saturating_mul(1000)
    }

    /// The `q` quantile in milliseconds, rounded to microseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile_ns(q) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_saturate_instead_of_overflowing() {
        let mut h = Hist::default();
        h.record_ns(u64::MAX);
        assert!(h.quantile_ns(1.0) >= u64::MAX / 2);
        assert!(h.max_ns() >= u64::MAX / 2);
    }

    #[test]
    fn records_and_merges() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        for ms in 1..=100u64 {
            a.record_ns(ms * 1_000_000);
        }
        b.record_ns(10_000_000_000);
        a.add(&b);
        assert_eq!(a.count(), 101);
        let p50 = a.quantile_ms(0.5);
        assert!((50.0..=52.0).contains(&p50), "{p50}");
        assert!(a.quantile_ms(1.0) >= 9_900.0);
    }
}
