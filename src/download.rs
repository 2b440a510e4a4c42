//! Serving stored bytes: Range requests, ETags and safe headers. Used by the
//! tus GET and by signed asset downloads.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};

use crate::http::{Response, empty, set};
use crate::ports::bytes::{ByteStore, Loc};

pub struct Download<'a> {
    pub bytes: &'a ByteStore,
    pub loc: Loc,
    /// Bytes that may be served (the committed offset).
    pub len: u64,
    /// Strong validator, without quotes.
    pub etag: String,
    pub content_type: String,
    pub filename: Option<String>,
}

/// Types a browser may render in place; anything else is an attachment, so an
/// uploaded HTML or SVG file can never run script on this origin.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "text/plain",
    "application/pdf",
];

pub fn is_inline(content_type: &str) -> bool {
    INLINE_TYPES.contains(&content_type)
        || ((content_type.starts_with("audio/") || content_type.starts_with("video/"))
            && !content_type.contains('+'))
}

/// RFC 5987 `attr-char`: what `filename*` may carry unescaped.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `inline|attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline(content_type) { "inline" } else { "attachment" };
    let Some(name) = filename.map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n)).filter(|n| !n.is_empty())
    else {
        return kind.to_string();
    };
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[doc(hidden)]
pub enum RangeSpec {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// A single `bytes=` range; several ranges are answered with the whole body
/// (RFC 9110 allows ignoring Range).
pub fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeSpec::Full };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeSpec::Full };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // suffix: the last n bytes
        return match b.parse::<u64>() {
            Ok(0) => RangeSpec::Unsatisfiable,
            Ok(_) if len == 0 => RangeSpec::Unsatisfiable,
            Ok(n) => RangeSpec::Partial(len.saturating_sub(n), len - 1),
            Err(_) => RangeSpec::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else { return RangeSpec::Full };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeSpec::Full,
        }
    };
    if start >= len { RangeSpec::Unsatisfiable } else { RangeSpec::Partial(start, end) }
}

pub async fn serve(method: &Method, req: &HeaderMap, d: Download<'_>) -> std::io::Result<Response> {
    let etag = format!("\"{}\"", d.etag);
    let mut resp = http::Response::new(empty());
    {
        let h = resp.headers_mut();
        set(h, header::ETAG, &etag);
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        set(h, header::CONTENT_TYPE, &d.content_type);
        set(h, header::CONTENT_DISPOSITION, content_disposition(&d.content_type, d.filename.as_deref()));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(inm) = crate::http::header_str(req, header::IF_NONE_MATCH)
        && (inm == "*" || inm.split(',').any(|t| t.trim().trim_start_matches("W/") == etag))
    {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    let mut range = match crate::http::header_str(req, header::RANGE) {
        Some(r) => parse_range(r, d.len),
        None => RangeSpec::Full,
    };
    if let Some(if_range) = crate::http::header_str(req, header::IF_RANGE)
        && if_range != etag
    {
        range = RangeSpec::Full;
    }
    let (start, count) = match range {
        RangeSpec::Full => (0, d.len),
        RangeSpec::Partial(s, e) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(resp.headers_mut(), header::CONTENT_RANGE, format!("bytes {s}-{e}/{}", d.len));
            (s, e - s + 1)
        }
        RangeSpec::Unsatisfiable => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(resp.headers_mut(), header::CONTENT_RANGE, format!("bytes */{}", d.len));
            set(resp.headers_mut(), header::CONTENT_LENGTH, 0);
            return Ok(resp);
        }
    };
    set(resp.headers_mut(), header::CONTENT_LENGTH, count);
    if method == Method::HEAD || count == 0 {
        return Ok(resp);
    }
    let stream = d.bytes.read(d.loc, start, count).await?;
    let body = StreamBody::new(futures_util::StreamExt::map(stream, |r| r.map(hyper::body::Frame::data)));
    *resp.body_mut() = body.boxed_unsync();
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("text/html", Some("a\"b.html")),
            "attachment; filename=\"a_b.html\"; filename*=UTF-8''a%22b.html"
        );
        assert_eq!(
            content_disposition("application/octet-stream", Some("../../x y.txt")),
            "attachment; filename=\"x y.txt\"; filename*=UTF-8''x%20y.txt"
        );
        assert!(content_disposition("image/svg+xml", Some("p.svg")).starts_with("attachment"));
    }
}
