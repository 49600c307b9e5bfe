//! Any bytes as a trace file (format detected from the content, gzip transparent), through
//! the whole offline pipeline: never a panic, and the books balance.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut batches = Vec::new();
    let mut sink = |_: chokepoint::ingest::Location,
                    rs: chokepoint::ingest::batch::Batch,
                    _: chokepoint::model::problem::BatchReport| batches.push(rs);
    let _ = chokepoint::ingest::file::read_bytes(std::path::Path::new("fuzz"), data, &mut sink);
    if let Err(e) = chokepoint::testkit::check_engine(&batches) {
        panic!("{e}");
    }
});
