//! Snapshot restore: any bytes are refused or restored, never a panic or an abort. Half the
//! inputs are framed with a valid header and checksum first, so the payload decoder behind
//! the checksum is fuzzed too (random bytes almost never pass a CRC-32).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&tag, payload)) if tag & 1 == 1 => {
            let _ = chokepoint::serve::state::check_snapshot(
                &chokepoint::serve::state::frame(payload),
                200_000,
                10_000,
            );
        }
        _ => {
            let _ = chokepoint::serve::state::check_snapshot(data, 200_000, 10_000);
        }
    }
});
