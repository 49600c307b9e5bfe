//! Zipkin v2 JSON: never a panic, and the books balance.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spans) = serde_json::from_slice::<Vec<chokepoint::ingest::zipkin::ZipkinSpan>>(data) {
        let rs = chokepoint::ingest::zipkin::to_proto(spans);
        if let Err(e) = chokepoint::testkit::check_engine(&[rs.into()]) {
            panic!("{e}");
        }
    }
});
