//! CORS for browser clients on other origins (tus-js-client, Uppy).
//!
//! Headers ride on *every* response, errors included: without them a browser
//! reports a network error instead of, say, a 413, and tus-js-client retries
//! what should be fatal.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::CorsOrigins;
use crate::http::Response;

const ALLOW_METHODS: &str = "POST, HEAD, PATCH, OPTIONS, GET, DELETE, PUT";
const ALLOW_HEADERS: &str = "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, \
Content-Type, Content-Disposition, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, \
Upload-Defer-Length, Upload-Concat, Upload-Checksum, Upload-Incomplete, Upload-Complete, \
Upload-Draft-Interop-Version, Content-Digest, Repr-Digest, Want-Repr-Digest, Want-Content-Digest, \
Range, If-None-Match, If-Range, Last-Event-ID, Cache-Control";
const EXPOSE_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, \
Tus-Extension, Tus-Checksum-Algorithm, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Expires, \
Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version, Upload-Limit, Content-Range, \
Content-Disposition, Content-Length, ETag, Repr-Digest, Content-Digest, Accept-Ranges, Accept-Patch";

/// The request's `Origin`, if it is one we answer.
pub enum Origin {
    /// No `Origin` header: not a cross-origin browser request.
    Absent,
    Allowed(HeaderValue),
    Denied,
}

pub fn origin(headers: &HeaderMap, allowed: &CorsOrigins) -> Origin {
    match headers.get(header::ORIGIN) {
        None => Origin::Absent,
        Some(v) => match v.to_str() {
            Ok(s) if allowed.allows(s) => Origin::Allowed(v.clone()),
            _ => Origin::Denied,
        },
    }
}

pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Adds the CORS headers for an allowed origin to any response.
pub fn decorate(resp: &mut Response, origin: &Origin, preflight_request: Option<&HeaderMap>) {
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Origin::Allowed(origin) = origin else { return };
    // The origin is echoed rather than `*` so credentialed requests work too.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    match preflight_request {
        Some(req) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
            // Echo what the browser asks for, so application headers that
            // tus-js-client users add (`headers: {...}`) pass too.
            let allow = req
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static(ALLOW_HEADERS));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        }
        None => {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
        }
    }
}
