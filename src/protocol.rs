//! What the tus and draft handlers share: the `Upload-Metadata` grammar and
//! its bounds, number headers, the asset a creation makes, an upload's URL and
//! the limits both advertise. Each protocol imports this and neither imports
//! the other; errors are plain messages each protocol answers in its format.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use uuid::Uuid;

use crate::app::App;
use crate::asset::AssetInfo;
use crate::http::header_str;

/// The media type of a tus PATCH body (and of a draft-03 append).
pub const OFFSET_STREAM: &str = "application/offset+octet-stream";
pub const UPLOAD_METADATA: &str = "upload-metadata";

/// A non-negative decimal that fits an i64, as tus requires for lengths and offsets.
pub fn parse_u64(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, String> {
    let Some(raw) = headers.get(name) else { return Ok(None) };
    let s = raw.to_str().unwrap_or("").trim();
    let valid = !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u64>() {
        Ok(v) if valid && v <= i64::MAX as u64 => Ok(Some(v)),
        _ => Err(format!("{name} must be a non-negative integer, got {s:?}")),
    }
}

/// `Content-Length` as sent (hyper has already refused a malformed one).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
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

/// `Upload-Metadata` as sent and parsed, if present.
pub fn metadata(headers: &HeaderMap) -> Result<Option<(String, Metadata)>, String> {
    let Some(raw) = headers.get(UPLOAD_METADATA) else { return Ok(None) };
    let raw = raw.to_str().map_err(|_| "Upload-Metadata must be ASCII".to_string())?;
    Ok(Some((raw.to_string(), Metadata::parse(raw)?)))
}

/// The file's media type a creation declares in its metadata.
pub fn declared_type(m: &Metadata) -> Option<&str> {
    ["filetype", "type", "content_type", "contentType", "mimetype"].iter().find_map(|k| m.get_str(k))
}

/// The asset a creation makes: name from `filename` (or `name`), the
/// optional `language` hint, and the metadata as a string map.
pub fn new_asset(metadata: Option<&Metadata>) -> Result<AssetInfo, String> {
    let Some(m) = metadata else { return Ok(AssetInfo::new(None, None, Default::default())) };
    let language = match m.get("language") {
        None => None,
        Some(v) => {
            let code = std::str::from_utf8(v).unwrap_or("");
            if !crate::asset::lang::is_iso639_1(code) {
                return Err(format!(
                    "metadata language {code:?} is not a lowercase ISO 639-1 code such as \"en\""
                ));
            }
            Some(code.to_string())
        }
    };
    let name = m.get_str("filename").or(m.get_str("name")).map(str::to_string);
    let map = m.0.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
    Ok(AssetInfo::new(name, language, map))
}

/// The absolute URL of an upload, as `Location` and concatenation lists use it.
pub fn upload_url(app: &App, req_headers: &HeaderMap, uri: &http::Uri, id: Uuid) -> String {
    let origin = crate::http::public_origin(req_headers, uri, app.cfg.behind_proxy);
    format!("{origin}{}{id}", app.cfg.base_path)
}

/// `Upload-Limit` (a structured dictionary): the size limit and how long an
/// unfinished upload is kept, as `expires` (drafts before 07, `legacy_expires`)
/// or `max-age`.
pub fn upload_limit(app: &App, legacy_expires: bool) -> String {
    let mut parts = vec!["min-size=0".to_string()];
    if let Some(max) = app.cfg.max_size {
        parts.push(format!("max-size={max}"));
    }
    let age = app.cfg.expire_after.as_secs();
    parts.push(if legacy_expires { format!("expires={age}") } else { format!("max-age={age}") });
    parts.join(", ")
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
}
