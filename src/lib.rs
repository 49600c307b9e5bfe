//! chokepoint finds the bottlenecks and single points of failure of a distributed system from
//! its OpenTelemetry traces.
//!
//! Data flows one way, and the modules are listed in that order:
//! [`ingest`] (OTLP, Jaeger, Zipkin → [`model::Span`]) → [`assemble`] (spans → traces) →
//! [`analyze`] (pure: trace trees, the call graph) → [`window`] (mergeable aggregates by span
//! time) → [`api`] (what is shown). [`engine`] wires those stages for replay; [`simulate`]
//! generates the reference shop's traffic.

pub mod model;

pub mod ingest;

pub mod assemble;

pub mod analyze;
pub mod hist;

pub mod window;

pub mod exchange;
pub mod remote_write;

pub mod global;

pub mod findings;

pub mod engine;
pub mod replay;

pub mod auth;
pub mod config;
pub mod daemon;
pub mod listener;
pub mod pipeline;
pub mod state;
pub mod tls;

pub mod api;
pub mod render;

pub mod simulate;

#[doc(hidden)]
pub mod testkit;
