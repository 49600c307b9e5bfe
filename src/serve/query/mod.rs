//! The query APIs over the published view: [`http`] (REST, server-sent events, `/metrics`,
//! the dashboard) and [`grpc`] (`chokepoint.v1.Findings`).

pub mod grpc;
pub mod http;
