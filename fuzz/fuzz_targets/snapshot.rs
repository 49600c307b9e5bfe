//! Snapshot restore: any bytes are refused or restored, never a panic or an abort.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chokepoint::state::check_snapshot(data, 200_000, 10_000);
});
