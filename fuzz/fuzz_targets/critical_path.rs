//! The critical path on arbitrary span trees (forests, cycles, duplicates, overflowing
//! children): segments in order, inside the root, adding up to its duration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tol = f64::from(data.first().copied().unwrap_or(0) % 4) * 0.01;
    let spans = chokepoint::testkit::spans_from_bytes(data.get(1..).unwrap_or(&[]));
    if let Err(e) = chokepoint::testkit::check_critical_path(spans, tol) {
        panic!("{e}");
    }
});
