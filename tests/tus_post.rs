//! POST: creation, creation-with-upload, creation-defer-length.
mod common;
use common::*;

fn post(s: &Server, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    s.request("POST", "/files/", headers, body)
}

#[test]
fn creation_basics() {
    let s = Server::start(&[]);
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "10")], b"");
    let loc = r.header("location").unwrap();
    assert_eq!(loc, format!("http://{}{}", s.addr, path), "Location is absolute");
    assert!(path.starts_with("/files/"));
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    assert!(r.header("upload-expires").is_some(), "{r:?}");
    let h = s.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(h.header("upload-length"), Some("10"));
    // Two creations give two different uploads.
    let (path2, _) = s.create_resp(&[TUS, ("Upload-Length", "10")], b"");
    assert_ne!(path, path2);
}

#[test]
fn creation_with_upload() {
    let s = Server::start(&[]);
    let data = bytes(5000, 7);
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "10000"), OCTET], &data);
    assert_eq!(r.header("upload-offset"), Some("5000"));
    assert_eq!(s.offset(&path), Some(5000));
    assert_eq!(s.get(&path).body, data);

    // Whole file in the POST: complete at once, no Upload-Expires.
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "5000"), OCTET], &data);
    assert_eq!(r.header("upload-offset"), Some("5000"));
    assert_eq!(r.header("upload-expires"), None);
    assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data));

    // A body of another content type is not a chunk: discarded.
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "5000"), ("Content-Type", "text/plain")], &data);
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(s.offset(&path), Some(0));
}

#[test]
fn creation_with_upload_too_long() {
    let s = Server::start(&[]);
    let data = bytes(200, 8);
    // Declared Content-Length past Upload-Length: 413 before reading, Location sent.
    let r = post(&s, &[TUS, ("Upload-Length", "100"), OCTET], &data);
    assert_eq!(r.status, 413, "{r:?}");
    let path = Server::path_of(r.header("location").expect("Location on 413"));
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(s.offset(&path), Some(0));

    // Chunked body past Upload-Length: bytes up to the length kept, then 413.
    let r = post(
        &s,
        &[TUS, ("Upload-Length", "100"), OCTET, ("Transfer-Encoding", "chunked")],
        &chunked(&data, 64, &[]),
    );
    assert_eq!(r.status, 413, "{r:?}");
    let path = Server::path_of(r.header("location").expect("Location on 413"));
    assert_eq!(r.header("upload-offset"), Some("100"));
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("100"));
    assert_eq!(s.get(&path).body, &data[..100]);
}

#[test]
fn defer_length() {
    let s = Server::start(&[]);
    let (path, r) = s.create_resp(&[TUS, ("Upload-Defer-Length", "1")], b"");
    assert_eq!(r.header("upload-offset"), Some("0"));
    let h = s.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-defer-length"), Some("1"));
    assert_eq!(h.header("upload-length"), None);

    // Deferred with a first chunk in the POST.
    let (path, r) = s.create_resp(&[TUS, ("Upload-Defer-Length", "1"), OCTET], b"hello");
    assert_eq!(r.header("upload-offset"), Some("5"));
    assert_eq!(s.head(&path).header("upload-defer-length"), Some("1"));

    for (h, why) in [
        (vec![TUS, ("Upload-Defer-Length", "1"), ("Upload-Length", "5")], "both"),
        (vec![TUS, ("Upload-Defer-Length", "2")], "defer 2"),
        (vec![TUS, ("Upload-Defer-Length", "true")], "defer true"),
        (vec![TUS], "no length"),
        (vec![TUS, ("Upload-Length", "abc")], "not a number"),
        (vec![TUS, ("Upload-Length", "-1")], "negative"),
        (vec![TUS, ("Upload-Length", "1.5")], "fraction"),
        (vec![TUS, ("Upload-Length", "9223372036854775808")], "past i64"),
        (vec![TUS, ("Upload-Length", "")], "empty"),
    ] {
        let r = post(&s, &h, b"");
        assert_eq!(r.status, 400, "{why}: {r:?}");
        assert_eq!(r.header("location"), None, "{why}");
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"), "{why}");
    }
}

#[test]
fn max_size() {
    let s = Server::start(&["--max-size", "1000"]);
    let r = post(&s, &[TUS, ("Upload-Length", "1001")], b"");
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("location"), None);
    let r = post(&s, &[TUS, ("Upload-Length", "1000")], b"");
    assert_eq!(r.status, 201);

    // A deferred upload is held to the limit while it streams.
    let (path, _) = s.create_resp(&[TUS, ("Upload-Defer-Length", "1")], b"");
    let data = bytes(1500, 3);
    let r = s.request(
        "PATCH",
        &path,
        &patch_headers("0", &[("Transfer-Encoding", "chunked")]),
        &chunked(&data, 100, &[]),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1000"));
    assert_eq!(s.offset(&path), Some(1000));
    // Setting a length above the limit later: 413.
    let r = s.patch(&path, 1000, b"", &[("Upload-Length", "1001")]);
    assert_eq!(r.status, 413, "{r:?}");
}

#[test]
fn metadata_parsing() {
    let s = Server::start(&[]);
    let good = format!("filename {},is_confidential,empty ,type {}", b64s("a b.txt"), b64s("text/plain"));
    let (path, _) = s.create_resp(&[TUS, ("Upload-Length", "1"), ("Upload-Metadata", &good)], b"");
    assert_eq!(s.head(&path).header("upload-metadata"), Some(good.as_str()));

    // tuspy sends an empty Upload-Metadata header.
    let (path, _) = s.create_resp(&[TUS, ("Upload-Length", "1"), ("Upload-Metadata", "")], b"");
    assert_eq!(s.head(&path).status, 200);

    for bad in [
        "a !!!",              // not base64
        "a YQ",               // unpadded
        "a YQ==,a YQ==",      // duplicate key
        "a YQ==,,b",          // empty item
        "a YQ==,",            // trailing comma
        "a YQ==,\u{1}b YQ==", // control character in a key
        "a YQ== YQ==",        // two values
    ] {
        let r = post(&s, &[TUS, ("Upload-Length", "1"), ("Upload-Metadata", bad)], b"");
        assert_eq!(r.status, 400, "{bad:?}: {r:?}");
        assert_eq!(r.header("location"), None);
    }
}

#[test]
fn zero_length_completes_at_once() {
    let s = Server::start(&[]);
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "0")], b"");
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(r.header("upload-expires"), None, "complete uploads do not expire");
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(h.header("upload-length"), Some("0"));
    let g = s.get(&path);
    assert_eq!(g.status, 200);
    assert!(g.body.is_empty());
    // Nothing more can be appended.
    let r = s.patch(&path, 0, b"x", &[]);
    assert_eq!(r.status, 413, "{r:?}");
}

#[test]
fn version_precondition() {
    let s = Server::start(&[]);
    for h in [vec![("Upload-Length", "5")], vec![("Tus-Resumable", "0.2.2"), ("Upload-Length", "5")]] {
        let r = post(&s, &h, b"");
        assert_eq!(r.status, 412, "{r:?}");
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        assert_eq!(r.header("location"), None);
    }
}

#[test]
fn location_ignores_forwarding_headers_by_default() {
    let s = Server::start(&[]);
    let (_, r) = s.create_resp(
        &[
            TUS,
            ("Upload-Length", "1"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "host=evil2.example;proto=https"),
        ],
        b"",
    );
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with(&format!("http://{}/files/", s.addr)), "{loc}");
}

#[test]
fn location_behind_proxy() {
    let s = Server::start(&["--behind-proxy", "--allow-anonymous"]);
    let (path, r) = s.create_resp(
        &[
            TUS,
            ("Upload-Length", "1"),
            ("X-Forwarded-Host", "up.example.com"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    );
    assert_eq!(r.header("location").unwrap(), format!("https://up.example.com{path}"));

    let (path, r) = s.create_resp(
        &[
            TUS,
            ("Upload-Length", "1"),
            ("Forwarded", "for=1.2.3.4;host=fw.example:8443;proto=https, for=5.6.7.8"),
        ],
        b"",
    );
    assert_eq!(r.header("location").unwrap(), format!("https://fw.example:8443{path}"));

    // Without forwarding headers: the Host header.
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.header("location").unwrap(), format!("http://{}{path}", s.addr));

    // A host that does not belong in a URL is not echoed.
    let (_, r) = s.create_resp(&[TUS, ("Upload-Length", "1"), ("X-Forwarded-Host", "a\"b<c>")], b"");
    assert!(!r.header("location").unwrap().contains('<'), "{r:?}");
}

#[test]
fn auth_rejection_is_401() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["keys", "create", "--project", "p1", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let s = Server::start_in(tmp.path(), &[]);
    let r = post(&s, &[TUS, ("Upload-Length", "1"), ("Origin", "https://a.example")], b"");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("location"), None);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://a.example"));
    let auth = format!("Bearer {secret}");
    let r = post(&s, &[TUS, ("Upload-Length", "1"), ("Authorization", &auth)], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let path = Server::path_of(r.header("location").unwrap());
    // Without the key the upload is not reachable.
    assert_eq!(s.head(&path).status, 401);
    let r = s.request("HEAD", &path, &[TUS, ("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    // Preflights carry no credentials and still pass.
    let r = s.request(
        "OPTIONS",
        "/files/",
        &[("Origin", "https://a.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    drop(s);
}
