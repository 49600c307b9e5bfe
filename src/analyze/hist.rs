//! Mergeable latency histograms, sparse: values in microseconds, log-linear buckets with 128
//! sub-buckets per power of two (under 0.8% relative error, as HdrHistogram with two
//! significant digits), and only the buckets used are stored. A node seen with a few dozen
//! distinct latencies costs a few hundred bytes, not the ~15 KB of a dense histogram sized
//! for seconds: memory per node and time bucket is what bounds the daemon (issue 10).

/// Values below this many microseconds get a bucket each (exact).
const LINEAR: u64 = 128;

/// The bucket of a value (µs): exact below [`LINEAR`], then 128 per power of two.
fn index(us: u64) -> u16 {
    if us < LINEAR {
        return us as u16;
    }
    let e = 63 - us.leading_zeros() as u64; // >= 7
    let sub = (us >> (e - 7)) & 127;
    (LINEAR + (e - 7) * 128 + sub) as u16
}

/// Fine buckets per exported bin (see [`Hist::bins`]); 128 is a multiple, so bins never
/// straddle the linear range's end or a power of two.
const BIN_FINE: u16 = 16;

/// The largest value (µs) in a bucket.
fn upper(idx: u16) -> u64 {
    let i = u64::from(idx);
    if i < LINEAR {
        return i;
    }
    let e = (i - LINEAR) / 128 + 7;
    let sub = (i - LINEAR) % 128;
    // (128 + sub + 1) << (e - 7), minus one, without overflowing at the top.
    ((128 + sub + 1) as u128)
        .checked_shl((e - 7) as u32)
        .map_or(u64::MAX, |v| (v - 1).min(u128::from(u64::MAX)) as u64)
}

/// A latency histogram. Values are nanoseconds in, recorded as microseconds (rounded up, so a
/// 1 ns span is not a zero-length one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    /// `(bucket, count)`, sorted by bucket.
    buckets: Vec<(u16, u64)>,
    count: u64,
    /// Exact sum and maximum of the recorded values (µs).
    sum_us: u128,
    max_us: u64,
}

/// Snapshots store the buckets as `(bucket, count)` pairs with the exact sum and maximum.
impl serde::Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&(&self.buckets, self.sum_us, self.max_us), s)
    }
}

impl<'de> serde::Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (pairs, sum_us, max_us): (Vec<(u16, u64)>, u128, u64) =
            serde::Deserialize::deserialize(d)?;
        let mut h = Hist::default();
        // Re-sorted and summed, so a damaged snapshot can't break the invariants.
        for (b, c) in pairs {
            h.add_bucket(b, c);
        }
        h.sum_us = sum_us;
        h.max_us = max_us;
        Ok(h)
    }
}

impl Hist {
    fn add_bucket(&mut self, b: u16, c: u64) {
        match self.buckets.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(c),
            Err(i) => self.buckets.insert(i, (b, c)),
        }
        self.count = self.count.saturating_add(c);
    }

    pub fn record_ns(&mut self, ns: u64) {
        let us = ns.div_ceil(1000);
        self.add_bucket(index(us), 1);
        self.sum_us += u128::from(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn add(&mut self, other: &Hist) {
        if other.buckets.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    merged.push(**x);
                    a.next();
                }
                (Some(_), Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    merged.push(**x);
                    a.next();
                }
                (None, Some(y)) => {
                    merged.push(**y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
        self.count = self.count.saturating_add(other.count);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1) in nanoseconds, as the largest value of its bucket (never
    /// above the largest value recorded); 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, c) in &self.buckets {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return upper(*b).min(self.max_us).saturating_mul(1000);
            }
        }
        self.max_us.saturating_mul(1000)
    }

    /// Values recorded at or below `ns` (for Prometheus `le` buckets), counting a bucket when
    /// all of it is at or below.
    pub fn count_le_ns(&self, ns: u64) -> u64 {
        let us = ns / 1000;
        self.buckets
            .iter()
            .take_while(|(b, _)| upper(*b) <= us)
            .map(|(_, c)| c)
            .sum()
    }

    /// Sum of the recorded values, in nanoseconds.
    pub fn sum_ns(&self) -> f64 {
        self.sum_us as f64 * 1000.0
    }

    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns() / self.count as f64
        }
    }

    pub fn max_ns(&self) -> u64 {
        self.max_us.saturating_mul(1000)
    }

    /// The `q` quantile in milliseconds, rounded to microseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile_ns(q) as f64 / 1e6
    }

    /// The counts in coarse bins of [`BIN_FINE`] buckets (8 per power of two above 128 µs,
    /// 16 µs wide below): `(largest value of the bin in µs, count)`, by value. Bins are the
    /// same in every process, so bins exported by several instances sum by their bound.
    pub fn bins(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &(b, c) in &self.buckets {
            let ub = upper((b / BIN_FINE) * BIN_FINE + BIN_FINE - 1);
            match out.last_mut() {
                Some(last) if last.0 == ub => last.1 = last.1.saturating_add(c),
                _ => out.push((ub, c)),
            }
        }
        out
    }

    /// Adds `count` values to the bin whose largest value is `upper_us` (see [`Hist::bins`]),
    /// placed at the bin's middle bucket: a quantile read back is within half a bin (±3%).
    pub fn add_bin(&mut self, upper_us: u64, count: u64) {
        if count == 0 {
            return;
        }
        let mid = (index(upper_us) / BIN_FINE) * BIN_FINE + BIN_FINE / 2;
        self.add_bucket(mid, count);
    }

    /// Sets the exact sum and the maximum that bins cannot carry.
    pub fn add_totals(&mut self, sum_us: u128, max_us: u64) {
        self.sum_us = self.sum_us.saturating_add(sum_us);
        self.max_us = self.max_us.max(max_us);
    }

    /// Exact sum of the recorded values (µs).
    pub fn sum_us(&self) -> u128 {
        self.sum_us
    }

    /// Bytes this histogram holds (for the memory budget).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u16, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_read_back_within_half_a_bin() {
        let mut h = Hist::default();
        for us in [3, 70, 150, 900, 1_000, 1_100, 45_000, 2_000_000] {
            h.record_ns(us * 1000);
        }
        let mut back = Hist::default();
        for (ub, c) in h.bins() {
            back.add_bin(ub, c);
        }
        back.add_totals(h.sum_us(), h.max_us);
        assert_eq!(back.count(), h.count());
        for q in [0.1, 0.3, 0.5, 0.7, 0.9] {
            let (a, b) = (h.quantile_ns(q) as f64, back.quantile_ns(q) as f64);
            // Below 128 µs bins are 16 µs wide: within 8 µs there, within 7% above.
            assert!((a - b).abs() <= (0.07 * a).max(8_000.0), "q{q}: {a} vs {b}");
        }
    }

    #[test]
    fn absurd_durations_saturate_instead_of_overflowing() {
        let mut h = Hist::default();
        h.record_ns(u64::MAX);
        assert!(h.quantile_ns(1.0) >= u64::MAX / 2000 * 1000);
        assert!(h.max_ns() >= u64::MAX / 2000 * 1000);
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
        assert_eq!(a.max_ns(), 10_000_000_000);
    }

    #[test]
    fn buckets_are_under_one_percent_wide_and_cover_every_value() {
        for us in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            10_000_000,
            u64::MAX / 3,
        ] {
            let b = index(us);
            assert!(upper(b) >= us, "{us}");
            if b > 0 {
                assert!(upper(b - 1) < us, "{us}: the bucket below ends before it");
            }
            if us >= LINEAR {
                let width = upper(b) - upper(b - 1);
                assert!((width as f64) / (us as f64) < 0.008, "{us}: {width}");
            }
        }
        let mut h = Hist::default();
        for us in [5u64, 500, 50_000] {
            h.record_ns(us * 1000);
        }
        assert_eq!(h.count_le_ns(1_000_000), 2);
        assert!(h.heap_bytes() < 100);
    }
}
