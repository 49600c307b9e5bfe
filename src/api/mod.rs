//! What chokepoint shows the outside world. Only types here derive `Serialize`; internal
//! aggregates are converted at this edge, once.

pub mod dashboard;
pub mod dto;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod offline;
pub mod view;
