//! OTLP/JSON documents: never a panic, and the books balance.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<chokepoint::ingest::otlp_json::JsonDocument>(data) {
        let mut report = chokepoint::model::problem::BatchReport::default();
        let rs = chokepoint::ingest::otlp_json::to_proto(&doc, &mut report);
        if let Err(e) = chokepoint::testkit::check_engine(&[rs.into()]) {
            panic!("{e}");
        }
    }
});
