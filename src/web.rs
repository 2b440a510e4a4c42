//! The upload page at `/`: static files built from `web/` (see web/README.md)
//! and embedded in the binary, so `tusk serve` needs nothing beside it.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};

use crate::http::{Response, full};

/// (URL path, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../web/dist/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_bytes!("../web/dist/app.js")),
    ("/app.css", "text/css; charset=utf-8", include_bytes!("../web/dist/app.css")),
];

const BASE_PATH_META: &str = r#"<meta name="tusk-base-path" content="/files/">"#;

/// The embedded file at `path`, for GET and HEAD. The page learns the tus
/// endpoint (`--base-path`) from a meta tag filled in here.
pub fn serve(method: &Method, path: &str, base_path: &str) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let path = if path == "/index.html" { "/" } else { path };
    let (_, content_type, bytes) = FILES.iter().find(|(p, _, _)| *p == path)?;
    let bytes: Vec<u8> = if path == "/" && base_path != "/files/" {
        let page = String::from_utf8_lossy(bytes);
        let escaped: String =
            base_path.chars().filter(|c| c.is_ascii_alphanumeric() || "/-_.~%".contains(*c)).collect();
        page.replace(BASE_PATH_META, &format!(r#"<meta name="tusk-base-path" content="{escaped}">"#))
            .into_bytes()
    } else {
        bytes.to_vec()
    };
    let body = if method == Method::HEAD { full(Vec::new()) } else { full(bytes) };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(resp)
}
