//! End-to-end tests, one binary. Table of contents:
//! - `realdata`: every file in ../shared/realdata is read, and shows what its README says a
//!   careful reader finds;
//! - `golden`: each scenario file in testdata/ gives exactly its checked-in graph
//!   (`UPDATE_EXPECT=1 cargo test` rewrites the expectations; review the diff like code);
//! - `bad_input`: malformed input gets a clear message naming file and line or span, and the
//!   good data beside it still counts;
//! - `cli`: the `chokepoint` binary's commands and formats.

mod suite;
