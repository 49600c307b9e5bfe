//! Pure analysis: no IO, no clock, no async, nothing that can fail. Given the same traces it
//! gives the same answer, which is what makes replay deterministic.
//!
//! In the order data passes: [`assemble`] (spans → traces) → [`tree`] and [`identity`] (a
//! trace as a tree of nodes) → [`critical_path`], [`facts`] and [`graph`] (one trace reduced
//! to facts that add up, over the nodes of [`node`]) → [`window`] (those facts in time
//! buckets) → [`bottleneck`] and [`spof`] (scores from the aggregates alone, with the limits
//! of [`thresholds`]). [`engine`] wires the steps for the daemon and for replay.

pub mod assemble;
pub mod bottleneck;
pub mod capacity;
pub mod critical_path;
pub mod engine;
pub mod facts;
pub mod graph;
pub mod hist;
pub mod identity;
pub mod node;
pub mod spof;
pub mod stats;
pub mod thresholds;
pub mod tree;
pub mod window;
