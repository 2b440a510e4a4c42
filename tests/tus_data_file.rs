//! An upload's data file is made by its first append, not by the POST: every
//! request and a restart treat a missing file as zero bytes.
mod assets_common;
mod common;
use assets_common::wait_ready;
use common::*;

fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[test]
fn no_file_until_the_first_byte_and_a_restart_keeps_offset_zero() {
    let mut s = Server::start(&[]);
    let path = s.create(10, &[]);
    assert!(s.upload_file(&path).is_none(), "a creation makes no data file");
    assert_eq!(s.offset(&path), Some(0));
    let r = s.get(&path);
    assert_eq!((r.status, r.body.len()), (200, 0), "GET of an upload without bytes: {r:?}");
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(s.request("GET", &path, &[("Range", "bytes=0-3")], b"").status, 416);

    // A crash before any byte: the upload is still there at offset 0.
    s.kill9();
    let s = Server::start_in(&s.dir.clone(), &[]);
    assert_eq!(s.offset(&path), Some(0));
    assert!(s.upload_file(&path).is_none(), "the restart made no file either");

    assert_eq!(s.patch(&path, 0, b"hello", &[]).status, 204);
    let file = s.upload_file(&path).expect("the first append made the file");
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");
    assert_eq!(s.patch(&path, 5, b"world", &[]).status, 204);
    assert_eq!(s.get(&path).body, b"helloworld");
    assert_eq!(s.request("DELETE", &path, &[TUS], b"").status, 204);
    assert!(s.upload_file(&path).is_none());
}

#[test]
fn deleting_an_upload_without_bytes() {
    let s = Server::start(&[]);
    let path = s.create(10, &[]);
    assert_eq!(s.request("DELETE", &path, &[TUS], b"").status, 204);
    assert_eq!(s.head(&path).status, 410);
}

#[test]
fn empty_uploads_complete_without_a_file() {
    let s = Server::start(&[]);
    // Zero bytes declared at creation: complete at once, an asset that gets ready.
    let empty = s.create(0, &[]);
    assert_eq!(s.offset(&empty), Some(0));
    assert_eq!(wait_ready(&s, None, id_of(&empty))["size_bytes"], 0);
    let r = s.get(&empty);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("etag"), Some(format!("\"{}\"", sha256_hex(b"")).as_str()));

    // A deferred length declared as zero by an empty PATCH.
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Defer-Length", "1")], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let deferred = Server::path_of(r.header("location").unwrap());
    assert_eq!(s.patch(&deferred, 0, b"", &[("Upload-Length", "0")]).status, 204);
    assert_eq!(wait_ready(&s, None, id_of(&deferred))["size_bytes"], 0);

    // A concatenation with an empty partial.
    let partial = |len: u64| {
        let l = len.to_string();
        let r =
            s.request("POST", "/files/", &[TUS, ("Upload-Length", &l), ("Upload-Concat", "partial")], b"");
        assert_eq!(r.status, 201, "{r:?}");
        (Server::path_of(r.header("location").unwrap()), r.header("location").unwrap().to_string())
    };
    let (p0, u0) = partial(0);
    let (p1, u1) = partial(3);
    assert!(s.upload_file(&p0).is_none());
    assert_eq!(s.patch(&p1, 0, b"abc", &[]).status, 204);
    let v = format!("final;{u0} {u1}");
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v)], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let fin = Server::path_of(r.header("location").unwrap());
    assert_eq!(s.get(&fin).body, b"abc");
    assert_eq!(s.head(&fin).header("upload-offset"), Some("3"));
}
