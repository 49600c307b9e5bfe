//! The daemon, in one room: [`daemon`] binds, restores, spawns and drains; [`receive`] takes
//! OTLP over gRPC and HTTP and hands batches to the one [`pipeline`] task, which owns the
//! engine and publishes the view; [`query`] serves the HTTP and gRPC APIs over that view;
//! [`stats`] counts everything for `/metrics`. [`listener`], [`tls`] and [`auth`] guard the
//! sockets; [`state`] snapshots the aggregates across restarts; [`config`] is `chokepoint.toml`.

pub mod auth;
pub mod config;
pub mod daemon;
pub mod ledger;
pub mod listener;
pub mod offline;
pub mod pipeline;
pub mod query;
pub mod receive;
pub mod state;
pub mod stats;
pub mod tls;
