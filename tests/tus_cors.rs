//! CORS for browser clients: preflights and headers on every answer.
mod assets_common;
mod common;
use assets_common::create_key;
use common::*;

const ORIGIN: &str = "https://a.example";

fn assert_cors(r: &Resp, what: &str) {
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN), "{what}: {r:?}");
    let expose: Vec<String> = r
        .header("access-control-expose-headers")
        .unwrap_or_else(|| panic!("{what}: no Expose-Headers: {r:?}"))
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-defer-length",
        "tus-resumable",
    ] {
        assert!(expose.contains(&h.to_string()), "{what}: {h} not exposed: {expose:?}");
    }
    assert!(r.headers.get("vary").is_some_and(|v| v.iter().any(|v| v.contains("Origin"))), "{what}");
}

#[test]
fn preflight() {
    let s = Server::start(&["--cors-origins", ORIGIN]);
    for path in ["/files/", "/files/0193c0de-0000-7000-8000-000000000000"] {
        let r = s.request(
            "OPTIONS",
            path,
            &[
                ("Origin", ORIGIN),
                ("Access-Control-Request-Method", "PATCH"),
                (
                    "Access-Control-Request-Headers",
                    "tus-resumable,upload-offset,content-type,upload-checksum",
                ),
            ],
            b"",
        );
        assert!(r.status == 200 || r.status == 204, "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
        let methods = r.header("access-control-allow-methods").unwrap().to_ascii_uppercase();
        for m in ["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"] {
            assert!(methods.split(',').any(|x| x.trim() == m), "{m} not in {methods}");
        }
        let allow = r.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
        for h in ["tus-resumable", "upload-offset", "content-type", "upload-checksum"] {
            assert!(allow.contains(h), "{h} not in {allow}");
        }
        assert_eq!(r.header("access-control-max-age"), Some("86400"));
    }
    // Without Access-Control-Request-Headers: the default list.
    let r = s.request(
        "OPTIONS",
        "/files/",
        &[("Origin", ORIGIN), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    let allow = r.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    for h in ["tus-resumable", "upload-length", "upload-metadata", "upload-concat", "x-http-method-override"]
    {
        assert!(allow.contains(h), "{h} not in {allow}");
    }
}

#[test]
fn every_answer_carries_cors() {
    let s = Server::start(&["--max-size", "100", "--cors-origins", ORIGIN]);
    let o = ("Origin", ORIGIN);
    let r = s.request("POST", "/files/", &[o, TUS, ("Upload-Length", "10")], b"");
    assert_eq!(r.status, 201);
    assert_cors(&r, "201");
    let path = Server::path_of(r.header("location").unwrap());
    let r = s.request("PATCH", &path, &patch_headers("0", &[o]), b"abc");
    assert_eq!(r.status, 204);
    assert_cors(&r, "204");
    let r = s.request("HEAD", &path, &[o, TUS], b"");
    assert_eq!(r.status, 200);
    assert_cors(&r, "HEAD 200");
    let r = s.request("GET", &path, &[o], b"");
    assert_eq!(r.status, 200);
    assert_cors(&r, "GET 200");

    let cases: Vec<(u16, Resp)> = vec![
        (404, s.request("HEAD", "/files/0193c0de-0000-7000-8000-000000000000", &[o, TUS], b"")),
        (
            404,
            s.request(
                "PATCH",
                "/files/0193c0de-0000-7000-8000-000000000000",
                &patch_headers("0", &[o]),
                b"x",
            ),
        ),
        (409, s.request("PATCH", &path, &patch_headers("0", &[o]), b"x")),
        (412, s.request("POST", "/files/", &[o, ("Upload-Length", "1")], b"")),
        (413, s.request("POST", "/files/", &[o, TUS, ("Upload-Length", "101")], b"")),
        (413, s.request("PATCH", &path, &patch_headers("3", &[o]), &[0u8; 20])),
        (415, s.request("PATCH", &path, &[o, TUS, ("Upload-Offset", "3")], b"x")),
        (400, s.request("PATCH", &path, &patch_headers("x", &[o]), b"x")),
        (
            460,
            s.request(
                "PATCH",
                &path,
                &patch_headers("3", &[o, ("Upload-Checksum", "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")]),
                b"x",
            ),
        ),
    ];
    for (want, r) in &cases {
        assert_eq!(r.status, *want, "{r:?}");
        assert_cors(r, &format!("{want}"));
    }
    let r = s.request("DELETE", &path, &[o, TUS], b"");
    assert_eq!(r.status, 204);
    assert_cors(&r, "DELETE 204");
    let r = s.request("HEAD", &path, &[o, TUS], b"");
    assert_eq!(r.status, 410);
    assert_cors(&r, "410");
}

#[test]
fn origin_allow_list() {
    let s = Server::start(&["--cors-origins", ORIGIN]);
    let r = s.request("POST", "/files/", &[("Origin", ORIGIN), TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let r =
        s.request("POST", "/files/", &[("Origin", "https://b.example"), TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = s.request(
        "OPTIONS",
        "/files/",
        &[("Origin", "https://b.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);
    // No Origin (not a browser): served.
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

/// Without `--cors-origins`: any origin once keys are in use (a key is
/// needed anyway), only this machine's pages in open mode; never credentials.
#[test]
fn default_origins_depend_on_the_mode() {
    let s = Server::start(&[]);
    let r = s.request("POST", "/files/", &[("Origin", ORIGIN), TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.status, 403, "open mode: {r:?}");
    let local = "http://127.0.0.1:5173";
    let r = s.request("POST", "/files/", &[("Origin", local), TUS, ("Upload-Length", "1")], b"");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), Some(local));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "p");
    let s = Server::start_in(dir.path(), &[]);
    let auth = format!("Bearer {key}");
    let r = s.request(
        "POST",
        "/files/",
        &[("Origin", ORIGIN), TUS, ("Upload-Length", "1"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_cors(&r, "with keys");
    assert_eq!(r.header("access-control-allow-credentials"), None);
}
