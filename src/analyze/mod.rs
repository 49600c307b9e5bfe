//! Pure analysis: no IO, no clock, no async, nothing that can fail. Given the same traces it
//! gives the same answer, which is what makes replay deterministic.

pub mod bottleneck;
pub mod critical_path;
pub mod facts;
pub mod graph;
pub mod identity;
pub mod spof;
pub mod stats;
pub mod thresholds;
pub mod tree;
