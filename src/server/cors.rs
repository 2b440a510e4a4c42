//! CORS for browser clients on other origins (tus-js-client, Uppy).
//!
//! Headers ride on *every* response, errors included: without them a browser
//! reports a network error instead of, say, a 413, and tus-js-client retries
//! what should be fatal.
//!
//! Which origins: those of `--cors-origins`; when it is not set, any origin
//! once API keys are in use (a key is needed anyway) but only pages on this
//! machine in open mode, where any page could otherwise read and delete
//! every asset. A same-origin request (the page at `/`) is always allowed.
//! `Access-Control-Allow-Credentials` is sent only with
//! `--cors-allow-credentials` and an explicit list: tusk never uses cookies.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::{Config, CorsOrigins};
use crate::http::{Response, is_loopback_host};

const ALLOW_METHODS: &str = "POST, HEAD, PATCH, OPTIONS, GET, DELETE, PUT";
const ALLOW_HEADERS: &str = "Authorization, X-Api-Key, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, \
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
    Allowed {
        origin: HeaderValue,
        credentials: bool,
    },
    Denied,
}

/// Judges the request's `Origin`. `open`: the server runs without keys now.
pub fn origin(headers: &HeaderMap, cfg: &Config, open: bool) -> Origin {
    let Some(v) = headers.get(header::ORIGIN) else { return Origin::Absent };
    let Ok(origin) = v.to_str() else { return Origin::Denied };
    let host = origin.split_once("://").map_or("", |(_, h)| h);
    let same_origin =
        crate::http::header_str(headers, header::HOST).is_some_and(|h| h.eq_ignore_ascii_case(host));
    let allowed = same_origin
        || match &cfg.cors {
            Some(list) => list.allows(origin),
            None => !open || is_loopback_host(host),
        };
    if !allowed {
        return Origin::Denied;
    }
    let credentials = cfg.cors_allow_credentials && matches!(cfg.cors, Some(CorsOrigins::List(_)));
    Origin::Allowed { origin: v.clone(), credentials }
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
    let Origin::Allowed { origin, credentials } = origin else { return };
    // Echoed rather than `*`: the answer differs by origin (hence `Vary`).
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if *credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
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
