mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn upload_round_trip() {
    let s = Server::start(&[]);
    let data = bytes(100_000, 1);
    let path = s.create(data.len() as u64, &[("Upload-Metadata", "filename YS5iaW4=")]);
    let r = s.patch(&path, 0, &data[..40_000], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("40000"));
    let r = s.patch(&path, 40_000, &data[40_000..], &[]);
    assert_eq!(r.status, 204);
    let h = s.head(&path);
    assert_eq!(h.header("upload-offset"), Some("100000"));
    assert_eq!(h.header("upload-metadata"), Some("filename YS5iaW4="));
    let g = s.request("GET", &path, &[], b"");
    assert_eq!(g.status, 200);
    assert_eq!(sha256_hex(&g.body), sha256_hex(&data));
}

/// The request-thread count the server reports at start.
fn request_threads(s: &Server) -> usize {
    let logs = s.logs();
    let line = logs.lines().find(|l| l.contains("listening on")).expect("start line");
    let n = line.split(", ").last().unwrap().trim_end_matches(" request threads)");
    n.parse().unwrap_or_else(|_| panic!("no thread count in {line:?}"))
}

#[test]
fn request_threads_default_to_one_fewer_than_the_cpus() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let s = Server::start(&[]);
    assert_eq!(request_threads(&s), (cpus - 1).max(1));
    let s = Server::start(&["--workers", "3"]);
    assert_eq!(request_threads(&s), 3);
    // And it still serves.
    let path = s.create(3, &[]);
    assert_eq!(s.patch(&path, 0, b"abc", &[]).status, 204);
}

/// A log collector that dies (stderr becomes a pipe nobody reads) must not
/// take the server with it: uploads still complete and answer, the asset
/// is processed, and SIGTERM still stops it cleanly. Each of these logs a
/// line ("upload complete", "shutting down"), and a failed log write used
/// to panic the task that made it.
#[test]
fn a_dead_log_reader_breaks_nothing() {
    let mut s = Server::start_then_close_log(&[]);
    std::thread::sleep(Duration::from_millis(200));
    let data = bytes(300_000, 9);
    for _ in 0..3 {
        let path = s.create(data.len() as u64, &[]);
        let r = s.patch(&path, 0, &data, &[]);
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("upload-offset"), Some("300000"));
        let id = path.rsplit('/').next().unwrap().to_string();
        let ready = poll(Duration::from_secs(20), || {
            let a = s.request("GET", &format!("/v1/assets/{id}"), &[], b"");
            (a.status == 200 && a.text().contains("\"state\":\"ready\"")).then_some(())
        });
        assert!(ready.is_some(), "asset {id} never became ready");
    }
    let t = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    let status = poll(Duration::from_secs(10), || s.child.try_wait().unwrap());
    let status = status.expect("SIGTERM did not stop the server within 10 s");
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
}

/// A second server on a data directory already in use refuses to start, says
/// why in words a person can act on, and leaves the first one serving.
#[test]
fn a_second_server_on_the_same_directory_says_why() {
    let s = Server::start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run tusk");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another process"), "{err}");
    assert!(err.contains("another tusk"), "{err}");
    let path = s.create(3, &[]);
    assert_eq!(s.patch(&path, 0, b"abc", &[]).status, 204);
}
