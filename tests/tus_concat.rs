//! concatenation and concatenation-unfinished.
mod common;
use common::*;

fn partial(s: &Server, len: usize) -> (String, String) {
    let l = len.to_string();
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", &l), ("Upload-Concat", "partial")], b"");
    (path, r.header("location").unwrap().to_string())
}

fn final_of(s: &Server, urls: &[&str], extra: &[(&str, &str)]) -> Resp {
    let v = format!("final;{}", urls.join(" "));
    let mut h = vec![TUS, ("Upload-Concat", v.as_str())];
    h.extend_from_slice(extra);
    s.request("POST", "/files/", &h, b"")
}

#[test]
fn partials_then_final() {
    let s = Server::start(&[]);
    let data = bytes(30_000, 51);
    let (p1, u1) = partial(&s, 10_000);
    let (p2, u2) = partial(&s, 20_000);
    // tus-js-client sends `Upload-Concat: partial` on every request of a partial: ignored.
    let pc = ("Upload-Concat", "partial");
    assert_eq!(s.patch(&p1, 0, &data[..10_000], &[pc]).status, 204);
    assert_eq!(s.patch(&p2, 0, &data[10_000..25_000], &[pc]).status, 204);
    let h = s.request("HEAD", &p2, &[TUS, pc], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("15000"));
    assert_eq!(h.header("upload-concat"), Some("partial"));
    assert_eq!(h.header("upload-length"), Some("20000"));
    assert_eq!(s.patch(&p2, 15_000, &data[25_000..], &[pc]).status, 204);

    // Absolute URLs, as tus-js-client sends them; metadata from the final only.
    let meta = format!("filename {}", b64s("joined.bin"));
    let r = final_of(&s, &[&u1, &u2], &[("Upload-Metadata", &meta)]);
    assert_eq!(r.status, 201, "{r:?}");
    let f = Server::path_of(r.header("location").unwrap());
    assert_eq!(r.header("upload-offset"), Some("30000"));
    let h = s.head(&f);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("30000"));
    assert_eq!(h.header("upload-length"), Some("30000"));
    assert_eq!(h.header("upload-concat"), Some(format!("final;{u1} {u2}").as_str()));
    assert_eq!(h.header("upload-metadata"), Some(meta.as_str()));
    assert_eq!(sha256_hex(&s.get(&f).body), sha256_hex(&data));

    // Relative paths, partials reused by another final, order kept.
    let r = final_of(&s, &[&p2, &p1], &[]);
    assert_eq!(r.status, 201, "{r:?}");
    let f2 = Server::path_of(r.header("location").unwrap());
    let mut want = data[10_000..].to_vec();
    want.extend_from_slice(&data[..10_000]);
    assert_eq!(sha256_hex(&s.get(&f2).body), sha256_hex(&want));
    // A part listed twice would multiply the bytes written: refused.
    let r = final_of(&s, &[&p2, &p1, &p1], &[]);
    assert_eq!(r.status, 400, "{r:?}");
    // The partials are kept.
    assert_eq!(s.get(&p1).body, &data[..10_000]);

    // PATCH on a final: 403, nothing modified.
    let r = s.patch(&f, 30_000, b"x", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(sha256_hex(&s.get(&f).body), sha256_hex(&data));
}

#[test]
fn final_declared_before_partials_finish() {
    let s = Server::start(&[]);
    let data = bytes(8000, 52);
    let (p1, u1) = partial(&s, 3000);
    let (p2, u2) = partial(&s, 5000);
    assert_eq!(s.patch(&p1, 0, &data[..1000], &[]).status, 204);
    let r = final_of(&s, &[&u1, &u2], &[]);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("upload-offset"), None);
    let f = Server::path_of(r.header("location").unwrap());

    let h = s.head(&f);
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("upload-offset"), None, "no offset while unfinished");
    assert_eq!(h.header("upload-concat"), Some(format!("final;{u1} {u2}").as_str()));
    assert_eq!(h.header("upload-length"), Some("8000"));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    let r = s.patch(&f, 0, b"x", &[]);
    assert_eq!(r.status, 403, "{r:?}");

    assert_eq!(s.patch(&p1, 1000, &data[1000..3000], &[]).status, 204);
    assert_eq!(s.head(&f).header("upload-offset"), None, "one part still missing");
    assert_eq!(s.patch(&p2, 0, &data[3000..], &[]).status, 204);
    let off =
        poll(std::time::Duration::from_secs(5), || s.head(&f).header("upload-offset").map(str::to_string));
    assert_eq!(off.as_deref(), Some("8000"));
    let h = s.head(&f);
    assert_eq!(h.header("upload-length"), Some("8000"));
    assert_eq!(sha256_hex(&s.get(&f).body), sha256_hex(&data));
}

#[test]
fn final_errors() {
    let s = Server::start(&[]);
    let (p1, u1) = partial(&s, 3);
    assert_eq!(s.patch(&p1, 0, b"abc", &[]).status, 204);
    // A referenced upload that does not exist: 404.
    let missing = format!("http://{}/files/0193c0de-0000-7000-8000-000000000000", s.addr);
    let r = final_of(&s, &[&u1, &missing], &[]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("location"), None);
    // A regular (non-partial) upload: 400.
    let regular = s.create(3, &[]);
    assert_eq!(s.patch(&regular, 0, b"abc", &[]).status, 204);
    let r = final_of(&s, &[&u1, &regular], &[]);
    assert_eq!(r.status, 400, "{r:?}");
    // A final is not a partial either.
    let r = final_of(&s, &[&u1], &[]);
    assert_eq!(r.status, 201);
    let f = Server::path_of(r.header("location").unwrap());
    let r = final_of(&s, &[&f], &[]);
    assert_eq!(r.status, 400, "{r:?}");
    // Not an upload URL at all.
    let r = final_of(&s, &[&u1, "/etc/passwd/x"], &[]);
    assert_eq!(r.status, 400, "{r:?}");
    // Malformed Upload-Concat.
    for v in ["final;", "final", "whole", "partial;x"] {
        let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "3"), ("Upload-Concat", v)], b"");
        assert_eq!(r.status, 400, "{v:?}: {r:?}");
    }
    // A final must not declare a length.
    let r = final_of(&s, &[&u1], &[("Upload-Length", "3")]);
    assert_eq!(r.status, 400, "{r:?}");
    // A final with a body: 403.
    let v = format!("final;{u1}");
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v), OCTET], b"abc");
    assert_eq!(r.status, 403, "{r:?}");
    // Sum of partials past --max-size: covered with a dedicated server.
    let s2 = Server::start(&["--max-size", "5"]);
    let (_, a) = partial(&s2, 3);
    let (_, b) = partial(&s2, 3);
    let r = final_of(&s2, &[&a, &b], &[]);
    assert_eq!(r.status, 413, "{r:?}");
}
