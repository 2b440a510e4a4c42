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

/// `host[:port]` names this machine: `localhost` (and `*.localhost`, which
/// RFC 6761 reserves for it), 127.0.0.0/8 or `[::1]`. A DNS name that merely
/// resolves to 127.0.0.1 (DNS rebinding) does not count.
pub fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, port)) if port.is_empty() || port.starts_with(':') => h,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => authority,
        },
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

/// A plain-text answer (routing and limits outside any protocol).
pub fn plain(status: http::StatusCode, message: &str) -> Response {
    let mut resp = http::Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:1080",
            "LOCALHOST.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.9.8.7:80",
            "[::1]",
            "[::1]:1080",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "rebind.attacker.example:1080",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]:1",
            "localhost:x",
            "[::1]x",
            "evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
