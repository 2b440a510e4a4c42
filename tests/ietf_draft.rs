//! IETF "Resumable Uploads for HTTP" on interop versions 5, 6 and 8, and
//! uploads that cross between the draft and tus 1.0.
mod common;
use std::io::Write;
use std::time::{Duration, Instant};

use common::garage::Store;
use common::*;

const VERSIONS: [&str; 3] = ["5", "6", "8"];

fn ctype(v: &str) -> &'static str {
    if v == "5" { "application/octet-stream" } else { "application/partial-upload" }
}

fn create(s: &Server, v: &str, extra: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut h = vec![("Upload-Draft-Interop-Version", v), ("Content-Type", ctype(v))];
    h.extend_from_slice(extra);
    s.request("POST", "/files/", &h, body)
}

fn append(
    s: &Server,
    v: &str,
    path: &str,
    offset: u64,
    complete: bool,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Resp {
    let off = offset.to_string();
    let mut h = vec![
        ("Upload-Draft-Interop-Version", v),
        ("Upload-Offset", off.as_str()),
        ("Upload-Complete", if complete { "?1" } else { "?0" }),
        ("Content-Type", ctype(v)),
    ];
    h.extend_from_slice(extra);
    s.request("PATCH", path, &h, body)
}

fn head(s: &Server, v: &str, path: &str) -> Resp {
    s.request("HEAD", path, &[("Upload-Draft-Interop-Version", v)], b"")
}

fn wait_ready(s: &Server, path: &str) -> serde_json::Value {
    let id = path.rsplit('/').next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.request("GET", &format!("/v1/assets/{id}"), &[], b"");
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if j["state"] == "ready" || j["state"] == "failed" || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn creation_with_length_append_and_explicit_completion() {
    creation_with_length_append_and_explicit_completion_on(Store::Files);
}

#[test]
fn creation_with_length_append_and_explicit_completion_on_s3() {
    creation_with_length_append_and_explicit_completion_on(Store::S3);
}

fn creation_with_length_append_and_explicit_completion_on(store: Store) {
    let (s, _garage) = store.serve(&[]);
    let data = bytes(300_000, 5);
    for v in VERSIONS {
        let len = data.len().to_string();
        let r = create(&s, v, &[("Upload-Complete", "?0"), ("Upload-Length", &len)], &data[..100_000]);
        assert_eq!(r.status, 201, "v{v}: {r:?}");
        assert!(r.header("tus-resumable").is_none(), "no tus headers on draft answers");
        assert_eq!(r.header("upload-offset"), Some("100000"));
        assert!(r.header("upload-limit").unwrap().contains("min-size=0"));
        assert_eq!(r.header("upload-draft-interop-version"), Some(v));
        let path = Server::path_of(r.header("location").unwrap());

        let h = head(&s, v, &path);
        assert!(h.status == 204 || h.status == 200);
        assert_eq!(h.header("upload-offset"), Some("100000"));
        assert_eq!(h.header("upload-complete"), Some("?0"));
        assert_eq!(h.header("upload-length"), Some(len.as_str()));
        assert_eq!(h.header("cache-control"), Some("no-store"));

        // Reaching the length with ?0 does not complete the upload.
        let r = append(&s, v, &path, 100_000, false, &data[100_000..], &[]);
        assert_eq!(r.status, 204, "v{v}: {r:?}");
        assert_eq!(r.header("upload-offset"), Some("300000"));
        assert_eq!(head(&s, v, &path).header("upload-complete"), Some("?0"));
        let id = path.rsplit('/').next().unwrap();
        let a: serde_json::Value =
            serde_json::from_slice(&s.request("GET", &format!("/v1/assets/{id}"), &[], b"").body).unwrap();
        assert_eq!(a["state"], "pending_upload");

        // An empty ?1 append completes it; the whole-upload digest is offered.
        let r = append(&s, v, &path, 300_000, true, b"", &[("Want-Repr-Digest", "sha-256=1")]);
        assert_eq!(r.status, 204, "v{v}: {r:?}");
        assert_eq!(r.header("upload-complete"), Some("?1"));
        let want = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&data))
        };
        assert_eq!(r.header("repr-digest"), Some(format!("sha-256=:{want}:").as_str()));
        let a = wait_ready(&s, &path);
        assert_eq!(a["sha256"], sha256_hex(&data));

        // Appending to a completed upload: 400 completed-upload.
        let r = append(&s, v, &path, 300_000, true, b"x", &[]);
        assert_eq!(r.status, 400);
        assert!(r.text().contains("completed-upload"), "{}", r.text());
    }
}

#[test]
fn creation_without_length_completes_with_content_length() {
    let s = Server::start(&[]);
    for v in VERSIONS {
        // One request carrying everything: ?1 + Content-Length defines the length.
        let r = create(&s, v, &[("Upload-Complete", "?1")], b"all at once");
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.header("upload-complete"), Some("?1"));
        assert_eq!(r.header("upload-length"), Some("11"));

        // Unknown length: ?0 creation, then a ?1 append fixes it.
        let r = create(&s, v, &[("Upload-Complete", "?0")], b"first,");
        assert_eq!(r.status, 201);
        assert!(r.header("upload-length").is_none());
        let path = Server::path_of(r.header("location").unwrap());
        let r = append(&s, v, &path, 6, true, b"second", &[]);
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("upload-length"), Some("12"));
        let a = wait_ready(&s, &path);
        assert_eq!(a["sha256"], sha256_hex(b"first,second"));
        assert_eq!(a["size_bytes"], 12);
    }
}

#[test]
fn inconsistent_lengths_and_bad_requests() {
    let s = Server::start(&[]);
    let r = create(&s, "6", &[("Upload-Complete", "?1"), ("Upload-Length", "99")], b"short");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("inconsistent-upload-length"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let r = create(&s, "6", &[], b"x");
    assert_eq!(r.status, 400, "Upload-Complete is required");

    let r = create(&s, "7", &[("Upload-Complete", "?0")], b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not supported"));

    let r = create(&s, "6", &[("Upload-Complete", "?0"), ("Upload-Length", "10")], b"12345");
    let path = Server::path_of(r.header("location").unwrap());
    // Past the known length.
    let r = append(&s, "6", &path, 5, false, b"1234567890", &[]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("inconsistent-upload-length"));
    // A different length than declared.
    let r = append(&s, "6", &path, 5, false, b"1", &[("Upload-Length", "11")]);
    assert_eq!(r.status, 400);
    // Draft-05 appends need application/partial-upload.
    let r = s.request(
        "PATCH",
        &path,
        &[("Upload-Draft-Interop-Version", "6"), ("Upload-Offset", "5"), ("Upload-Complete", "?0")],
        b"1",
    );
    assert_eq!(r.status, 415);
    // Draft-05 offset retrieval must not carry upload headers.
    let r = s.request("HEAD", &path, &[("Upload-Draft-Interop-Version", "6"), ("Upload-Offset", "5")], b"");
    assert_eq!(r.status, 400);
    assert_eq!(head(&s, "6", &path).header("upload-offset"), Some("5"), "nothing changed");
}

#[test]
fn offset_mismatch_is_409_with_problem_and_offset() {
    let s = Server::start(&[]);
    for v in VERSIONS {
        let r = create(&s, v, &[("Upload-Complete", "?0")], b"abc");
        let path = Server::path_of(r.header("location").unwrap());
        let r = append(&s, v, &path, 1, false, b"zz", &[]);
        assert_eq!(r.status, 409);
        assert_eq!(r.header("upload-offset"), Some("3"));
        let p: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(p["type"], "https://iana.org/assignments/http-problem-types#mismatching-upload-offset");
        assert_eq!(p["expected-offset"], 3);
        assert_eq!(p["provided-offset"], 1);
    }
}

#[test]
fn resume_after_a_cut_body_keeps_what_arrived() {
    resume_after_a_cut_body_keeps_what_arrived_on(Store::Files);
}

#[test]
fn resume_after_a_cut_body_keeps_what_arrived_on_s3() {
    resume_after_a_cut_body_keeps_what_arrived_on(Store::S3);
}

fn resume_after_a_cut_body_keeps_what_arrived_on(store: Store) {
    let (s, _garage) = store.serve(&[]);
    let data = bytes(1 << 20, 9);
    for v in VERSIONS {
        let len = data.len().to_string();
        let r = create(&s, v, &[("Upload-Complete", "?0"), ("Upload-Length", &len)], b"");
        let path = Server::path_of(r.header("location").unwrap());
        // Announce the whole rest, send 300 KB, vanish.
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        write!(
            c,
            "PATCH {path} HTTP/1.1\r\nHost: localhost\r\nUpload-Draft-Interop-Version: {v}\r\nUpload-Offset: 0\r\n\
             Upload-Complete: ?1\r\nContent-Type: {}\r\nContent-Length: {len}\r\n\r\n",
            ctype(v)
        )
        .unwrap();
        c.write_all(&data[..300_000]).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        let offset = loop {
            let h = head(&s, v, &path);
            let o: u64 = h.header("upload-offset").unwrap().parse().unwrap();
            if o == 300_000 || Instant::now() > deadline {
                break o;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(offset, 300_000, "v{v}: the bytes that arrived are kept");
        assert_eq!(
            head(&s, v, &path).header("upload-complete"),
            Some("?0"),
            "a cut ?1 body does not complete"
        );
        let r = append(&s, v, &path, offset, true, &data[offset as usize..], &[]);
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(wait_ready(&s, &path)["sha256"], sha256_hex(&data));
    }
}

#[test]
fn content_digest_is_verified() {
    content_digest_is_verified_on(Store::Files);
}

#[test]
fn content_digest_is_verified_on_s3() {
    content_digest_is_verified_on(Store::S3);
}

fn content_digest_is_verified_on(store: Store) {
    use base64::Engine;
    use sha2::Digest;
    let (s, _garage) = store.serve(&[]);
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    for v in VERSIONS {
        let r = create(&s, v, &[("Upload-Complete", "?0")], b"");
        let path = Server::path_of(r.header("location").unwrap());
        let good = format!("sha-256=:{}:", b64(&sha2::Sha256::digest(b"hello")));
        let r = append(&s, v, &path, 0, false, b"hello", &[("Content-Digest", &good)]);
        assert_eq!(r.status, 204, "{r:?}");
        let bad = format!("sha-512=:{}:", b64(&sha2::Sha512::digest(b"other")));
        let r = append(&s, v, &path, 5, false, b" world", &[("Content-Digest", &bad)]);
        assert_eq!(r.status, 400);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(head(&s, v, &path).header("upload-offset"), Some("5"), "mismatched bytes discarded");
        let good512 = format!("sha-512=:{}:", b64(&sha2::Sha512::digest(b" world")));
        let r = append(&s, v, &path, 5, true, b" world", &[("Content-Digest", &good512)]);
        assert_eq!(r.status, 204);
        assert_eq!(wait_ready(&s, &path)["sha256"], sha256_hex(b"hello world"));
    }
}

#[test]
fn delete_cancels() {
    let s = Server::start(&[]);
    for v in VERSIONS {
        let r = create(&s, v, &[("Upload-Complete", "?0")], b"abc");
        let path = Server::path_of(r.header("location").unwrap());
        let r = s.request("DELETE", &path, &[("Upload-Draft-Interop-Version", v)], b"");
        assert_eq!(r.status, 204);
        assert_eq!(head(&s, v, &path).status, 404);
        assert_eq!(s.request("DELETE", &path, &[("Upload-Draft-Interop-Version", v)], b"").status, 404);
    }
}

#[test]
fn metadata_from_content_type_and_disposition() {
    let s = Server::start(&[]);
    let r = s.request(
        "POST",
        "/files/",
        &[
            ("Upload-Draft-Interop-Version", "8"),
            ("Upload-Complete", "?1"),
            ("Content-Type", "text/plain"),
            ("Content-Disposition", "attachment; filename*=UTF-8''na%C3%AFve.txt"),
        ],
        b"plain text body",
    );
    assert_eq!(r.status, 201);
    let path = Server::path_of(r.header("location").unwrap());
    let a = wait_ready(&s, &path);
    assert_eq!(a["name"], "naïve.txt");
    assert_eq!(a["metadata"]["filetype"], "text/plain");
}

#[test]
fn tus_created_upload_finished_with_the_draft_and_back() {
    let s = Server::start(&[]);
    let data = bytes(50_000, 3);
    // tus 1.0 creation, draft append + completion.
    let path = s.create(data.len() as u64, &[]);
    assert_eq!(s.patch(&path, 0, &data[..20_000], &[]).status, 204);
    let h = head(&s, "6", &path);
    assert_eq!(h.header("upload-offset"), Some("20000"));
    let r = append(&s, "6", &path, 20_000, true, &data[20_000..], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(wait_ready(&s, &path)["sha256"], sha256_hex(&data));

    // Draft creation, tus 1.0 HEAD + PATCH finish it (tus completes at the length).
    let len = data.len().to_string();
    let r = create(&s, "5", &[("Upload-Complete", "?0"), ("Upload-Length", &len)], &data[..10_000]);
    let path = Server::path_of(r.header("location").unwrap());
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("10000"));
    assert_eq!(h.header("upload-length"), Some(len.as_str()));
    let r = s.patch(&path, 10_000, &data[10_000..], &[]);
    assert_eq!(r.status, 204);
    assert_eq!(wait_ready(&s, &path)["sha256"], sha256_hex(&data));
}

#[test]
fn options_advertise_upload_limit() {
    let s = Server::start(&["--max-size", "1000"]);
    let r = s.request("OPTIONS", "/files/", &[], b"");
    let limit = r.header("upload-limit").unwrap();
    assert!(limit.contains("max-size=1000") && limit.contains("max-age="), "{limit}");
    let r = create(&s, "6", &[("Upload-Complete", "?0"), ("Upload-Length", "5000")], b"");
    assert_eq!(r.status, 413);
}
