//! GET on an upload URL: bytes so far, Range, ETag, safe headers.
mod common;
use common::*;

#[test]
fn bytes_so_far_and_complete() {
    let s = Server::start(&[]);
    let data = bytes(10_000, 41);
    let path = s.create(10_000, &[]);
    let g = s.get(&path);
    assert_eq!(g.status, 200, "{g:?}");
    assert!(g.body.is_empty());
    assert_eq!(s.patch(&path, 0, &data[..4000], &[]).status, 204);
    let g = s.get(&path);
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-length"), Some("4000"));
    assert_eq!(g.body, &data[..4000]);
    assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
    let etag_partial = g.header("etag").unwrap().to_string();
    assert_eq!(s.patch(&path, 4000, &data[4000..], &[]).status, 204);
    let g = s.get(&path);
    assert_eq!(g.body, data);
    let etag = g.header("etag").unwrap().to_string();
    assert_ne!(etag, etag_partial, "ETag changes as bytes arrive");
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&data)), "complete ETag is the SHA-256");

    assert_eq!(s.get("/files/0193c0de-0000-7000-8000-000000000000").status, 404);
    assert_eq!(s.get("/files/../../etc/passwd").status, 404);
}

#[test]
fn ranges() {
    let s = Server::start(&[]);
    let data = bytes(1000, 42);
    let path = s.create(2000, &[]);
    assert_eq!(s.patch(&path, 0, &data, &[]).status, 204);
    let range = |r: &str| s.request("GET", &path, &[("Range", r)], b"");

    let g = range("bytes=0-9");
    assert_eq!(g.status, 206);
    assert_eq!(g.header("content-range"), Some("bytes 0-9/1000"));
    assert_eq!(g.body, &data[..10]);
    let g = range("bytes=990-");
    assert_eq!(g.status, 206);
    assert_eq!(g.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(g.body, &data[990..]);
    let g = range("bytes=500-5000");
    assert_eq!(g.status, 206);
    assert_eq!(g.header("content-range"), Some("bytes 500-999/1000"));
    assert_eq!(g.body, &data[500..]);
    // Suffix ranges: the last n bytes, or all if n is larger.
    let g = range("bytes=-10");
    assert_eq!(g.status, 206);
    assert_eq!(g.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(g.body, &data[990..]);
    let g = range("bytes=-5000");
    assert_eq!(g.status, 206);
    assert_eq!(g.header("content-range"), Some("bytes 0-999/1000"));
    assert_eq!(g.body, data);
    // Past the stored bytes (even if inside the declared length): 416.
    for r in ["bytes=1000-", "bytes=1500-1600", "bytes=-0"] {
        let g = range(r);
        assert_eq!(g.status, 416, "{r}: {g:?}");
        assert_eq!(g.header("content-range"), Some("bytes */1000"), "{r}");
        assert!(g.body.is_empty());
    }
    // Unparsable or multiple ranges: the whole body.
    for r in ["items=0-1", "bytes=5-1", "bytes=0-1,5-6"] {
        let g = range(r);
        assert_eq!(g.status, 200, "{r}");
        assert_eq!(g.body, data);
    }
}

#[test]
fn etag_if_none_match() {
    let s = Server::start(&[]);
    let path = s.create(5, &[]);
    assert_eq!(s.patch(&path, 0, b"hello", &[]).status, 204);
    let etag = s.get(&path).header("etag").unwrap().to_string();
    let g = s.request("GET", &path, &[("If-None-Match", &etag)], b"");
    assert_eq!(g.status, 304, "{g:?}");
    assert!(g.body.is_empty());
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    let g = s.request("GET", &path, &[("If-None-Match", "\"other\", W/".to_string().as_str())], b"");
    assert_eq!(g.status, 200);
    let g = s.request("GET", &path, &[("If-None-Match", &format!("\"x\", W/{etag}"))], b"");
    assert_eq!(g.status, 304);
}

fn filename_param(cd: &str) -> &str {
    let i = cd.find("filename=\"").expect("filename") + "filename=\"".len();
    let rest = &cd[i..];
    &rest[..rest.find('"').expect("closing quote")]
}

#[test]
fn safe_content_disposition() {
    let s = Server::start(&[]);
    for (name, want) in [
        ("\"><script>.html", None),
        ("../../etc/passwd", Some("passwd")),
        ("..\\..\\win.ini", Some("win.ini")),
    ] {
        let meta = format!("filename {},filetype {}", b64s(name), b64s("image/png"));
        let path = s.create(30, &[("Upload-Metadata", &meta)]);
        assert_eq!(s.patch(&path, 0, b"<script>alert(1)</script>\r\n\r\nX", &[]).status, 204);
        let g = s.get(&path);
        assert_eq!(g.status, 200);
        let ct = g.header("content-type").unwrap();
        assert_ne!(ct, "image/png", "metadata filetype is not trusted");
        let cd = g.header("content-disposition").unwrap();
        if ct.contains("html") || ct.contains("xml") || ct.contains("svg") {
            assert!(cd.starts_with("attachment"), "{ct} must not render inline: {cd}");
        }
        assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
        let cd = g.header("content-disposition").unwrap();
        assert_eq!(g.headers["content-disposition"].len(), 1);
        let fname = filename_param(cd);
        assert!(!fname.contains('/') && !fname.contains('\\') && !fname.contains(".."), "{cd}");
        // Exactly one quoted filename, then an RFC 5987 extended one.
        assert_eq!(cd.matches('"').count(), 2, "{cd}");
        assert!(cd.contains("filename*=UTF-8''"), "{cd}");
        if let Some(w) = want {
            assert_eq!(fname, w, "{cd}");
        }
    }
}

#[test]
fn content_type_sniffed() {
    let s = Server::start(&[]);
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/pic.png")).unwrap();
    let meta = format!("filename {},filetype {}", b64s("x.txt"), b64s("text/plain"));
    let path = s.create(png.len() as u64, &[("Upload-Metadata", &meta)]);
    // Only a prefix has arrived: still a PNG.
    assert_eq!(s.patch(&path, 0, &png[..64.min(png.len())], &[]).status, 204);
    let g = s.get(&path);
    assert_eq!(g.header("content-type"), Some("image/png"));
    assert!(g.header("content-disposition").unwrap().starts_with("inline"));

    let path = s.create(4, &[]);
    assert_eq!(s.patch(&path, 0, &[0x00, 0xff, 0x13, 0x37], &[]).status, 204);
    assert_eq!(s.get(&path).header("content-type"), Some("application/octet-stream"));
    assert!(s.get(&path).header("content-disposition").unwrap().starts_with("attachment"));
}
