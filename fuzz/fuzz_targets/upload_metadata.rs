//! `Upload-Metadata` parsing: never panics, stays within its bounds, and what
//! it accepts survives a round trip through the canonical encoding.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use tusk::protocol::{MAX_METADATA_BYTES, MAX_METADATA_PAIRS, Metadata};

fn encode(pairs: &[(String, Vec<u8>)], bare_empty: bool) -> String {
    pairs
        .iter()
        .map(
            |(k, v)| {
                if bare_empty && v.is_empty() { k.clone() } else { format!("{k} {}", STANDARD.encode(v)) }
            },
        )
        .collect::<Vec<_>>()
        .join(",")
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = Metadata::parse(raw) else { return };
    let pairs = &parsed.0;
    assert!(pairs.len() <= MAX_METADATA_PAIRS, "{} pairs accepted", pairs.len());
    if !raw.trim().is_empty() {
        assert!(raw.len() <= MAX_METADATA_BYTES, "{} bytes accepted", raw.len());
        assert!(!pairs.is_empty(), "a non-blank header parsed to no pairs");
    }
    for (k, _) in pairs {
        assert!(!k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b','), "key {k:?}");
    }
    // `key base64(value)` for every pair, as the brief asks. A pair sent as a
    // bare `key` grows by one byte this way, so the byte limit may refuse it;
    // the bare-key form for empty values is never longer than the input.
    let canonical = encode(pairs, false);
    if canonical.len() <= MAX_METADATA_BYTES {
        let back =
            Metadata::parse(&canonical).unwrap_or_else(|e| panic!("re-encoded {canonical:?} refused: {e}"));
        assert_eq!(&back.0, pairs, "round trip of {canonical:?}");
    }
    let compact = encode(pairs, true);
    assert!(compact.len() <= raw.len(), "canonical form {compact:?} is longer than {raw:?}");
    let back = Metadata::parse(&compact).unwrap_or_else(|e| panic!("re-encoded {compact:?} refused: {e}"));
    assert_eq!(&back.0, pairs, "round trip of {compact:?}");
    for (k, v) in pairs {
        assert_eq!(parsed.get(k), Some(v.as_slice()));
    }
});
