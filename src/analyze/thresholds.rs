//! Every threshold the scorers use, in one place, each with the reason for its value.
//!
//! Scores are in 0..=1. A score says how strongly the evidence points at a node; severity
//! ([`SEVERITY`]) reads the score, then is capped by how much harm and how many traces back
//! it ([`crate::report::findings`]). Values here are chosen from what they mean (a ratio, a
//! perceptible delay, odds), not fitted to a capture.

/// Score at which a finding is low, medium, high, critical. Below `low`, nothing is shown.
pub const SEVERITY: [f64; 4] = [0.1, 0.25, 0.4, 0.6];

/// Fewer user requests than this in a window are an anecdote: nothing above medium.
pub const ANECDOTE_TRACES: u64 = 5;

/// Evidence units (traces, calls) for medium and high confidence, provided the signal shows
/// in at least [`CONSISTENT_MEDIUM`] / [`CONSISTENT_HIGH`] of them.
pub const CONFIDENCE_UNITS: [u64; 2] = [20, 100];
pub const CONSISTENT_MEDIUM: f64 = 0.25;
pub const CONSISTENT_HIGH: f64 = 0.5;

// --- Bottlenecks ---------------------------------------------------------------------------

/// A share of critical-path time alone says where time goes, not that anything is wrong: it
/// scores at most this much of its share, which keeps it at medium or below unless harm is
/// shown.
pub const SHARE_WEIGHT: f64 = 0.5;

/// Ratios are scored on a log scale, tanh(log2(ratio) / this): 2× scores 0.25 (low), 4×
/// 0.46 (high), 8× 0.64 (critical); larger jumps keep scoring higher.
pub const LOG2_RATIO_SCALE: f64 = 4.0;

/// Change against a baseline counts once the node's critical-path time per request grew by
/// at least this much (ms)...
pub const CHANGE_MIN_EXCESS_MS: f64 = 1.0;
/// ... and by at least this ratio (1.5×: more than day-to-day noise of a busy service).
pub const CHANGE_MIN_RATIO: f64 = 1.5;
/// Added to both sides of a ratio of per-request times (ms), so that 0.01 ms → 0.05 ms is
/// not a 5× jump.
pub const RATIO_FLOOR_MS: f64 = 1.0;
/// With a baseline, change is the main signal; the window's own signals count this much.
pub const OWN_SIGNALS_WITH_BASELINE: f64 = 0.8;
/// Comparable traces (same entry operation and shape in both windows) needed for change.
pub const CHANGE_MIN_TRACES: u64 = 5;

/// The wait outside a callee's server span is compared with the typical wait of the system
/// (network and framework overhead): the median over edges of each edge's median gap, over
/// edges with at least this many calls.
pub const TYPICAL_GAP_MIN_CALLS: u64 = 3;
/// The typical gap is never taken below this (ns): 1 ms of network and framework overhead is
/// normal, and with no other calls to compare with it is the yardstick.
pub const MIN_TYPICAL_GAP_NS: f64 = 1_000_000.0;
/// A callee whose callers wait at least this many times the typical gap is queueing.
pub const WAIT_MIN_RATIO: f64 = 2.0;
/// ... provided the excess wait adds up to this much per request (ms).
pub const WAIT_MIN_EXCESS_MS: f64 = 0.5;
/// A caller whose calls to all its callees (at least two) wait this many times the typical
/// gap, the shortest at least [`SICK_CALLER_SPREAD`] of the longest, is itself slow to send
/// and receive (its CPU starved): the waits are its own.
pub const SICK_CALLER_RATIO: f64 = 3.0;
pub const SICK_CALLER_SPREAD: f64 = 0.4;

/// Making a node twice as fast must save users at least this much end-to-end time (ms) at
/// the median, or [`WHAT_IF_P99_MS`] at p99, for a dominant share to count as harm: 100 ms
/// is where people notice a delay.
pub const WHAT_IF_P50_MS: f64 = 100.0;
pub const WHAT_IF_P99_MS: f64 = 250.0;
/// ... or, relative to the requests it serves, this share of their median latency (per
/// entry operation, weighted by the operation's traffic): a third off a 65 ms request is a
/// large, felt speed-up even below 100 ms...
pub const WHAT_IF_RELATIVE: f64 = 1.0 / 3.0;
/// ... provided the traffic-weighted saving is at least this much (ms): halving a 1 ms call
/// saves no one anything.
pub const WHAT_IF_RELATIVE_MIN_MS: f64 = 5.0;

/// Latency against load: at least this many load buckets and this correlation.
pub const SATURATION_MIN_BUCKETS: usize = 5;
pub const SATURATION_MIN_CORRELATION: f64 = 0.6;

/// Queue delay before a consumer: p99 of 50 ms scores 0, ten thousand times that 1 (log).
pub const BACKLOG_FLOOR_MS: f64 = 50.0;
pub const BACKLOG_LOG10_FULL: f64 = 2.5;
/// Messages needed to judge a consumer's queue.
pub const BACKLOG_MIN_MESSAGES: u64 = 5;
/// The delay grew by more than this (ms) and by half its median over the window.
pub const BACKLOG_GROWTH_MS: f64 = 100.0;

// --- Single points of failure ----------------------------------------------------------------

/// Entry operations with less than this share of entry traffic do not decide a node's reach.
pub const MIN_OP_SHARE: f64 = 0.05;
/// Failures needed before hardness is measured rather than assumed.
pub const MIN_FAILURES: u64 = 3;
/// Hardness at least assumed for a node that lost its last replica in the window.
pub const DEGRADED_HARDNESS: f64 = 0.75;
/// A single instance whose loss would fail this share of all entry requests is a *high*
/// SPOF: a quarter of the traffic failing is an outage by any service-level objective.
pub const HARM_HIGH: f64 = 0.25;
/// The score of a single instance that every entry request needs: high, short of critical,
/// which is kept for one failing now.
pub const SPOF_FULL_HARM: f64 = 0.5;
/// Added, times the blast radius (the share of the graph reached only through the node),
/// to rank SPOFs of equal harm: what else its loss takes down.
pub const SPOF_BLAST_BONUS: f64 = 0.05;
/// Where every service runs one instance (said once, as a note), at most this many SPOFs
/// are *high*, the most harmful; the rest are medium, so the page is not a wall of red.
pub const MAX_SYSTEMIC_HIGH: usize = 3;
/// Redundancy factor by instances serving now: one, unknown, two, three or more.
pub const REDUNDANCY_ONE: f64 = 1.0;
pub const REDUNDANCY_UNKNOWN: f64 = 0.6;
pub const REDUNDANCY_TWO: f64 = 0.15;
pub const REDUNDANCY_MORE: f64 = 0.05;

/// Failures bite now when the share of entry requests they fail exceeds the baseline's by
/// this much (absolute) and by [`ACTIVE_RATIO`]...
pub const ACTIVE_EXCESS_RATE: f64 = 0.02;
pub const ACTIVE_RATIO: f64 = 2.0;
/// ... or, with no baseline, reaches a rate that would page someone.
pub const PAGE_RATE: f64 = 0.05;
/// Entry requests a failure must have hit to be active (one failed request is an anecdote).
pub const ACTIVE_MIN_FAILED: u64 = 3;
/// An outage: from its first failed request to its last, this share of the requests that
/// needed the node failed (traffic taken as even over the window), however short it was
/// against the window...
pub const OUTAGE_RATE: f64 = 0.25;
/// ... measured over at least 10 s, so that three requests failing together in a blip are
/// not an outage.
pub const OUTAGE_MIN_SPAN_NS: u64 = 10_000_000_000;
/// A failure is over once no request has failed for this many of its usual gaps between
/// failed requests, and at least [`OUTAGE_MIN_QUIET_NS`].
pub const OUTAGE_QUIET_GAPS: f64 = 5.0;
pub const OUTAGE_MIN_QUIET_NS: u64 = 10_000_000_000;
/// Calls that the baseline makes in at least this share of an operation's requests...
pub const VANISH_BASELINE_PRESENCE: f64 = 0.5;
/// ... and that now happen in this much less of them have vanished.
pub const VANISH_DROP: f64 = 0.25;
/// ... while their caller still makes at least this share of the requests it made then (a
/// caller that itself stopped is not evidence against its callees).
pub const VANISH_CALLER_KEPT: f64 = 0.5;
/// Vanished calls kept as evidence on one finding.
pub const VANISH_MAX_CALLS: usize = 8;
/// A SPOF failing now is critical, and reaches the top score when this share of the
/// requests fails.
pub const ACTIVE_FULL_RATE: f64 = 0.5;

/// Bottleneck by waiting: a request waited long when its gap exceeded this many times the
/// system's typical gap.
pub const WAIT_SLOW_RATIO: f64 = 2.0;
/// Operations named as evidence of a bottleneck's share, the largest first.
pub const SHARE_MAX_OPS: usize = 5;

/// A baseline of fewer traces compares noise, so findings are computed without it (the
/// daemon's baseline window and the global view's alike).
pub const MIN_BASELINE_TRACES: u64 = 50;

/// An instance is gone once it has missed this many of the sightings its share of the
/// node's traffic predicts: missing ten in a row by chance has odds of about e⁻¹⁰.
pub const GONE_AFTER_MISSED: f64 = 10.0;
/// Quiet shorter than this never counts as gone (spans of the last seconds may still be in
/// flight, and clocks of hosts differ).
pub const MIN_QUIET_NS: u64 = 10_000_000_000;

// --- Capacity ------------------------------------------------------------------------------

/// A request queued before its span started when it waited at least this long (ns): a
/// millisecond or two is network and framework overhead...
pub const QUEUED_MIN_NS: f64 = 2_000_000.0;
/// ... and at least this part of its own service time: a request that found every worker
/// busy waits for one to finish, a good part of a service time.
pub const QUEUED_MIN_SHARE: f64 = 0.2;
/// The current rate is over this many load buckets (half a minute: recent enough to follow a
/// ramp, long enough for a few hundred requests at modest rates) ending before the last one
/// in which the node was asked for anything.
pub const CAPACITY_CURRENT_BUCKETS: usize = 3;
/// The current rate must be measured over at least one full load bucket of span time (10 s)
/// for a headroom to be more than low confidence: over a few seconds the rate is the
/// transient of the traffic's start (a consumer's arrivals lag its producers by their
/// latency), not the steady state headroom speaks of.
pub const CAPACITY_CURRENT_MIN_S: f64 = 10.0;
/// A load bucket is saturated when at least this part of its requests queued...
pub const CAPACITY_SATURATED_WAITED: f64 = 0.7;
/// ... waiting on average at least this many service times (a queue several deep, where a
/// moderately busy pool keeps waits below one or two).
pub const CAPACITY_SATURATED_WAIT_SERVICES: f64 = 3.0;
/// Saturated buckets needed for a measured capacity (one could be a burst).
pub const CAPACITY_SATURATED_MIN_BUCKETS: usize = 2;
/// The busiest saturated buckets, those completing at least this part of the most any did,
/// give the capacity (buckets at the edge of saturation complete less).
pub const CAPACITY_TOP_BUCKETS: f64 = 0.9;
/// A saturated node is busy: at least this many requests in flight per instance.
pub const CAPACITY_SATURATED_MIN_IN_FLIGHT: f64 = 0.8;
/// Requests whose wait is known, and how many of them queued, before the queueing model
/// is fitted: a probability of waiting from fewer is noise.
pub const CAPACITY_MODEL_MIN_KNOWN: f64 = 200.0;
pub const CAPACITY_MODEL_MIN_WAITED: f64 = 10.0;
/// The model's probability of waiting and the one seen must agree within this factor.
pub const CAPACITY_MODEL_MAX_MISFIT: f64 = 2.0;
/// Latency against load is fitted over at least this many buckets...
pub const CAPACITY_FIT_MIN_BUCKETS: usize = 5;
/// ... whose rates span at least this factor...
pub const CAPACITY_FIT_MIN_SPREAD: f64 = 1.5;
/// ... and `1/latency` must fall with the rate at least this closely (|r|).
pub const CAPACITY_FIT_MIN_CORRELATION: f64 = 0.8;
/// Seen at this part of its capacity or more, an estimate is of medium certainty; below,
/// low (extrapolated).
pub const CAPACITY_SEEN_MEDIUM: f64 = 0.5;
/// A node whose headroom is at most this (within 20% of capacity) is a high bottleneck...
pub const CAPACITY_NEAR: f64 = 1.25;
/// ... and one asked this much more than it completes is beyond it: its queue grows now.
pub const CAPACITY_BEYOND: f64 = 1.05;
/// Scores of a node near and beyond its capacity (high and critical, [`SEVERITY`]).
pub const CAPACITY_NEAR_SCORE: f64 = 0.5;
pub const CAPACITY_BEYOND_SCORE: f64 = 0.7;
