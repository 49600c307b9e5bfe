//! Pure analysis: no IO, no clock, no async, nothing that can fail. Given the same traces it
//! gives the same answer, which is what makes replay deterministic.

pub mod graph;
pub mod tree;
