//! tus request headers, parsed once into typed values.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::error::TusError;
use crate::digest::{Algorithm, ExpectedDigest};
use crate::http::{header_str, media_type};
use crate::store::Offset;

pub const TUS_VERSION: &str = "1.0.0";
pub const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
pub const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
pub const UPLOAD_METADATA: &str = "upload-metadata";
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
    let Some(raw) = headers.get(name) else { return Ok(None) };
    let s = raw.to_str().unwrap_or("").trim();
    let valid = !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u64>() {
        Ok(v) if valid && v <= i64::MAX as u64 => Ok(Some(v)),
        _ => Err(TusError::bad_request(
            "ERR_INVALID_HEADER",
            format!("{name} must be a non-negative integer, got {s:?}"),
        )),
    }
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

/// `Content-Length` as sent (hyper has already refused a malformed one).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
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

/// Most metadata pairs an upload may carry (tus `Upload-Metadata`, the
/// `/v1` JSON `metadata`). Every record is read whole on each request for
/// it, copied into events and listed in pages: its size must be bounded.
pub const MAX_METADATA_PAIRS: usize = 256;
/// Most bytes of metadata: the `Upload-Metadata` header as sent, or the
/// keys and values of the `/v1` JSON `metadata` together.
pub const MAX_METADATA_BYTES: usize = 16 << 10;

/// Parsed `Upload-Metadata`: keys in order, values as raw bytes (maybe not UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(pub Vec<(String, Vec<u8>)>);

impl Metadata {
    /// Strict parse: `key base64,key base64,key`; 400 on anything else.
    /// Linear in the header's length, which is bounded first.
    pub fn parse(raw: &str) -> Result<Metadata, String> {
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if raw.trim().is_empty() {
            return Ok(Metadata(pairs)); // tuspy always sends the header, often empty
        }
        if raw.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "Upload-Metadata is {} bytes; this server accepts at most {MAX_METADATA_BYTES}",
                raw.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for item in raw.split(',') {
            if pairs.len() == MAX_METADATA_PAIRS {
                return Err(format!("Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs"));
            }
            let item = item.trim();
            let (key, value) = match item.split_once(' ') {
                Some((k, v)) => (k, v),
                None => (item, ""),
            };
            if key.is_empty() {
                return Err(
                    "Upload-Metadata has an empty key (two commas in a row or a trailing comma?)".into()
                );
            }
            if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(format!(
                    "Upload-Metadata key {key:?} must be printable ASCII without spaces or commas"
                ));
            }
            if value.contains(' ') {
                return Err(format!("Upload-Metadata value for {key:?} must be one base64 string"));
            }
            let bytes = STANDARD
                .decode(value)
                .map_err(|_| format!("Upload-Metadata value for {key:?} is not valid base64: {value:?}"))?;
            if !seen.insert(key) {
                return Err(format!("Upload-Metadata key {key:?} appears twice"));
            }
            pairs.push((key.to_string(), bytes));
        }
        Ok(Metadata(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

pub fn metadata(headers: &HeaderMap) -> Result<Option<(String, Metadata)>, TusError> {
    let Some(raw) = headers.get(UPLOAD_METADATA) else { return Ok(None) };
    let raw = raw
        .to_str()
        .map_err(|_| TusError::bad_request("ERR_INVALID_METADATA", "Upload-Metadata must be ASCII"))?;
    let parsed = Metadata::parse(raw).map_err(|m| TusError::bad_request("ERR_INVALID_METADATA", m))?;
    Ok(Some((raw.to_string(), parsed)))
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
    fn metadata_forms() {
        let m =
            Metadata::parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,empty ").unwrap();
        assert_eq!(m.get_str("filename"), Some("world_domination_plan.pdf"));
        assert_eq!(m.get("is_confidential"), Some(&b""[..]));
        assert_eq!(m.get("empty"), Some(&b""[..]));
        assert!(Metadata::parse("").unwrap().0.is_empty());
        assert!(Metadata::parse("a !!!").is_err());
        assert!(Metadata::parse("a YQ==,a YQ==").is_err());
        assert!(Metadata::parse("a YQ==,,b").is_err());
        assert!(Metadata::parse("a YQ").is_err(), "unpadded base64 is refused");
    }

    #[test]
    fn metadata_is_bounded() {
        let pairs = |n: usize| (0..n).map(|i| format!("k{i} YQ==")).collect::<Vec<_>>().join(",");
        assert_eq!(Metadata::parse(&pairs(MAX_METADATA_PAIRS)).unwrap().0.len(), MAX_METADATA_PAIRS);
        let err = Metadata::parse(&pairs(MAX_METADATA_PAIRS + 1)).unwrap_err();
        assert!(err.contains("256 pairs"), "{err}");
        let big = format!("k {}", "A".repeat(MAX_METADATA_BYTES));
        assert!(Metadata::parse(&big).unwrap_err().contains("at most 16384"));
    }

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
