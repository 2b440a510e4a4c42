//! Small HTTP helpers shared by every protocol module.

use std::io;

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Response body: empty, a buffer, or a file stream.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;
pub type Response = http::Response<Body>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A header value as trimmed text, if present and visible ASCII.
pub fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

pub fn set(headers: &mut HeaderMap, name: HeaderName, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, v);
    }
}

/// Media type of a `Content-Type` header without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, http::header::CONTENT_TYPE)
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// `scheme://host` for URLs handed back to the client. Forwarding headers are
/// trusted only when configured, since any client can send them.
pub fn public_origin(headers: &HeaderMap, uri: &http::Uri, behind_proxy: bool) -> String {
    let mut scheme = uri.scheme_str().unwrap_or("http").to_string();
    let mut host = header_str(headers, HOST)
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    if behind_proxy {
        if let Some(fwd) = header_str(headers, "forwarded") {
            // First hop only: `Forwarded: for=..;host=example.com;proto=https, for=..`
            let first = fwd.split(',').next().unwrap_or("");
            for pair in first.split(';') {
                let mut kv = pair.splitn(2, '=');
                let key = kv.next().unwrap_or("").trim().to_ascii_lowercase();
                let val = kv.next().unwrap_or("").trim().trim_matches('"');
                match key.as_str() {
                    "host" if !val.is_empty() => host = val.to_string(),
                    "proto" if !val.is_empty() => scheme = val.to_ascii_lowercase(),
                    _ => {}
                }
            }
        }
        if let Some(h) = header_str(headers, "x-forwarded-host") {
            let h = h.split(',').next().unwrap_or("").trim();
            if !h.is_empty() {
                host = h.to_string();
            }
        }
        if let Some(p) = header_str(headers, "x-forwarded-proto") {
            let p = p.split(',').next().unwrap_or("").trim().to_ascii_lowercase();
            if p == "http" || p == "https" {
                scheme = p;
            }
        }
    }
    if scheme != "http" && scheme != "https" {
        scheme = "http".to_string();
    }
    // A host with characters that do not belong in one is not echoed into a URL.
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c)) {
        host = "localhost".to_string();
    }
    format!("{scheme}://{host}")
}
