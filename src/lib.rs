//! chokepoint finds the bottlenecks and single points of failure of a distributed system from
//! its OpenTelemetry traces.
//!
//! Data flows one way, and the layers are listed from the bottom up; a module imports only
//! from its own layer's folder or from layers below it (`tests/suite/tidy.rs` checks it):
//! [`model`] and [`clock`] (the span model, time) ← [`ingest`] (OTLP, Jaeger, Zipkin →
//! [`model::Span`]) ← [`analyze`] (pure: traces, trees, the call graph, windowed aggregates,
//! the scorers) and [`simulate`] (the reference shop's traffic) ← [`report`] (findings and
//! their text) ← [`api`] (what is shown: reply types, the published view, Prometheus text) ←
//! [`scale`] (aggregates as series, remote-write, the global view) and [`replay`] (files
//! through the engine) ← [`serve`] (the daemon: receivers, the pipeline task, the API
//! servers). The `chokepoint` binary's `cli` sits on top.

pub mod clock;
pub mod model;

pub mod ingest;

pub mod analyze;
pub mod simulate;

pub mod report;

pub mod api;

pub mod replay;
pub mod scale;

pub mod serve;

#[doc(hidden)]
pub mod testkit;
