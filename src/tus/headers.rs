//! tus request headers, parsed once into typed values.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::error::TusError;
use crate::digest::{Algorithm, ExpectedDigest};
use crate::http::{header_str, media_type};
use crate::protocol::{self, Metadata, OFFSET_STREAM};
use crate::record::Offset;

pub const TUS_VERSION: &str = "1.0.0";

pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
pub const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
pub const UPLOAD_CONCAT: &str = "upload-concat";
pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
pub const UPLOAD_EXPIRES: &str = "upload-expires";
pub const TUS_RESUMABLE: &str = "tus-resumable";

/// 412 unless `Tus-Resumable: 1.0.0`. With `optional`, a missing header is fine
/// (HEAD: browsers and some clients omit it) but a different version is not.
pub fn check_version(headers: &HeaderMap, optional: bool) -> Result<(), TusError> {
    match header_str(headers, TUS_RESUMABLE) {
        Some(TUS_VERSION) => Ok(()),
        None if optional => Ok(()),
        other => Err(TusError::new(
            StatusCode::PRECONDITION_FAILED,
            "ERR_UNSUPPORTED_VERSION",
            match other {
                None => "missing Tus-Resumable header; this server speaks tus 1.0.0".to_string(),
                Some(v) => format!("Tus-Resumable {v:?} is not supported; this server speaks tus 1.0.0"),
            },
        )
        .with_header(http::header::HeaderName::from_static("tus-version"), TUS_VERSION)),
    }
}

/// A non-negative decimal that fits an i64, as tus requires for lengths and offsets.
pub fn parse_u64(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, TusError> {
    protocol::parse_u64(headers, name).map_err(|m| TusError::bad_request("ERR_INVALID_HEADER", m))
}

pub fn upload_offset(headers: &HeaderMap) -> Result<Offset, TusError> {
    match parse_u64(headers, UPLOAD_OFFSET)? {
        Some(v) => Ok(Offset(v)),
        None => Err(TusError::bad_request("ERR_INVALID_OFFSET", "missing Upload-Offset header")),
    }
}

/// `Content-Type: application/offset+octet-stream` (parameters and case ignored).
pub fn is_offset_stream(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some(OFFSET_STREAM)
}

/// The request announces a body: a non-zero `Content-Length` or chunked encoding.
pub fn has_body(headers: &HeaderMap) -> bool {
    match header_str(headers, http::header::CONTENT_LENGTH) {
        Some(n) => n != "0",
        None => headers.contains_key(http::header::TRANSFER_ENCODING),
    }
}

/// How the creation request declares the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredLength {
    Known(u64),
    Deferred,
}

pub fn declared_length(headers: &HeaderMap) -> Result<Option<DeclaredLength>, TusError> {
    let length = parse_u64(headers, UPLOAD_LENGTH)?;
    let defer = header_str(headers, UPLOAD_DEFER_LENGTH);
    match (length, defer) {
        (Some(_), Some(_)) => Err(TusError::bad_request(
            "ERR_AMBIGUOUS_UPLOAD_LENGTH",
            "send either Upload-Length or Upload-Defer-Length, not both",
        )),
        (Some(n), None) => Ok(Some(DeclaredLength::Known(n))),
        (None, Some("1")) => Ok(Some(DeclaredLength::Deferred)),
        (None, Some(v)) => Err(TusError::bad_request(
            "ERR_INVALID_UPLOAD_DEFER_LENGTH",
            format!("Upload-Defer-Length must be 1, got {v:?}"),
        )),
        (None, None) => Ok(None),
    }
}

pub fn metadata(headers: &HeaderMap) -> Result<Option<(String, Metadata)>, TusError> {
    protocol::metadata(headers).map_err(|m| TusError::bad_request("ERR_INVALID_METADATA", m))
}

/// `Upload-Concat` on creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcatRequest {
    Partial,
    /// The referenced upload URLs, in order, and the header as sent.
    Final {
        urls: Vec<String>,
        header: String,
    },
}

pub fn concat(headers: &HeaderMap) -> Result<Option<ConcatRequest>, TusError> {
    let Some(raw) = header_str(headers, UPLOAD_CONCAT) else { return Ok(None) };
    if raw == "partial" {
        return Ok(Some(ConcatRequest::Partial));
    }
    if let Some(list) = raw.strip_prefix("final;") {
        let urls: Vec<String> = list.split_whitespace().map(str::to_string).collect();
        if !urls.is_empty() {
            return Ok(Some(ConcatRequest::Final { urls, header: raw.to_string() }));
        }
    }
    Err(TusError::bad_request(
        "ERR_INVALID_CONCAT",
        format!("Upload-Concat must be \"partial\" or \"final;<url> <url> ...\", got {raw:?}"),
    ))
}

/// The id in an upload URL as sent in `Upload-Concat: final;...` — an absolute
/// URL (tus-js-client), an absolute path, or a path relative to the base.
pub fn id_from_url(url: &str, base_path: &str) -> Option<Uuid> {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let tail = path.strip_prefix(base_path).unwrap_or(path);
    let tail = tail.trim_start_matches('/');
    if tail.contains('/') {
        return None;
    }
    Uuid::try_parse(tail).ok()
}

/// `Upload-Checksum: <algorithm> <base64 digest>`, from a header or trailer.
pub fn checksum_value(raw: &str) -> Result<ExpectedDigest, TusError> {
    let (name, b64) = raw.trim().split_once(' ').ok_or_else(|| {
        TusError::bad_request(
            "ERR_INVALID_CHECKSUM",
            "Upload-Checksum must be \"<algorithm> <base64 digest>\"",
        )
    })?;
    let algorithm = Algorithm::from_tus_name(name).ok_or_else(|| {
        TusError::bad_request(
            "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
            format!("checksum algorithm {name:?} is not supported; use one of {}", Algorithm::TUS_LIST),
        )
    })?;
    let digest = STANDARD.decode(b64.trim()).map_err(|_| {
        TusError::bad_request(
            "ERR_INVALID_CHECKSUM",
            format!("Upload-Checksum digest {b64:?} is not valid base64"),
        )
    })?;
    Ok(ExpectedDigest { algorithm, digest })
}

pub fn checksum(headers: &HeaderMap) -> Result<Option<ExpectedDigest>, TusError> {
    match headers.get(UPLOAD_CHECKSUM) {
        None => Ok(None),
        Some(v) => checksum_value(v.to_str().unwrap_or("")).map(Some),
    }
}

/// The client announced `Upload-Checksum` as a trailer (`Trailer: Upload-Checksum`).
pub fn checksum_trailer_announced(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case(UPLOAD_CHECKSUM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_urls() {
        let id = "019de7f7-3a52-74d1-9eeb-323e0bfb7bb9";
        for url in [
            format!("http://h:1080/files/{id}"),
            format!("/files/{id}"),
            id.to_string(),
            format!("https://x.example/files/{id}?a=b"),
        ] {
            assert_eq!(id_from_url(&url, "/files/").unwrap().to_string(), id, "{url}");
        }
        assert!(id_from_url("/files/../etc/passwd", "/files/").is_none());
        assert!(id_from_url("/files/a/b", "/files/").is_none());
    }
}
