//! HEAD: offset retrieval.
mod common;
use common::*;

#[test]
fn offset_length_metadata() {
    let s = Server::start(&[]);
    // Metadata echoed byte for byte, including an empty value, a key without
    // value and non-UTF-8 bytes.
    let meta = format!("filename {},flag,empty ,bin {}", b64s("ü ä.txt"), b64(&[0xff, 0x00, 0xfe]));
    let path = s.create(10, &[("Upload-Metadata", &meta)]);
    let h = s.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(h.header("upload-length"), Some("10"));
    assert_eq!(h.header("upload-defer-length"), None);
    assert_eq!(h.header("upload-metadata"), Some(meta.as_str()));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    assert_eq!(h.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(h.header("upload-concat"), None);
    let exp = h.header("upload-expires").expect("Upload-Expires while incomplete");
    let at = httpdate::parse_http_date(exp).expect("HTTP-date");
    assert!(at > std::time::SystemTime::now());
    assert!(h.body.is_empty());

    assert_eq!(s.patch(&path, 0, b"abcd", &[]).status, 204);
    assert_eq!(s.head(&path).header("upload-offset"), Some("4"));
    assert_eq!(s.patch(&path, 4, b"efghij", &[]).status, 204);
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("10"));
    assert_eq!(h.header("upload-length"), Some("10"));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    assert_eq!(h.header("upload-expires"), None, "complete uploads do not expire");

    // No metadata sent: none reported.
    let path = s.create(3, &[]);
    assert_eq!(s.head(&path).header("upload-metadata"), None);
}

#[test]
fn deferred_length() {
    let s = Server::start(&[]);
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Defer-Length", "1")], b"");
    let path = Server::path_of(r.header("location").unwrap());
    let h = s.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-defer-length"), Some("1"));
    assert_eq!(h.header("upload-length"), None);
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(s.patch(&path, 0, b"abc", &[("Upload-Length", "3")]).status, 204);
    let h = s.head(&path);
    assert_eq!(h.header("upload-defer-length"), None);
    assert_eq!(h.header("upload-length"), Some("3"));
    assert_eq!(h.header("upload-offset"), Some("3"));
}

#[test]
fn unknown_gone_invalid() {
    let s = Server::start(&[]);
    let h = s.head("/files/0193c0de-0000-7000-8000-000000000000");
    assert_eq!(h.status, 404);
    assert_eq!(h.header("upload-offset"), None);
    assert_eq!(h.header("tus-resumable"), Some("1.0.0"));
    for bad in ["/files/not-a-uuid", "/files/..%2F..%2Fetc%2Fpasswd", "/files/a/b"] {
        let h = s.head(bad);
        assert_eq!(h.status, 404, "{bad}");
        assert_eq!(h.header("upload-offset"), None);
    }

    let path = s.create(10, &[]);
    assert_eq!(s.request("DELETE", &path, &[TUS], b"").status, 204);
    let h = s.head(&path);
    assert_eq!(h.status, 410);
    assert_eq!(h.header("upload-offset"), None);
    assert_eq!(h.header("cache-control"), None);
}

#[test]
fn version_header() {
    let s = Server::start(&[]);
    let path = s.create(10, &[]);
    // Missing: allowed on HEAD.
    let h = s.request("HEAD", &path, &[], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("0"));
    // Present with another version: 412.
    let h = s.request("HEAD", &path, &[("Tus-Resumable", "0.2.2")], b"");
    assert_eq!(h.status, 412);
    assert_eq!(h.header("tus-version"), Some("1.0.0"));
    assert_eq!(h.header("upload-offset"), None);
}
