//! The `Range` header of downloads: a satisfiable range lies within the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tusk::download::{RangeSpec, parse_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    // First byte picks how the length is made: small lengths hit the edges.
    let raw = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let len = match data[0] % 4 {
        0 => raw % 4,
        1 => raw % 1024,
        2 => u64::MAX - (raw % 4),
        _ => raw,
    };
    let Ok(value) = std::str::from_utf8(&data[9..]) else { return };
    match parse_range(value, len) {
        RangeSpec::Partial(start, end) => {
            assert!(start <= end, "{value:?} (len {len}): start {start} > end {end}");
            assert!(end < len, "{value:?} (len {len}): end {end} past the body");
        }
        RangeSpec::Full | RangeSpec::Unsatisfiable => {}
    }
});
