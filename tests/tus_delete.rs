//! DELETE: the termination extension.
mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn terminate() {
    let s = Server::start(&[]);
    let path = s.create(100, &[]);
    assert_eq!(s.patch(&path, 0, b"abc", &[]).status, 204);
    let file = s.upload_file(&path).expect("data file");
    let r = s.request("DELETE", &path, &[TUS], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    assert!(!file.exists(), "bytes removed");
    for (method, h) in
        [("HEAD", vec![TUS]), ("PATCH", patch_headers("3", &[])), ("DELETE", vec![TUS]), ("GET", vec![])]
    {
        let r = s.request(method, &path, &h, b"");
        assert!(r.status == 410 || r.status == 404, "{method}: {r:?}");
        assert_eq!(r.header("upload-offset"), None, "{method}");
    }
    let r = s.request("DELETE", "/files/0193c0de-0000-7000-8000-000000000000", &[TUS], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn version_required() {
    let s = Server::start(&[]);
    let path = s.create(100, &[]);
    for h in [vec![], vec![("Tus-Resumable", "0.2.2")]] {
        let r = s.request("DELETE", &path, &h, b"");
        assert_eq!(r.status, 412, "{r:?}");
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
    }
    assert_eq!(s.head(&path).status, 200, "untouched");
    // Via method override (tus-js-client).
    let r = s.request("POST", &path, &[TUS, ("X-HTTP-Method-Override", "DELETE")], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(s.head(&path).status, 410);
}

#[test]
fn terminate_during_stalled_patch() {
    let s = Server::start(&[]);
    let data = bytes(100_000, 31);
    let path = s.create(100_000, &[]);
    let mut c = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "100000")]));
    c.write_all(&data[..50_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let r = s.request("DELETE", &path, &[TUS], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "DELETE waited {:?}", t.elapsed());
    assert_eq!(s.head(&path).status, 410);
    // The rest of the stalled body goes nowhere.
    let _ = c.write_all(&data[50_000..]);
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.head(&path).status, 410);
    assert!(s.upload_file(&path).is_none(), "no data file left behind");
}
