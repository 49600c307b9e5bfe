//! What chokepoint shows the outside world, whoever serves it: the reply types ([`dto`],
//! the one place API shapes are defined; `openapi.json` documents them), the published
//! [`view`] the servers read without waiting on ingest, the service graph in the Prometheus
//! text format ([`metrics`], written with [`prom`]), the same documents as tables, Markdown
//! and Graphviz for people ([`render`]), and the dashboard's files ([`dashboard`]). Internal aggregates are converted to these shapes here, once.

pub mod dashboard;
pub mod dto;
pub mod metrics;
pub mod prom;
pub mod render;
pub mod view;
