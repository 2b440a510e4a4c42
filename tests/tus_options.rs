//! OPTIONS: discovery on any path, without a Tus-Resumable check.
mod common;
use common::*;

#[test]
fn discovery_headers() {
    let s = Server::start(&["--max-size", "1048576"]);
    for path in ["/files/", "/files/0193c0de-0000-7000-8000-000000000000", "/anything/else"] {
        // Tus-Resumable in the request is ignored, even a wrong one.
        for h in [&[][..], &[("Tus-Resumable", "0.2.2")][..]] {
            let r = s.request("OPTIONS", path, h, b"");
            assert!(r.status == 204 || r.status == 200, "{path}: {r:?}");
            assert_eq!(r.header("tus-version"), Some("1.0.0"), "{path}");
            assert_eq!(r.header("tus-resumable"), Some("1.0.0"), "{path}");
            assert_eq!(r.header("tus-max-size"), Some("1048576"), "{path}");
            let ext: Vec<&str> = r.header("tus-extension").unwrap().split(',').map(str::trim).collect();
            for e in [
                "creation",
                "creation-with-upload",
                "creation-defer-length",
                "expiration",
                "checksum",
                "checksum-trailer",
                "termination",
                "concatenation",
                "concatenation-unfinished",
            ] {
                assert!(ext.contains(&e), "{e} missing from {ext:?}");
            }
            let algos: Vec<&str> =
                r.header("tus-checksum-algorithm").unwrap().split(',').map(str::trim).collect();
            for a in ["sha1", "sha256", "sha512", "md5"] {
                assert!(algos.contains(&a), "{a} missing from {algos:?}");
            }
        }
    }
}

#[test]
fn no_max_size_without_limit() {
    let s = Server::start(&[]);
    let r = s.request("OPTIONS", "/files/", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-max-size"), None);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
}
