//! One memory budget for the process (`analysis.memory_budget_mb`): what every structure that
//! grows with input holds, in estimated bytes, and the share each may draw.
//!
//! - **queue**: batches accepted and waiting for the pipeline. A receiver reserves a batch's
//!   bytes before queueing it; past the queue's share it answers with a retryable refusal
//!   (gRPC `UNAVAILABLE`, HTTP 503), as the Collector's `memory_limiter` does, counted as
//!   refused for memory. The exporter sends the spans again, so nothing is lost.
//! - **assembly**: spans of traces not complete yet. Past its share the assembler completes
//!   the oldest traces early (counted), so data keeps flowing.
//! - **names**: the engine's name table (at most a sixteenth, by [`names_share_of`]) and the
//!   receivers' own (each a bounded cache, see `ingest::local`).
//! - **view** and **export**: the published view (counted twice: the next is built while it
//!   is served) and the aggregate series, rebuilt at each refresh.
//! - **aggregates**: the windows, and **refresh** the working copies a refresh merges from
//!   them (current window, baseline, all time: about twice what is kept). The windows get
//!   what the others leave, so that together they stay within the budget; past it the
//!   least-used nodes fold and old history coarsens (`chokepoint_budget_folds_total`).
//!
//! Estimates, not measurements: `process_resident_memory_bytes` beside them says how close
//! they are.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the budget is spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Queue,
    Assembly,
    Names,
    Aggregates,
    Refresh,
    View,
    Export,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Queue,
        Part::Assembly,
        Part::Names,
        Part::Aggregates,
        Part::Refresh,
        Part::View,
        Part::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Queue => "queue",
            Part::Assembly => "assembly",
            Part::Names => "names",
            Part::Aggregates => "aggregates",
            Part::Refresh => "refresh",
            Part::View => "view",
            Part::Export => "export",
        }
    }
}

/// Bytes by part, shared by the receivers and the pipeline.
#[derive(Debug, Default)]
pub struct Ledger {
    budget: AtomicU64,
    bytes: [AtomicU64; 7],
}

/// Fractions of the budget held for what is in flight, whatever the windows need. (Slots
/// by part; `Refresh`'s is unused, derived from the aggregates.)
const QUEUE_SHARE: u64 = 8;
const ASSEMBLY_SHARE: u64 = 5;
const NAMES_SHARE: u64 = 16;
/// The windows keep at least this fraction, however much the rest holds.
const AGGREGATES_FLOOR: u64 = 32;
/// Budgets up to this go to the windows whole.
const SMALL_BUDGET: u64 = 4 << 20;
/// A refresh merges the windows into the current window and its baseline (together about
/// one copy of what is kept) and into all time (another): two working copies.
const REFRESH_COPIES: u64 = 2;

impl Ledger {
    pub fn new(budget_bytes: u64) -> Ledger {
        let l = Ledger::default();
        l.budget.store(budget_bytes, Ordering::Relaxed);
        l
    }

    pub fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// The budget in bytes; 0 for none.
    pub fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    /// What a part holds; a refresh's working copies are derived from the aggregates.
    pub fn get(&self, p: Part) -> u64 {
        match p {
            Part::Refresh => REFRESH_COPIES * self.get(Part::Aggregates),
            _ => self.bytes[p as usize].load(Ordering::Relaxed),
        }
    }

    pub fn set(&self, p: Part, bytes: u64) {
        self.bytes[p as usize].store(bytes, Ordering::Relaxed);
    }

    /// Whether resident memory may squeeze the windows: not for a small budget, which the
    /// process's own growth past its idle size would exceed whatever the windows hold.
    pub fn squeezable(&self) -> bool {
        self.budget() > SMALL_BUDGET
    }

    /// What queued batches may hold at most.
    pub fn queue_share(&self) -> u64 {
        self.budget() / QUEUE_SHARE
    }

    /// What spans in assembly may hold at most.
    pub fn assembly_share(&self) -> u64 {
        assembly_share_of(self.budget())
    }

    /// Reserves `bytes` of the queue's share for a batch; false (nothing reserved) when it
    /// does not fit. A batch
    /// larger than the whole share is let through an empty queue, so one large request
    /// cannot be refused for ever.
    pub fn reserve_queue(&self, bytes: u64) -> bool {
        let share = self.queue_share();
        let q = &self.bytes[Part::Queue as usize];
        let before = q.fetch_add(bytes, Ordering::Relaxed);
        if self.budget() == 0 || before == 0 || before + bytes <= share {
            return true;
        }
        q.fetch_sub(bytes, Ordering::Relaxed);
        false
    }

    /// Gives back what [`Ledger::reserve_queue`] took, once the pipeline holds the batch.
    pub fn release_queue(&self, bytes: u64) {
        let q = &self.bytes[Part::Queue as usize];
        let _ = q.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(bytes))
        });
    }

    /// What the windows may keep: the budget less the in-flight shares and what the names,
    /// view and export hold now, over the kept copy and a refresh's working copies; never
    /// under [`AGGREGATES_FLOOR`]'s fraction. 0 for no budget.
    pub fn aggregates_share(&self) -> u64 {
        let b = self.budget();
        if b == 0 {
            return 0;
        }
        let held = self.queue_share()
            + self.assembly_share()
            + self.get(Part::Names)
            + self.get(Part::View)
            + self.get(Part::Export);
        // A small budget (a test's, a sidecar's) goes to the windows whole: the in-flight
        // shares are then nominal, and history must not be retired for them.
        (b.saturating_sub(held) / (1 + REFRESH_COPIES))
            .max(b / AGGREGATES_FLOOR)
            .max(b.min(SMALL_BUDGET))
    }
}

/// What the engine's names may cost of a budget of `budget` bytes (no bound for none): a
/// sixteenth, at least [`SMALL_BUDGET`] (some 130,000 names of 30 bytes at 256 MB;
/// past it new names fold into "(too many names)", counted).
pub fn names_share_of(budget: u64) -> usize {
    if budget == 0 {
        return usize::MAX;
    }
    (budget / NAMES_SHARE).max(SMALL_BUDGET) as usize
}

/// What spans in assembly may hold of a budget of `budget` bytes.
pub fn assembly_share_of(budget: u64) -> u64 {
    budget / ASSEMBLY_SHARE
}

/// Scales the windows' share down while resident memory runs over `target` (what the
/// estimates miss is then taken from the windows), and back up once it is well under.
#[derive(Debug, Clone, Copy)]
pub struct Squeeze(f64);

impl Default for Squeeze {
    fn default() -> Self {
        Squeeze(1.0)
    }
}

impl Squeeze {
    pub fn update(&mut self, rss: u64, target: u64) -> f64 {
        if target > 0 && rss > target {
            self.0 = (self.0 * 0.8).max(0.1);
        } else if target > 0 && (rss as f64) < 0.85 * target as f64 {
            self.0 = (self.0 * 1.05).min(1.0);
        }
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_share_and_takes_back_what_it_released() {
        let l = Ledger::new(8 << 20);
        let share = l.queue_share();
        assert!(l.reserve_queue(share / 2));
        assert!(l.reserve_queue(share / 2));
        assert!(!l.reserve_queue(1), "a full queue refuses");
        assert_eq!(l.get(Part::Queue), share, "a refusal reserves nothing");
        l.release_queue(share / 2);
        assert!(l.reserve_queue(share / 4));
        l.release_queue(u64::MAX);
        assert_eq!(l.get(Part::Queue), 0, "never below zero");
        assert!(
            l.reserve_queue(share * 4),
            "an empty queue takes one batch larger than its share"
        );
    }

    #[test]
    fn the_squeeze_tightens_over_target_and_relaxes_well_under_it() {
        let mut s = Squeeze::default();
        assert_eq!(s.update(100, 200), 1.0);
        let tight = s.update(300, 200);
        assert!(tight < 1.0);
        assert_eq!(s.update(190, 200), tight, "near the target: held");
        assert!(s.update(100, 200) > tight);
        for _ in 0..100 {
            s.update(1000, 200);
        }
        assert!(s.update(1000, 200) >= 0.1, "never to nothing");
    }

    #[test]
    fn the_windows_get_what_the_rest_leaves_and_never_nothing() {
        let b = 256u64 << 20;
        let l = Ledger::new(b);
        let roomy = l.aggregates_share();
        assert!(roomy > b / 5 && roomy < b / 3, "{roomy}");
        l.set(Part::View, 40 << 20);
        assert!(l.aggregates_share() < roomy);
        l.set(Part::Export, b);
        assert_eq!(l.aggregates_share(), b / AGGREGATES_FLOOR);
        assert_eq!(
            Ledger::new(2 << 20).aggregates_share(),
            2 << 20,
            "small: whole"
        );
        assert_eq!(Ledger::new(0).aggregates_share(), 0, "no budget, no bound");
        assert!(Ledger::new(0).reserve_queue(u64::MAX / 2));
    }
}
