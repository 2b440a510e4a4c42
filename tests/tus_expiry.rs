//! expiration: Upload-Expires and the sweeper.
mod common;
use common::*;
use std::time::{Duration, SystemTime};

fn http_date(r: &Resp, what: &str) -> SystemTime {
    let v = r.header("upload-expires").unwrap_or_else(|| panic!("{what}: no Upload-Expires: {r:?}"));
    assert!(v.ends_with(" GMT") && v.len() == 29, "{what}: not an IMF-fixdate: {v}");
    httpdate::parse_http_date(v).unwrap_or_else(|e| panic!("{what}: {v}: {e}"))
}

#[test]
fn expires_and_is_swept() {
    let s = Server::start(&["--expire-after", "2s"]);
    let now = SystemTime::now();
    let (path, r) = s.create_resp(&[TUS, ("Upload-Length", "100")], b"");
    let at = http_date(&r, "POST");
    assert!(at > now && at <= now + Duration::from_secs(4), "{at:?}");
    let r = s.patch(&path, 0, b"0123456789", &[]);
    assert_eq!(r.status, 204);
    http_date(&r, "PATCH");
    let h = s.head(&path);
    http_date(&h, "HEAD");
    let file = s.upload_file(&path).expect("data file");
    assert!(file.exists());

    // A completed upload is never swept.
    let (done, r) = s.create_resp(&[TUS, ("Upload-Length", "3"), OCTET], b"abc");
    assert_eq!(r.header("upload-expires"), None);
    let (empty, _) = s.create_resp(&[TUS, ("Upload-Length", "0")], b"");

    // Swept after ~2 s (plus one sweeper period).
    let gone = poll(Duration::from_secs(6), || (s.head(&path).status == 410).then_some(()));
    assert!(gone.is_some(), "not swept: {:?}", s.head(&path));
    // The tombstone answers as soon as it is written; the file goes once
    // the removal is durable (a flush later).
    let removed = poll(Duration::from_secs(2), || (!file.exists()).then_some(()));
    assert!(removed.is_some(), "data file removed");
    assert!(s.upload_file(&path).is_none());
    assert_eq!(s.patch(&path, 10, b"x", &[]).status, 410);
    assert_eq!(s.get(&path).status, 410);

    let h = s.head(&done);
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("upload-offset"), Some("3"));
    assert_eq!(s.get(&done).body, b"abc");
    assert_eq!(s.head(&empty).status, 200);
}

#[test]
fn activity_postpones_expiry() {
    let s = Server::start(&["--expire-after", "2s"]);
    let path = s.create(100, &[]);
    // Keep it alive with small PATCHes for longer than the expiry.
    for i in 0..4u64 {
        std::thread::sleep(Duration::from_millis(800));
        let r = s.patch(&path, i, b"x", &[]);
        assert_eq!(r.status, 204, "round {i}: {r:?}");
    }
    assert_eq!(s.offset(&path), Some(4));
}

/// A final declared before its parts finish (concatenation-unfinished) is not
/// swept while its parts are alive; once a part is gone it expires too.
#[test]
fn waiting_final_lives_as_long_as_its_parts() {
    let s = Server::start(&["--expire-after", "2s"]);
    let data = bytes(10, 71);
    let (p1, r1) = s.create_resp(&[TUS, ("Upload-Length", "10"), ("Upload-Concat", "partial")], b"");
    let (p2, r2) = s.create_resp(&[TUS, ("Upload-Length", "5"), ("Upload-Concat", "partial")], b"");
    let v = format!("final;{}", r1.header("location").unwrap());
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v)], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let f = Server::path_of(r.header("location").unwrap());
    let v = format!("final;{}", r2.header("location").unwrap());
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v)], b"");
    let f2 = Server::path_of(r.header("location").unwrap());
    assert_eq!(s.request("DELETE", &p2, &[TUS], b"").status, 204);

    // The part progresses slowly, for longer than the expiry.
    for i in 0..4usize {
        std::thread::sleep(Duration::from_millis(800));
        let r = s.patch(&p1, i as u64, &data[i..i + 1], &[]);
        assert_eq!(r.status, 204, "round {i}: {r:?}");
    }
    let h = s.head(&f);
    assert_eq!(h.status, 200, "final swept while its part was alive: {h:?}");
    assert_eq!(s.patch(&p1, 4, &data[4..], &[]).status, 204);
    let off = poll(Duration::from_secs(5), || s.head(&f).header("upload-offset").map(str::to_string));
    assert_eq!(off.as_deref(), Some("10"));
    assert_eq!(s.get(&f).body, data);
    // The final whose part was terminated can never complete: it expired.
    assert_eq!(s.head(&f2).status, 410);
}

/// The sweeper's index of unfinished uploads lives in memory: a restart must
/// rebuild it, so an upload made before the restart still expires after it.
#[test]
fn expires_after_a_restart() {
    let mut s = Server::start(&["--expire-after", "1h"]);
    let path = s.create(100, &[]);
    assert_eq!(s.patch(&path, 0, b"abc", &[]).status, 204);
    let (done, _) = s.create_resp(&[TUS, ("Upload-Length", "3"), OCTET], b"abc");
    assert!(s.sigterm().success());
    let s2 = Server::start_in(&s.dir, &["--expire-after", "2s"]);
    let gone = poll(Duration::from_secs(8), || (s2.head(&path).status == 410).then_some(()));
    assert!(gone.is_some(), "not swept after the restart: {:?}", s2.head(&path));
    assert_eq!(s2.head(&done).status, 200, "a finished upload is never swept");
    drop(s2);
    drop(s);
}
