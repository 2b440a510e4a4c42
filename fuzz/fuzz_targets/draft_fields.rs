//! The IETF draft's header parsers: Upload-Complete, Content-Digest,
//! Upload-Draft-Interop-Version and the Content-Disposition filename.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tusk::digest::Algorithm;
use tusk::ietf::{Interop, content_digest, disposition_filename, upload_complete};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    complete: Option<&'a [u8]>,
    digest: Option<&'a [u8]>,
    interop: Option<&'a [u8]>,
    disposition: &'a str,
}

fn put(h: &mut HeaderMap, name: &'static str, v: Option<&[u8]>) {
    if let Some(v) = v.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        h.insert(name, v);
    }
}

fuzz_target!(|input: Input| {
    let mut h = HeaderMap::new();
    put(&mut h, "upload-complete", input.complete);
    put(&mut h, "content-digest", input.digest);
    put(&mut h, "upload-draft-interop-version", input.interop);

    let raw_complete = h.get("upload-complete").and_then(|v| v.to_str().ok()).map(str::trim);
    match upload_complete(&h) {
        Ok(None) => assert!(h.get("upload-complete").is_none() || raw_complete.is_none()),
        Ok(Some(b)) => assert_eq!(raw_complete, Some(if b { "?1" } else { "?0" })),
        Err(_) => assert!(!matches!(raw_complete, Some("?0" | "?1"))),
    }
    if let Ok(Some((alg, bytes))) = content_digest(&h) {
        assert!(matches!(alg, Algorithm::Sha256 | Algorithm::Sha512), "{alg:?}");
        let _ = bytes;
    }
    match Interop::from_headers(&h) {
        None => assert!(!h.contains_key("upload-draft-interop-version")),
        Some(Ok(v)) => {
            let raw = h["upload-draft-interop-version"].to_str().unwrap().trim();
            let want = match raw {
                "5" => Interop::V5,
                "6" => Interop::V6,
                "8" => Interop::V8,
                other => panic!("accepted interop version {other:?}"),
            };
            assert_eq!(v, want);
        }
        Some(Err(_)) => {}
    }
    let _ = disposition_filename(input.disposition);
    let _ = disposition_filename(&format!("attachment; filename*=UTF-8''{}", input.disposition));
});
