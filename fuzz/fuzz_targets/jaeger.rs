//! Jaeger JSON: never a panic, and the books balance.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<chokepoint::ingest::jaeger::JaegerDocument>(data) {
        let rs = chokepoint::ingest::jaeger::to_proto(&doc);
        if let Err(e) = chokepoint::testkit::check_engine(&[rs.into()]) {
            panic!("{e}");
        }
    }
});
