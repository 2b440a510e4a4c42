//! `Upload-Checksum: <algorithm> <base64>` parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tusk::tus::headers::checksum_value;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(d) = checksum_value(raw) {
        let name = raw.trim().split(' ').next().unwrap_or("");
        assert_eq!(tusk::digest::Algorithm::from_tus_name(name), Some(d.algorithm), "{raw:?}");
    }
});
