//! The aggregates as Prometheus series, both ways: [`encode`] turns what the scorers read
//! into `chokepoint_*` counters and gauges (for `/metrics` and remote-write), [`decode`]
//! rebuilds a window's aggregates from those series as a store returns them (summed across
//! instances, over a range of time). Every field of [`GraphAgg`] that travels is mapped here
//! and nowhere else, so the two directions cannot drift apart.
//!
//! What travels, and how:
//! - Sums (requests, errors, critical-path time, reach, failures, shapes, request kinds,
//!   backend usage) are counters: a window is the increase over it, and instances add.
//! - Histograms are counters per bin (8 per power of two, [`Hist::bins`]) named by their
//!   upper bound, not cumulative `le` buckets: instances that used different bins still sum
//!   right. Read back, a quantile is within half a bin (about ±5%); the sum is exact and the
//!   maximum is the largest any instance reported.
//! - What is a function of time (load per 10 s for saturation, sightings of each instance,
//!   the queue delay's trend) is not a label: it is rebuilt from the series' own samples,
//!   each sample's increase in the 10 s slot of the time it was written (so by write time,
//!   not span time: live traffic has the two close; a replay burst is one slot).
//! - Instances serving a node carry when each was first and last seen (span time) as gauges.
//! - When a node's failed requests began and were last seen is rebuilt the same way, from the
//!   times of the increases of `chokepoint_failed_with_entry_total`.
//!
//! What does not travel: exemplar trace ids and the what-if's trace sample are per instance
//! (a trace lives in one instance); decoded aggregates have none, and the findings built on
//! them say so by having no exemplars. Hashes that travel (a request's shape and route, a
//! backend usage) are built from names ([`crate::model::stable_hash`]), never from symbol
//! numbers, so instances agree on them.
//!
//! Aggregates are exported raw (backends by address): the reader groups them into the nodes
//! users know with the same resolver, over everything it reads.

mod decode;
mod encode;
mod names;

pub use crate::api::prom::Sample;
pub use decode::{decode, Decoded, Series};
pub use encode::{encode, encode_at_most, heard, write_text};
pub use names::{HEARD, METRICS};

#[cfg(test)]
mod tests;
