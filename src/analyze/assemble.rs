//! Spans → complete traces, bounded.
//!
//! A trace is complete when no span of it has arrived for `trace_idle` (measured on whatever
//! clock the caller passes: span time in replay, wall time live) or at the end of input. When
//! the in-flight limits are reached the least recently touched trace is completed early; when
//! one trace exceeds its own span limit, its further spans are dropped. Both are counted.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{Span, TraceId};

/// Limits and timing for assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// A trace with no new span for this long is complete (nanoseconds of the caller's clock).
    pub trace_idle_ns: u64,
    /// Traces held at once.
    pub max_traces: usize,
    /// Spans held at once, over all traces.
    pub max_spans: usize,
    /// Spans kept for one trace; later ones are dropped.
    pub max_spans_per_trace: usize,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            trace_idle_ns: 10_000_000_000,
            max_traces: 100_000,
            max_spans: 2_000_000,
            max_spans_per_trace: 100_000,
        }
    }
}

/// What assembly did, for metrics and the replay summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    pub spans_in: u64,
    pub traces_completed: u64,
    /// Traces completed before their idle timeout because the in-flight limits were reached.
    pub traces_completed_early: u64,
    /// Spans dropped because their trace already held `max_spans_per_trace`.
    pub spans_dropped_trace_full: u64,
}

struct Pending {
    spans: Vec<Span>,
    /// Clock value when the last span arrived.
    last_touch: u64,
}

/// Groups spans by trace id until each trace is complete.
pub struct Assembler {
    cfg: AssemblerConfig,
    pending: FxHashMap<TraceId, Pending>,
    /// `(touch time, trace)` in touch order. An entry is stale when its trace has been touched
    /// since (or completed); stale entries are skipped when they reach the front.
    touched: VecDeque<(u64, TraceId)>,
    spans_held: usize,
    /// Traces completed so far, by a hash of their id, when asked to remember them
    /// ([`Assembler::remember_completed`]).
    completed: Option<Completed>,
    pub stats: AssemblerStats,
}

/// What [`Assembler::remember_completed`] keeps: a span of a trace already completed says
/// the input is not in an order that completing idle traces can take.
struct Completed {
    ids: FxHashSet<u64>,
    max: usize,
    /// A span arrived for a trace already completed (or one that might have been: a hash
    /// shared, or more traces completed than `max`, after which none is remembered).
    reopened: bool,
}

impl Assembler {
    pub fn new(cfg: AssemblerConfig) -> Self {
        Assembler {
            cfg,
            pending: FxHashMap::default(),
            touched: VecDeque::new(),
            spans_held: 0,
            completed: None,
            stats: AssemblerStats::default(),
        }
    }

    /// Remembers every trace completed (up to `max`, about 20 bytes each), so that
    /// [`Assembler::reopened`] can say whether a span came for one of them.
    pub fn remember_completed(&mut self, max: usize) {
        self.completed = Some(Completed {
            ids: FxHashSet::default(),
            max,
            reopened: false,
        });
    }

    /// Whether a span arrived for a trace already completed, which was then split (or
    /// possibly so: past the number of traces remembered, this says yes).
    pub fn reopened(&self) -> bool {
        self.completed.as_ref().is_some_and(|c| c.reopened)
    }

    /// Estimated bytes held (for the memory budget): the spans with their vectors' slack, each
    /// trace's entry and its place in the touch order.
    pub fn approx_bytes(&self) -> usize {
        self.spans_held * std::mem::size_of::<Span>() * 3 / 2
            + self.pending.capacity() * (std::mem::size_of::<(TraceId, Pending)>() + 1)
            + self.touched.capacity() * std::mem::size_of::<(u64, TraceId)>()
    }

    pub fn config(&self) -> AssemblerConfig {
        self.cfg
    }

    /// Every span held, taken out without completing its trace (replay moving them to disk),
    /// trace by trace in the order they were last touched.
    pub fn take_held(&mut self) -> Vec<Span> {
        let mut out = Vec::with_capacity(self.spans_held);
        self.drain(|_, _, p| out.extend(p.spans));
        self.spans_held = 0;
        out
    }

    pub fn traces_in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn spans_in_flight(&self) -> usize {
        self.spans_held
    }

    /// Adds one span observed at clock value `now`; traces completed early to make room are
    /// passed to `done`.
    pub fn push(&mut self, span: Span, now: u64, done: &mut impl FnMut(Vec<Span>)) {
        self.push_sized(span, 1, now, done);
    }

    /// Adds a batch's spans observed at `now`. A trace's vector is sized for the spans of it
    /// the batch holds rather than grown by doubling: a 20-span trace that arrives whole
    /// holds 20 slots, not 32, which is most of what a span in flight costs.
    pub fn push_batch(&mut self, spans: Vec<Span>, now: u64, done: &mut impl FnMut(Vec<Span>)) {
        self.push_batch_with(spans, |_| now, done)
    }

    /// [`Assembler::push_batch`] with each span's own clock value.
    pub fn push_batch_with(
        &mut self,
        spans: Vec<Span>,
        mut clock: impl FnMut(&Span) -> u64,
        done: &mut impl FnMut(Vec<Span>),
    ) {
        let mut left: FxHashMap<TraceId, usize> = FxHashMap::default();
        for s in &spans {
            *left.entry(s.trace_id).or_default() += 1;
        }
        for s in spans {
            let n = left.get_mut(&s.trace_id).map_or(1, |n| {
                let here = *n;
                *n = n.saturating_sub(1);
                here
            });
            let now = clock(&s);
            self.push_sized(s, n, now, done);
        }
    }

    /// [`Assembler::push`], knowing `coming` spans of this trace (this one included) are
    /// about to arrive.
    fn push_sized(
        &mut self,
        span: Span,
        coming: usize,
        now: u64,
        done: &mut impl FnMut(Vec<Span>),
    ) {
        self.stats.spans_in += 1;
        let id = span.trace_id;
        if !self.pending.contains_key(&id) {
            if let Some(c) = &mut self.completed {
                c.reopened |= c.ids.contains(&id_hash(&id));
            }
            while self.pending.len() >= self.cfg.max_traces.max(1)
                || self.spans_held >= self.cfg.max_spans.max(1)
            {
                if !self.complete_oldest(done) {
                    break;
                }
                self.stats.traces_completed_early += 1;
            }
        } else if self.spans_held >= self.cfg.max_spans.max(1) {
            // Make room without completing the trace this span belongs to.
            self.complete_oldest_except(id, done);
        }
        let entry = self.pending.entry(id).or_insert_with(|| Pending {
            spans: Vec::new(),
            last_touch: u64::MAX,
        });
        if entry.spans.len() >= self.cfg.max_spans_per_trace {
            self.stats.spans_dropped_trace_full += 1;
            return;
        }
        if entry.spans.len() == entry.spans.capacity() {
            // What is coming, but at least half again (a trace fed one span per batch still
            // grows in amortized constant time), and no more than the trace may hold.
            let room = self.cfg.max_spans_per_trace - entry.spans.len();
            let more = coming.max(entry.spans.len() / 2).clamp(1, room.max(1));
            entry.spans.reserve_exact(more);
        }
        entry.spans.push(span);
        self.spans_held += 1;
        if entry.last_touch != now {
            entry.last_touch = now;
            let back = self.touched.back().map_or(0, |&(t, _)| t);
            self.touched.push_back((now, id));
            if now < back {
                self.clock_went_back(now);
            }
        }
        if self.touched.len() > 2 * self.cfg.max_spans.max(16) {
            self.compact();
        }
    }

    /// The caller's clock went back (replay's, set wrong by a span years ahead): each trace
    /// held is restamped as touched `now`, in the order it was, so it gets a whole idle time
    /// on the new clock instead of blocking the queue, ahead of it, until the end of input.
    fn clock_went_back(&mut self, now: u64) {
        self.compact();
        for (t, id) in self.touched.iter_mut() {
            *t = now;
            if let Some(p) = self.pending.get_mut(id) {
                p.last_touch = now;
            }
        }
    }

    /// Completes every trace idle since before `now - trace_idle`.
    pub fn expire(&mut self, now: u64, done: &mut impl FnMut(Vec<Span>)) {
        let cutoff = now.saturating_sub(self.cfg.trace_idle_ns);
        while let Some(&(t, id)) = self.touched.front() {
            if t >= cutoff {
                break;
            }
            self.touched.pop_front();
            if self.pending.get(&id).is_some_and(|p| p.last_touch == t) {
                self.finish(id, done);
            }
        }
    }

    /// Completes everything (end of input, shutdown).
    pub fn flush(&mut self, done: &mut impl FnMut(Vec<Span>)) {
        self.drain(|a, id, p| a.complete(id, p, done));
    }

    /// Removes every trace held, in the order they were last touched (then any left, by id),
    /// handing each to `each`.
    fn drain(&mut self, mut each: impl FnMut(&mut Self, TraceId, Pending)) {
        while let Some((t, id)) = self.touched.pop_front() {
            if self.pending.get(&id).is_some_and(|p| p.last_touch == t) {
                if let Some(p) = self.pending.remove(&id) {
                    each(self, id, p);
                }
            }
        }
        // Anything left (should be nothing) in a deterministic order.
        let mut rest: Vec<TraceId> = self.pending.keys().copied().collect();
        rest.sort_unstable();
        for id in rest {
            if let Some(p) = self.pending.remove(&id) {
                each(self, id, p);
            }
        }
    }

    fn finish(&mut self, id: TraceId, done: &mut impl FnMut(Vec<Span>)) {
        if let Some(p) = self.pending.remove(&id) {
            self.complete(id, p, done);
        }
    }

    /// Hands over a trace taken out of `pending`.
    fn complete(&mut self, id: TraceId, p: Pending, done: &mut impl FnMut(Vec<Span>)) {
        if let Some(c) = &mut self.completed {
            if c.ids.len() < c.max {
                c.ids.insert(id_hash(&id));
            } else {
                c.reopened = true;
            }
        }
        self.spans_held -= p.spans.len();
        self.stats.traces_completed += 1;
        done(p.spans);
    }

    fn complete_oldest(&mut self, done: &mut impl FnMut(Vec<Span>)) -> bool {
        while let Some((t, id)) = self.touched.pop_front() {
            if self.pending.get(&id).is_some_and(|p| p.last_touch == t) {
                self.finish(id, done);
                return true;
            }
        }
        false
    }

    fn complete_oldest_except(&mut self, keep: TraceId, done: &mut impl FnMut(Vec<Span>)) {
        let mut skipped = Vec::new();
        while let Some((t, id)) = self.touched.pop_front() {
            if self.pending.get(&id).is_none_or(|p| p.last_touch != t) {
                continue;
            }
            if id == keep {
                skipped.push((t, id));
                continue;
            }
            self.finish(id, done);
            self.stats.traces_completed_early += 1;
            break;
        }
        for e in skipped.into_iter().rev() {
            self.touched.push_front(e);
        }
    }

    fn compact(&mut self) {
        let pending = &self.pending;
        self.touched
            .retain(|(t, id)| pending.get(id).is_some_and(|p| p.last_touch == *t));
    }
}

/// Eight bytes standing for a trace id (ids are random or hashed, so their halves mix well).
fn id_hash(id: &TraceId) -> u64 {
    let (a, b) = id.0.split_at(8);
    let half = |h: &[u8]| h.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    half(a) ^ half(b).rotate_left(29)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, SpanKind, Sym};

    fn span(trace: u8, id: u8, t: u64) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([id; 8]),
            parent: None,
            service: Sym(1),
            instance: None,
            name: Sym(1),
            kind: SpanKind::Server,
            start_ns: t,
            end_ns: t,
            error: false,
            peer: None,
            links: Vec::new(),
            proxy: false,
            fault_addrs: [None; 2],
            weight: 1.0,
        }
    }

    fn collect(out: &mut Vec<Vec<Span>>) -> impl FnMut(Vec<Span>) + '_ {
        move |t| out.push(t)
    }

    /// A trace that arrives whole holds exactly its spans; one fed a span per batch still
    /// grows geometrically (no reallocation per span).
    #[test]
    fn a_batch_sizes_each_trace_for_its_spans() {
        let mut a = Assembler::new(AssemblerConfig::default());
        let mut out = Vec::new();
        let mut batch: Vec<Span> = (0..20).map(|i| span(1, i + 1, 5)).collect();
        batch.extend((0..3).map(|i| span(2, i + 1, 5)));
        a.push_batch(batch, 5, &mut collect(&mut out));
        let cap = |a: &Assembler, t: u8| a.pending[&TraceId([t; 16])].spans.capacity();
        assert_eq!((cap(&a, 1), cap(&a, 2)), (20, 3));
        let mut grew = 0;
        let mut last = cap(&a, 2);
        for i in 0..200u8 {
            a.push_batch(
                vec![span(2, i.wrapping_add(10), 6)],
                6,
                &mut collect(&mut out),
            );
            if cap(&a, 2) != last {
                grew += 1;
                last = cap(&a, 2);
            }
        }
        assert!(grew <= 12, "{grew} reallocations for 200 spans");
        assert!(out.is_empty());
    }

    #[test]
    fn a_span_of_a_completed_trace_is_noticed_and_so_is_forgetting() {
        let mut a = Assembler::new(AssemblerConfig {
            trace_idle_ns: 10,
            ..Default::default()
        });
        a.remember_completed(2);
        let mut out = Vec::new();
        a.push(span(1, 1, 0), 0, &mut collect(&mut out));
        a.expire(20, &mut collect(&mut out));
        a.push(span(2, 1, 20), 20, &mut collect(&mut out));
        assert!(!a.reopened(), "a new trace is not a reopened one");
        a.push(span(1, 2, 21), 21, &mut collect(&mut out));
        assert!(a.reopened(), "trace 1 was completed at 20");
        // Past what it may remember, it cannot tell, and says so.
        let mut b = Assembler::new(AssemblerConfig::default());
        b.remember_completed(1);
        b.push(span(1, 1, 0), 0, &mut collect(&mut out));
        b.push(span(2, 1, 0), 0, &mut collect(&mut out));
        b.flush(&mut collect(&mut out));
        assert!(b.reopened());
    }

    #[test]
    fn idle_traces_complete_and_busy_ones_wait() {
        let mut a = Assembler::new(AssemblerConfig {
            trace_idle_ns: 10,
            ..Default::default()
        });
        let mut out = Vec::new();
        a.push(span(1, 1, 0), 0, &mut collect(&mut out));
        a.push(span(2, 1, 5), 5, &mut collect(&mut out));
        a.push(span(1, 2, 8), 8, &mut collect(&mut out));
        a.expire(15, &mut collect(&mut out));
        assert!(out.is_empty(), "trace 1 was touched at 8, trace 2 at 5");
        a.expire(16, &mut collect(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0].trace_id, TraceId([2; 16]));
        a.flush(&mut collect(&mut out));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].len(), 2);
        assert_eq!(a.traces_in_flight(), 0);
    }

    #[test]
    fn limits_complete_oldest_early_and_count() {
        let mut a = Assembler::new(AssemblerConfig {
            trace_idle_ns: 1000,
            max_traces: 2,
            max_spans: 100,
            max_spans_per_trace: 2,
        });
        let mut out = Vec::new();
        for t in 1..=3u8 {
            a.push(
                span(t, 1, u64::from(t)),
                u64::from(t),
                &mut collect(&mut out),
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0].trace_id, TraceId([1; 16]));
        assert_eq!(a.stats.traces_completed_early, 1);
        for id in 2..=4u8 {
            a.push(span(3, id, 4), 4, &mut collect(&mut out));
        }
        assert_eq!(a.stats.spans_dropped_trace_full, 2);
        assert!(a.traces_in_flight() <= 2 && a.spans_in_flight() <= 100);
    }
}
