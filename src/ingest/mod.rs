//! Decoding: formats in, [`model::Span`](crate::model::Span)s out. The only code that reads
//! OTLP (protobuf, zero-copy [`otlp_wire`], or JSON), Jaeger and Zipkin; it knows nothing of
//! the daemon, so replay and the receivers of [`crate::serve`] share it whole.
//!
//! Every source ends in the same [`Normalizer::normalize`]: one conversion, one set of rules
//! for names and peers. [`local`] runs a normalizer per thread (receiver threads, replay's
//! readers) and renumbers their names into the engine's table.

pub mod batch;
pub mod encode;
pub mod fault_text;
pub mod file;
mod ids;
pub mod jaeger;
pub mod local;
pub mod normalize;
pub mod otlp_json;
pub mod otlp_wire;
pub mod zipkin;

pub use file::{read_path, read_path_counted, FileError, FileSummary, Format, Location};
pub use normalize::{Normalizer, UNKNOWN_SERVICE};
