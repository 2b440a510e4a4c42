//! PATCH: appending bytes, its error answers, partial bodies and concurrency.
mod common;
use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

#[test]
fn append_and_offset() {
    let s = Server::start(&[]);
    let data = bytes(3000, 11);
    let path = s.create(3000, &[]);
    let r = s.patch(&path, 0, &data[..1000], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1000"));
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    let exp = r.header("upload-expires").expect("Upload-Expires on PATCH while incomplete");
    httpdate::parse_http_date(exp).expect("HTTP-date");
    // An empty PATCH on an incomplete upload: 204, offset unchanged.
    let r = s.patch(&path, 1000, b"", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("upload-offset"), Some("1000"));
    // Content-Type parameters and case are ignored.
    let r = s.request(
        "PATCH",
        &path,
        &[TUS, ("Upload-Offset", "1000"), ("Content-Type", "Application/Offset+Octet-Stream; charset=x")],
        &data[1000..2000],
    );
    assert_eq!(r.status, 204, "{r:?}");
    // Chunked transfer encoding.
    let r = s.request(
        "PATCH",
        &path,
        &patch_headers("2000", &[("Transfer-Encoding", "chunked")]),
        &chunked(&data[2000..], 333, &[]),
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("3000"));
    assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data));
    // Complete: an empty PATCH is 204, a non-empty one 413, bytes unchanged.
    let r = s.patch(&path, 3000, b"", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("upload-offset"), Some("3000"));
    let r = s.patch(&path, 3000, b"more", &[]);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data));
}

#[test]
fn offset_conflict() {
    let s = Server::start(&[]);
    let path = s.create(100, &[]);
    assert_eq!(s.patch(&path, 0, b"0123456789", &[]).status, 204);
    for wrong in [0u64, 5, 11, 100] {
        let r = s.patch(&path, wrong, b"xx", &[]);
        assert_eq!(r.status, 409, "offset {wrong}: {r:?}");
        assert_eq!(r.header("upload-offset"), Some("10"));
    }
    assert_eq!(s.offset(&path), Some(10));
    assert_eq!(s.get(&path).body, b"0123456789");
}

#[test]
fn content_type_and_bad_headers() {
    let s = Server::start(&[]);
    let path = s.create(100, &[]);
    for ct in [None, Some("application/octet-stream"), Some("text/plain")] {
        let mut h = vec![TUS, ("Upload-Offset", "0")];
        if let Some(ct) = ct {
            h.push(("Content-Type", ct));
        }
        let r = s.request("PATCH", &path, &h, b"abc");
        assert_eq!(r.status, 415, "{ct:?}: {r:?}");
    }
    for off in ["-1", "abc", "", "1e3", "0x10", "99999999999999999999"] {
        let r = s.request("PATCH", &path, &[TUS, ("Upload-Offset", off), OCTET], b"abc");
        assert_eq!(r.status, 400, "offset {off:?}: {r:?}");
    }
    let r = s.request("PATCH", &path, &[TUS, OCTET], b"abc");
    assert_eq!(r.status, 400, "missing offset: {r:?}");
    // Tus-Resumable is required on PATCH.
    for h in
        [vec![("Upload-Offset", "0"), OCTET], vec![("Tus-Resumable", "2.0.0"), ("Upload-Offset", "0"), OCTET]]
    {
        let r = s.request("PATCH", &path, &h, b"abc");
        assert_eq!(r.status, 412, "{r:?}");
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
    }
    assert_eq!(s.offset(&path), Some(0));
    let r = s.patch("/files/0193c0de-0000-7000-8000-000000000000", 0, b"abc", &[]);
    assert_eq!(r.status, 404);
    let r = s.patch("/files/nope", 0, b"abc", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn upload_length_resend_and_deferred() {
    let s = Server::start(&[]);
    let path = s.create(10, &[]);
    // Same length again (tus-js-client retries): accepted.
    let r = s.patch(&path, 0, b"abcde", &[("Upload-Length", "10")]);
    assert_eq!(r.status, 204, "{r:?}");
    // A different one: 400, nothing stored.
    let r = s.patch(&path, 5, b"fghij", &[("Upload-Length", "11")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("5"));
    let r = s.patch(&path, 5, b"fghij", &[("Upload-Length", "abc")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(s.offset(&path), Some(5));

    // Deferred: the length arrives with an empty PATCH at the end.
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Defer-Length", "1")], b"");
    let path = Server::path_of(r.header("location").unwrap());
    assert_eq!(s.patch(&path, 0, b"hello ", &[]).status, 204);
    assert_eq!(s.patch(&path, 6, b"world", &[]).status, 204);
    // Smaller than what is stored: 400.
    let r = s.patch(&path, 11, b"", &[("Upload-Length", "10")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(s.head(&path).header("upload-defer-length"), Some("1"));
    let r = s.patch(&path, 11, b"", &[("Upload-Length", "11")]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("11"));
    let h = s.head(&path);
    assert_eq!(h.header("upload-length"), Some("11"));
    assert_eq!(h.header("upload-defer-length"), None);
    assert_eq!(h.header("upload-expires"), None, "complete");
    assert_eq!(s.get(&path).body, b"hello world");
    // Once set it never changes.
    let r = s.patch(&path, 11, b"", &[("Upload-Length", "12")]);
    assert_eq!(r.status, 400, "{r:?}");
}

#[test]
fn over_length() {
    let s = Server::start(&[]);
    let data = bytes(150, 12);
    // Chunked body running past the length: bytes up to it kept, then 413.
    let path = s.create(100, &[]);
    assert_eq!(s.patch(&path, 0, &data[..40], &[]).status, 204);
    let r = s.request(
        "PATCH",
        &path,
        &patch_headers("40", &[("Transfer-Encoding", "chunked")]),
        &chunked(&data[40..], 25, &[]),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("100"));
    assert_eq!(s.offset(&path), Some(100));
    assert_eq!(s.get(&path).body, &data[..100]);

    // A Content-Length that cannot fit: 413 before the body is read (no 100 Continue).
    let path = s.create(100, &[]);
    let mut c = s.open(
        "PATCH",
        &path,
        &patch_headers("0", &[("Content-Length", "1000000000"), ("Expect", "100-continue")]),
    );
    let t = Instant::now();
    let r = read_response_within(&mut c, false, Duration::from_secs(10)).expect("an answer");
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(s.offset(&path), Some(0));
}

#[test]
fn method_override() {
    let s = Server::start(&[]);
    let path = s.create(6, &[]);
    let r = s.request("POST", &path, &patch_headers("0", &[("X-HTTP-Method-Override", "PATCH")]), b"abcdef");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("6"));
    assert_eq!(s.get(&path).body, b"abcdef");
    // Not honoured on GET: a GET cannot become a write.
    let path = s.create(6, &[]);
    let r = s.request("GET", &path, &[("X-HTTP-Method-Override", "DELETE"), TUS], b"");
    assert_eq!(r.status, 200);
    assert_eq!(s.head(&path).status, 200);
}

#[test]
fn partial_body_is_kept() {
    let s = Server::start(&[]);
    let data = bytes(200_000, 13);
    for close in ["shutdown", "drop"] {
        let path = s.create(data.len() as u64, &[]);
        let mut c = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "200000")]));
        c.write_all(&data[..100_000]).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        match close {
            "shutdown" => c.shutdown(Shutdown::Write).unwrap(),
            _ => drop(c),
        }
        let off = poll(Duration::from_secs(5), || s.offset(&path).filter(|&o| o == 100_000));
        assert_eq!(off, Some(100_000), "{close}: offset {:?}", s.offset(&path));
        assert_eq!(s.get(&path).body, &data[..100_000], "{close}");
        // Resume from there.
        let r = s.patch(&path, 100_000, &data[100_000..], &[]);
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data));
    }
}

/// A stalled PATCH (half its body sent, connection idle but open) is stopped
/// by a newer request, which proceeds promptly with the true offset.
#[test]
fn newer_request_interrupts_stalled_patch() {
    let s = Server::start(&[]);
    let data = bytes(400_000, 14);
    let total = data.len() as u64;

    for newcomer in ["HEAD", "PATCH"] {
        let path = s.create(total, &[]);
        let mut stalled = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "400000")]));
        stalled.write_all(&data[..200_000]).unwrap();
        std::thread::sleep(Duration::from_millis(300));

        let t = Instant::now();
        let offset = if newcomer == "HEAD" {
            let h = s.head(&path);
            assert_eq!(h.status, 200, "{h:?}");
            h.header("upload-offset").unwrap().parse::<u64>().unwrap()
        } else {
            let r = s.patch(&path, 200_000, &data[200_000..], &[]);
            match r.status {
                204 => total,
                409 => r.header("upload-offset").unwrap().parse().unwrap(),
                _ => panic!("newer PATCH: {r:?}"),
            }
        };
        let took = t.elapsed();
        assert!(took < Duration::from_secs(5), "{newcomer} took {took:?}");
        assert!(offset <= total);
        if offset != total {
            assert!(offset <= 200_000, "{newcomer}: offset {offset}");
        }
        assert_eq!(offset.min(200_000), 200_000, "{newcomer}: everything that arrived was kept");
        // The stalled request was answered (or its connection closed) and not with success.
        if let Some(r) = read_response_within(&mut stalled, false, Duration::from_secs(5)) {
            assert_eq!(r.status, 400, "stalled PATCH answer: {r:?}");
            assert_eq!(r.header("upload-offset"), Some("200000"));
        }
        drop(stalled);
        let got = s.get(&path).body;
        assert_eq!(got.len() as u64, offset);
        assert_eq!(got, &data[..offset as usize]);
        if offset < total {
            let r = s.patch(&path, offset, &data[offset as usize..], &[]);
            assert_eq!(r.status, 204, "{r:?}");
        }
        assert_eq!(sha256_hex(&s.get(&path).body), sha256_hex(&data), "{newcomer}");
    }
}

/// `Expect: 100-continue`: headers are checked before the body is asked for.
#[test]
fn expect_continue() {
    use std::io::Read;
    let s = Server::start(&[]);
    let path = s.create(5, &[]);
    let mut c =
        s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "5"), ("Expect", "100-continue")]));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    c.write_all(b"hello").unwrap();
    let mut rest = buf[..n].to_vec();
    rest.drain(..interim.find("\r\n\r\n").unwrap() + 4);
    let mut more = Vec::new();
    let _ = c.read_to_end(&mut more);
    rest.extend_from_slice(&more);
    let r = parse_response(&rest, false);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("5"));

    // A wrong offset is answered at once, without 100 Continue.
    let path = s.create(5, &[]);
    let mut c =
        s.open("PATCH", &path, &patch_headers("3", &[("Content-Length", "5"), ("Expect", "100-continue")]));
    let r = read_response_within(&mut c, false, Duration::from_secs(5)).expect("answer");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
}

#[test]
fn wrong_methods() {
    let s = Server::start(&[]);
    let path = s.create(5, &[]);
    let r = s.request("PATCH", "/files/", &patch_headers("0", &[]), b"x");
    assert_eq!(r.status, 405, "{r:?}");
    let r = s.request("PUT", &path, &[TUS], b"x");
    assert_eq!(r.status, 405, "{r:?}");
    let r = s.request("POST", &path, &[TUS, ("Upload-Length", "5")], b"");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(s.offset(&path), Some(0));
}

/// The upload's SHA-256 as the asset API reports it once the upload is ready.
fn asset_sha256(s: &Server, path: &str) -> String {
    let id = path.rsplit('/').next().unwrap();
    poll(Duration::from_secs(10), || {
        let r = s.get(&format!("/v1/assets/{id}"));
        let a: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        (a["state"] == "ready").then(|| a["sha256"].as_str().unwrap().to_string())
    })
    .expect("asset ready")
}

/// Bytes are written in page-aligned blocks: PATCHes that start and end
/// anywhere (mid-page, on a page or block edge, one byte) must still store
/// exactly the bytes sent, and the running SHA-256 must see each byte once.
#[test]
fn odd_sizes_across_pages_and_blocks() {
    let s = Server::start(&[]);
    let sizes = [1usize, 4095, 1, 4096, 4097, 262_143, 262_145, 3, 524_295, 8191, 1_048_576, 100_003];
    let data = bytes(sizes.iter().sum(), 21);
    let path = s.create(data.len() as u64, &[]);
    let mut at = 0;
    for (i, n) in sizes.iter().enumerate() {
        let body = &data[at..at + n];
        let r = if i % 3 == 2 {
            let off = at.to_string();
            s.request(
                "PATCH",
                &path,
                &patch_headers(&off, &[("Transfer-Encoding", "chunked")]),
                &chunked(body, 5000, &[]),
            )
        } else {
            s.patch(&path, at as u64, body, &[])
        };
        at += n;
        assert_eq!(r.status, 204, "PATCH {i} of {n} bytes: {r:?}");
        assert_eq!(r.header("upload-offset"), Some(at.to_string().as_str()));
        let got = s.get(&path).body;
        assert!(got == data[..at], "bytes differ after PATCH {i} ({n} bytes)");
    }
    assert_eq!(asset_sha256(&s, &path), sha256_hex(&data));
}

/// A body that pauses is checkpointed while it streams (every second), also
/// when the pause falls mid-page; the bytes after the pause continue that page.
#[test]
fn paused_body_is_checkpointed_mid_page() {
    let s = Server::start(&[]);
    let data = bytes(700_000, 22);
    let path = s.create(data.len() as u64, &[]);
    let mut c = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "700000")]));
    for part in [&data[..5_000], &data[5_000..300_001], &data[300_001..]] {
        c.write_all(part).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1_300));
    }
    let r = read_response_within(&mut c, false, Duration::from_secs(10)).expect("an answer");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(s.get(&path).body, data);
    assert_eq!(asset_sha256(&s, &path), sha256_hex(&data));
}

/// A tmpfs of `size` mounted on a fresh directory, partly taken by a filler
/// file, unmounted on drop. None where mounting is not permitted (not root,
/// or no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `test` names the caller in the SKIPPED line printed when mounting is not permitted.
    fn mount(test: &str, size: &str, filler_mib: usize) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs here (needs root)");
            return None;
        }
        let disk = SmallDisk { dir };
        std::fs::write(disk.filler(), vec![1u8; filler_mib << 20]).unwrap();
        Some(disk)
    }

    fn filler(&self) -> std::path::PathBuf {
        self.dir.path().join("filler")
    }

    fn server(&self, args: &[&str]) -> Server {
        Server::start_in(&self.dir.path().join("data"), args)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// PATCHes all of `data` expecting a 507 whose text has `says`; checks that
/// HEAD and the file on disk both hold exactly the Upload-Offset it answered
/// (nothing past it left on the disk), and returns that offset.
fn patch_until_507(s: &Server, path: &str, data: &[u8], says: &str) -> u64 {
    let r = s.patch(path, 0, data, &[]);
    assert_eq!(r.status, 507, "{r:?}");
    assert!(r.text().starts_with("ERR_STORAGE_FULL") && r.text().contains(says), "{}", r.text());
    let kept: u64 = r.header("upload-offset").expect("Upload-Offset").parse().unwrap();
    assert_eq!(s.offset(path), Some(kept));
    let on_disk = s.upload_file(path).map_or(0, |f| std::fs::metadata(f).unwrap().len());
    assert_eq!(on_disk, kept, "the data file must hold exactly the offset's bytes");
    kept
}

/// Frees the filler, resumes from `kept` and checks the finished upload's bytes.
fn free_and_resume(disk: &SmallDisk, s: &Server, path: &str, data: &[u8], kept: u64) {
    std::fs::remove_file(disk.filler()).unwrap();
    let r = s.patch(path, kept, &data[kept as usize..], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(sha256_hex(&s.get(path).body), sha256_hex(data));
}

/// A full disk: 507 with a message, the offset stays true (the file is cut
/// back to it, so the space comes back), and once space is freed the upload
/// resumes from that offset and ends with the right bytes.
#[test]
fn full_disk_answers_507_and_the_upload_resumes() {
    let Some(disk) = SmallDisk::mount("full_disk_answers_507_and_the_upload_resumes", "8m", 3) else {
        return;
    };
    // No reserve: this is about the disk really filling up.
    let s = disk.server(&["--min-free-space", "0"]);
    let data = bytes(6 << 20, 21);
    let path = s.create(data.len() as u64, &[]);
    let kept = patch_until_507(&s, &path, &data, "storage is full");
    free_and_resume(&disk, &s, &path, &data, kept);
}

/// The free-space reserve: a PATCH that brings the file system below it stops,
/// keeps (and commits) what it stored and answers 507; creations answer 507
/// while it lasts; the disk itself never fills, and once space is freed the
/// upload resumes and ends with the right bytes.
#[test]
fn free_space_reserve_stops_uploads_before_the_disk_fills() {
    // 16 MiB: 4 filled, 4 in reserve; a 10 MiB upload stops after ~8.
    let Some(disk) = SmallDisk::mount("free_space_reserve_stops_uploads_before_the_disk_fills", "16m", 4)
    else {
        return;
    };
    let s = disk.server(&["--min-free-space", "4MiB"]);
    let data = bytes(10 << 20, 22);
    let path = s.create(data.len() as u64, &[]);
    let kept = patch_until_507(&s, &path, &data, "bytes were stored");
    assert!(kept > 0, "what arrived before the reserve was reached is kept");
    assert!(kept < data.len() as u64);
    // While short of space, creations are refused too, with the same code.
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "10")], b"");
    assert_eq!(r.status, 507, "{r:?}");
    assert!(r.text().starts_with("ERR_STORAGE_FULL"), "{}", r.text());
    // The IETF draft's creation too, as a problem document.
    let r = s.request(
        "POST",
        "/files/",
        &[
            ("Upload-Draft-Interop-Version", "6"),
            ("Upload-Complete", "?0"),
            ("Content-Type", "application/partial-upload"),
        ],
        b"",
    );
    assert_eq!(r.status, 507, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.text().contains("nearly full"), "{}", r.text());

    free_and_resume(&disk, &s, &path, &data, kept);
    assert_eq!(s.request("POST", "/files/", &[TUS, ("Upload-Length", "10")], b"").status, 201);
}
