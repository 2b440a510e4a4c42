//! `Upload-Concat` parsing and the upload ids taken from its URLs.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tusk::tus::headers::{ConcatRequest, concat, id_from_url};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert("upload-concat", value);
    match concat(&headers) {
        Ok(Some(ConcatRequest::Final { urls, header })) => {
            assert!(!urls.is_empty(), "final with no urls from {header:?}");
            assert!(header.starts_with("final;"), "{header:?}");
            for url in &urls {
                assert!(!url.is_empty() && !url.contains(char::is_whitespace), "url {url:?}");
                if let Some(id) = id_from_url(url, "/files/") {
                    // The id is spelled out in the URL (any form Uuid::try_parse takes).
                    let lower = url.to_ascii_lowercase();
                    assert!(
                        lower.contains(&id.to_string()) || lower.contains(&id.simple().to_string()),
                        "id {id} not in {url:?}"
                    );
                }
            }
        }
        Ok(Some(ConcatRequest::Partial)) | Ok(None) | Err(_) => {}
    }
    // Any string at all, not only what the header parser lets through.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = id_from_url(s, "/files/");
        let _ = id_from_url(s, "/");
    }
});
