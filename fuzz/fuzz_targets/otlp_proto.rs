//! OTLP protobuf, through the borrowing wire reader: never a panic, the same spans as prost
//! whenever prost decodes the bytes too, and the books balance through the whole pipeline.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = chokepoint::testkit::check_wire_matches_prost(data) {
        panic!("{e}");
    }
    if let Ok(w) = chokepoint::ingest::batch::WireBatch::new(data.to_vec().into()) {
        let batch = chokepoint::ingest::batch::Batch::Wire(w);
        if let Err(e) = chokepoint::testkit::check_engine(&[batch]) {
            panic!("{e}");
        }
    }
});
