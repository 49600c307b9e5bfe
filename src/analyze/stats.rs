//! Small mergeable statistics: co-moments for trends, bounded top-k and bottom-k sets. Each
//! merges by a rule that gives the same result whatever the order, so windows and shards add.

/// Running means and co-moments of `(x, y)` pairs (Welford; merged with Chan's formula),
/// for a least-squares slope without keeping the points. Times are offsets of a few minutes,
/// so no catastrophic cancellation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    pub n: u64,
    pub mean_x: f64,
    pub mean_y: f64,
    /// Σ (x - mean_x)²
    pub m2_x: f64,
    /// Σ (x - mean_x)(y - mean_y)
    pub c_xy: f64,
    pub min_x: f64,
    pub max_x: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64, y: f64) {
        self.add_n(x, y, 1);
    }

    /// Adds `n` points at `(x, y)` (a mean over a step of time, rebuilt from a store).
    pub fn add_n(&mut self, x: f64, y: f64, n: u64) {
        if n == 0 {
            return;
        }
        let one = Moments {
            n,
            mean_x: x,
            mean_y: y,
            m2_x: 0.0,
            c_xy: 0.0,
            min_x: x,
            max_x: x,
        };
        self.merge(&one);
    }

    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = (self.n + o.n) as f64;
        let (na, nb) = (self.n as f64, o.n as f64);
        let dx = o.mean_x - self.mean_x;
        let dy = o.mean_y - self.mean_y;
        self.m2_x += o.m2_x + dx * dx * na * nb / n;
        self.c_xy += o.c_xy + dx * dy * na * nb / n;
        self.mean_x += dx * nb / n;
        self.mean_y += dy * nb / n;
        self.n += o.n;
        self.min_x = self.min_x.min(o.min_x);
        self.max_x = self.max_x.max(o.max_x);
    }

    /// Least-squares slope dy/dx, when x varies.
    pub fn slope(&self) -> Option<f64> {
        (self.n >= 3 && self.m2_x > 0.0).then(|| self.c_xy / self.m2_x)
    }
}

/// A least-squares line through points, with its correlation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Σ (x - mean x)(y - mean y) and Σ (x - mean x)²: the slope is their ratio.
    pub sxy: f64,
    pub sxx: f64,
    pub slope: f64,
    pub intercept: f64,
    /// Pearson's r.
    pub r: f64,
}

/// The line through `pts`, or `None` when x or y does not vary.
pub fn fit_line(pts: &[(f64, f64)]) -> Option<Line> {
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pts {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        sxy,
        sxx,
        slope,
        intercept: my - slope * mx,
        r: sxy / (sxx * syy).sqrt(),
    })
}

/// The `K` largest `(score, item)` pairs seen (ties broken by item, so merging is
/// deterministic).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopK<T: Ord + Clone, const K: usize> {
    items: Vec<(u64, T)>,
}

impl<T: Ord + Clone, const K: usize> TopK<T, K> {
    pub fn offer(&mut self, score: u64, item: T) {
        if self.items.iter().any(|(_, i)| *i == item) {
            return;
        }
        self.items.push((score, item));
        self.items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        self.items.truncate(K);
    }

    pub fn merge(&mut self, o: &Self) {
        for (s, i) in &o.items {
            self.offer(*s, i.clone());
        }
    }

    /// Best first.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, i)| i)
    }
}

/// A bottom-k sample: the `k` items with the smallest keys (a hash of the trace id), which is
/// a uniform sample that merges exactly: the union's bottom k is the bottom k of the bottoms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BottomK<T> {
    k: usize,
    /// Sorted by key.
    items: Vec<(u64, T)>,
}

impl<T: Clone> BottomK<T> {
    pub fn new(k: usize) -> Self {
        BottomK {
            k,
            items: Vec::new(),
        }
    }

    /// Whether an item with this key would be kept (to skip building it otherwise).
    pub fn wants(&self, key: u64) -> bool {
        self.items.len() < self.k || self.items.last().is_some_and(|(k, _)| key < *k)
    }

    pub fn offer(&mut self, key: u64, item: T) {
        if !self.wants(key) || self.items.iter().any(|(k, _)| *k == key) {
            return;
        }
        let pos = self.items.partition_point(|(k, _)| *k < key);
        self.items.insert(pos, (key, item));
        self.items.truncate(self.k);
    }

    pub fn merge(&mut self, o: &BottomK<T>) {
        for (k, i) in &o.items {
            self.offer(*k, i.clone());
        }
    }

    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, i)| i)
    }

    /// The same sample with each item rewritten (keys, hence membership, unchanged).
    pub fn map(&self, f: impl Fn(&T) -> T) -> BottomK<T> {
        BottomK {
            k: self.k,
            items: self.items.iter().map(|(k, i)| (*k, f(i))).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_pass() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        let mut all = Moments::default();
        let (mut a, mut b) = (Moments::default(), Moments::default());
        for (i, (x, y)) in pts.iter().enumerate() {
            all.add(*x, *y);
            if i % 3 == 0 {
                a.add(*x, *y)
            } else {
                b.add(*x, *y)
            }
        }
        b.merge(&a);
        assert!((all.slope().unwrap() - 3.0).abs() < 1e-9);
        assert!((b.slope().unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(b.n, 50);
    }

    #[test]
    fn bottom_k_merges_exactly() {
        let mut whole = BottomK::new(5);
        let (mut a, mut b) = (BottomK::new(5), BottomK::new(5));
        for k in [9u64, 3, 7, 1, 12, 5, 8, 2, 11] {
            whole.offer(k, k);
            if k % 2 == 0 {
                a.offer(k, k)
            } else {
                b.offer(k, k)
            }
        }
        a.merge(&b);
        assert_eq!(a, whole);
        assert_eq!(
            whole.items().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 5, 7]
        );
    }

    #[test]
    fn top_k_keeps_the_largest() {
        let mut t: TopK<u32, 2> = TopK::default();
        for (s, i) in [(5, 1), (9, 2), (7, 3), (9, 2)] {
            t.offer(s, i);
        }
        assert_eq!(t.items().copied().collect::<Vec<_>>(), vec![2, 3]);
    }
}
