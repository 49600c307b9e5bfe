//! End-to-end tests, one binary (`tests/suite/`). Table of contents, one line a suite:
//! - `tidy`: imports run one way (model ← ingest ← analyze ← report ← api ← scale ← serve
//!   ← cli), no circles between files or folders, and ARCHITECTURE.md's code map names every
//!   source file;
//! - `golden`: each scenario file in testdata/ gives exactly its checked-in graph and findings
//!   (`UPDATE_EXPECT=1 cargo test golden` rewrites the expectations; review the diff like code);
//! - `realdata`: every file in ../shared/realdata is read, and shows what its README says a
//!   careful reader finds;
//! - `findings`: the right weak spot named in each shop scenario, quiet on a healthy system;
//! - `nodes`: nodes and traffic as users know them, a lab system per lesson;
//! - `severity`: severity from evidence, change detection, failures biting now;
//! - `harm`: a SPOF is what its loss takes down, and a failing one is named now;
//! - `bad_input`: malformed input gets a clear message naming file and line or span, and the
//!   good data beside it still counts;
//! - `properties`: the fuzz targets' invariants as property tests;
//! - `cli`: the `chokepoint` binary's commands and formats;
//! - `daemon`: `chokepoint serve` end to end with real clients (`exporters`), bad input over
//!   the wire (`wire`), restarts and the memory budget (`state`), the API and its consumers
//!   (`api`), tokens, Host and CORS (`guards`);
//! - `tls`: TLS on every listener, mutual TLS, rotation, timeouts and the connection cap;
//! - `scaleout`: two instances remote-writing to a real Prometheus, summed by `query`;
//! - `dashboard`: the web dashboard in headless Chromium;
//! - `deploy`: the Kubernetes manifests render, validate and match the daemon's ports, paths
//!   and memory; the alert rules load and fire in promtool; the Collector recipes;
//! - `proto`: the checked-in gRPC code is what proto/ generates.

mod suite;
