//! Crash safety: kill -9 and SIGTERM in the middle of a large PATCH, restart
//! on the same data directory, resume, and check every byte.
mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Deterministic bytes, generated a word at a time (fast even in debug builds).
fn source(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut x = seed.wrapping_mul(6364136223846793005) | 1;
    for w in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        w.copy_from_slice(&b[..w.len()]);
    }
    v
}

/// Streams `data[from..]` as one PATCH in a thread, `pace` between MiB writes.
/// Returns the thread and a counter of bytes written to the socket.
fn stream_patch(
    s: &Server,
    path: &str,
    data: Arc<Vec<u8>>,
    from: usize,
    pace: Duration,
) -> (std::thread::JoinHandle<Option<Resp>>, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let len = (data.len() - from).to_string();
    let off = from.to_string();
    let mut c = s.open("PATCH", path, &patch_headers(&off, &[("Content-Length", &len)]));
    let counter = sent.clone();
    let t = std::thread::spawn(move || {
        for chunk in data[from..].chunks(MIB) {
            if c.write_all(chunk).is_err() {
                return None;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        read_response_within(&mut c, false, Duration::from_secs(30))
    });
    (t, sent)
}

/// GETs the upload, streaming the body: compares it with `data` and checks its length.
fn verify_download(s: &Server, path: &str, data: &[u8]) {
    let mut c = s.open("GET", path, &[]);
    let mut buf = vec![0u8; MIB];
    let mut head = Vec::new();
    let body_start = loop {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "EOF before response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let r = parse_response(&head[..body_start], true);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()));
    let mut pos = 0usize;
    let first = &head[body_start..];
    assert_eq!(first, &data[..first.len()]);
    pos += first.len();
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(pos + n <= data.len(), "body longer than the upload");
        assert!(buf[..n] == data[pos..pos + n], "bytes differ near offset {pos}");
        pos += n;
    }
    assert_eq!(pos, data.len(), "body length");
}

fn check_offset_and_file(s: &Server, path: &str, sent: u64) -> u64 {
    let h = s.head(path);
    assert_eq!(h.status, 200, "{h:?}");
    let offset: u64 = h.header("upload-offset").unwrap().parse().unwrap();
    assert!(offset <= sent, "offset {offset} > bytes sent {sent}");
    let file = s.upload_file(path).expect("data file");
    let on_disk = std::fs::metadata(&file).unwrap().len();
    assert!(on_disk >= offset, "file has {on_disk} bytes, offset says {offset}");
    offset
}

fn resume_and_verify(s: &Server, path: &str, data: &Arc<Vec<u8>>, offset: u64) {
    let (t, _) = stream_patch(s, path, data.clone(), offset as usize, Duration::ZERO);
    let r = t.join().unwrap().expect("resume answered");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some(data.len().to_string().as_str()));
    let h = s.head(path);
    assert_eq!(h.header("upload-offset"), h.header("upload-length"));
    verify_download(s, path, data);
    // The server's ETag is the SHA-256 of the whole upload.
    let g = s.request("GET", path, &[("Range", "bytes=0-0")], b"");
    assert_eq!(g.header("etag").unwrap(), format!("\"{}\"", sha256_hex(data)));
}

#[test]
fn kill9_mid_patch_then_resume() {
    let t0 = Instant::now();
    let data = Arc::new(source(256 * MIB, 61));
    let mut s = Server::start(&[]);
    let path = s.create(data.len() as u64, &[]);
    let (t, sent) = stream_patch(&s, &path, data.clone(), 0, Duration::from_millis(4));
    // Past the first 64 MiB checkpoint, then pull the plug.
    let reached =
        poll(Duration::from_secs(60), || (sent.load(Ordering::SeqCst) >= 100 * MIB as u64).then_some(()));
    assert!(reached.is_some(), "the PATCH did not progress");
    s.kill9();
    let _ = t.join();
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent < data.len() as u64, "killed after the whole body was sent; pace it slower");

    let s2 = Server::start_in(&s.dir, &[]);
    let offset = check_offset_and_file(&s2, &path, sent);
    eprintln!("kill -9 after {sent} bytes sent; recovered offset {offset}");
    resume_and_verify(&s2, &path, &data, offset);
    eprintln!("kill9 test took {:?}", t0.elapsed());
    drop(s2);
    drop(s);
}

#[test]
fn sigterm_mid_patch_then_resume() {
    let data = Arc::new(source(64 * MIB, 62));
    let mut s = Server::start(&[]);
    let path = s.create(data.len() as u64, &[]);
    let (t, sent) = stream_patch(&s, &path, data.clone(), 0, Duration::from_millis(20));
    let reached =
        poll(Duration::from_secs(30), || (sent.load(Ordering::SeqCst) >= 16 * MIB as u64).then_some(()));
    assert!(reached.is_some(), "the PATCH did not progress");
    let sent_at_signal = sent.load(Ordering::SeqCst);
    let t_stop = Instant::now();
    let status = s.sigterm();
    assert!(status.success(), "exit status {status:?}; log:\n{}", s.logs());
    assert!(t_stop.elapsed() < Duration::from_secs(8), "shutdown took {:?}", t_stop.elapsed());
    if let Some(r) = t.join().unwrap() {
        // The interrupted PATCH was told to come back (not a success).
        assert_eq!(r.status, 503, "{r:?}");
    }
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent < data.len() as u64);

    let s2 = Server::start_in(&s.dir, &[]);
    let offset = check_offset_and_file(&s2, &path, sent);
    // A graceful stop commits what arrived: what was sent before the signal,
    // less what was still in socket buffers (the sender is paced, so little).
    assert!(
        offset + 8 * MIB as u64 >= sent_at_signal,
        "offset {offset}: bytes sent before SIGTERM ({sent_at_signal}) were lost"
    );
    // And what it stored is exactly the source's prefix.
    let g = s2.request("GET", &path, &[("Range", &format!("bytes={}-{}", offset - 4096, offset - 1))], b"");
    assert_eq!(g.status, 206);
    assert_eq!(g.body, &data[offset as usize - 4096..offset as usize]);
    resume_and_verify(&s2, &path, &data, offset);
    drop(s2);
    drop(s);
}

/// SIGTERM while a PATCH is stalled (half its body sent, then silence) and an
/// idle keep-alive connection is open: exit 0 promptly, the stalled request is
/// told to retry (503 + Upload-Offset) and what arrived is kept.
#[test]
fn sigterm_with_idle_stalled_patch() {
    let mut s = Server::start(&[]);
    let path = s.create(100, &[]);
    let other = s.create(5, &[]);
    let mut c = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "100")]));
    c.write_all(&[7u8; 40]).unwrap();
    let mut k = std::net::TcpStream::connect(s.addr).unwrap();
    k.write_all(
        format!("HEAD {other} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\r\n").as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let status = s.sigterm();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
    let r = read_response_within(&mut c, false, Duration::from_secs(2)).expect("an answer");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("40"));
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(s2.offset(&path), Some(40));
    assert_eq!(s2.get(&path).body, [7u8; 40]);
}

/// A file shorter than its recorded offset (lost writes) is wound back at
/// start-up; the upload resumes from there and ends with the right digest.
#[test]
fn restart_reconciles_short_file() {
    let data = bytes(2000, 63);
    let mut s = Server::start(&[]);
    let path = s.create(2000, &[]);
    assert_eq!(s.patch(&path, 0, &data[..1500], &[]).status, 204);
    let file = s.upload_file(&path).unwrap();
    assert!(s.sigterm().success());
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(700).unwrap();
    drop(f);
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(s2.offset(&path), Some(700));
    assert_eq!(s2.get(&path).body, &data[..700]);
    assert_eq!(s2.patch(&path, 700, &data[700..], &[]).status, 204);
    let g = s2.get(&path);
    assert_eq!(g.body, data);
    assert_eq!(g.header("etag").unwrap(), format!("\"{}\"", sha256_hex(&data)));
}

/// The same while the server runs: a data file shortened (or removed) by
/// hand is noticed by the next append, which answers 409 with the offset
/// that is really stored instead of writing after a gap; the upload resumes
/// from there (tus and the IETF draft) and ends with the right digest.
#[test]
fn a_file_shortened_while_running_winds_the_upload_back() {
    let s = Server::start(&[]);
    let data = bytes(3000, 64);
    let path = s.create(3000, &[]);
    assert_eq!(s.patch(&path, 0, &data[..2000], &[]).status, 204);
    let file = s.upload_file(&path).unwrap();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(1200).unwrap();
    let r = s.patch(&path, 2000, &data[2000..], &[]);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("1200"));
    assert_eq!(s.offset(&path), Some(1200));
    assert_eq!(s.patch(&path, 1200, &data[1200..], &[]).status, 204);
    let g = s.get(&path);
    assert_eq!(g.body, data);
    assert_eq!(g.header("etag").unwrap(), format!("\"{}\"", sha256_hex(&data)));

    // A file removed outright: back to 0, through the IETF draft's append.
    let path = s.create(3000, &[]);
    assert_eq!(s.patch(&path, 0, &data[..1000], &[]).status, 204);
    std::fs::remove_file(s.upload_file(&path).unwrap()).unwrap();
    let r = s.request(
        "PATCH",
        &path,
        &[
            ("Upload-Draft-Interop-Version", "6"),
            ("Upload-Offset", "1000"),
            ("Upload-Complete", "?1"),
            ("Content-Type", "application/partial-upload"),
        ],
        &data[1000..],
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("0"));
    assert_eq!(s.patch(&path, 0, &data, &[]).status, 204);
    assert_eq!(s.get(&path).header("etag").unwrap(), format!("\"{}\"", sha256_hex(&data)));
}

/// The checkpoint of a paused body is durable: after kill -9 during the pause
/// the upload resumes from the bytes that arrived, and its SHA-256 (carried
/// across the restart in the record) still covers every byte once.
#[test]
fn kill9_during_pause_keeps_the_checkpoint() {
    let data = Arc::new(source(600_000, 63));
    let mut s = Server::start(&[]);
    let path = s.create(data.len() as u64, &[]);
    let mut c = s.open("PATCH", &path, &patch_headers("0", &[("Content-Length", "600000")]));
    c.write_all(&data[..300_001]).unwrap();
    c.flush().unwrap();
    // Longer than the one-second checkpoint interval.
    std::thread::sleep(Duration::from_millis(2_500));
    s.kill9();
    drop(c);
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(check_offset_and_file(&s2, &path, 300_001), 300_001, "the paused bytes were checkpointed");
    resume_and_verify(&s2, &path, &data, 300_001);
    drop(s2);
    drop(s);
}

/// Every 201 survives a kill -9 right after it: creations from 8 concurrent
/// clients (group commit batches their sled flushes) are cut off by SIGKILL
/// mid-stream, and after a restart each acknowledged upload is there.
#[test]
fn every_acknowledged_creation_survives_kill9() {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    let mut s = Server::start(&[]);
    let addr = s.addr;
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (created, stop) = (created.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: at most 2,000 creations per client.
                for _ in 0..2_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Raw, so a connection cut by the kill ends the loop instead of panicking.
                    let Some(location) = try_create(addr) else { break };
                    created.lock().unwrap().push(Server::path_of(&location));
                }
            })
        })
        .collect();
    let enough = poll(Duration::from_secs(30), || (created.lock().unwrap().len() >= 300).then_some(()));
    assert!(enough.is_some(), "creations did not progress");
    s.kill9();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    let created = created.lock().unwrap().clone();
    let s2 = Server::start_in(&s.dir, &[]);
    let lost: Vec<&String> = created.iter().filter(|p| s2.offset(p) != Some(0)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creations lost, e.g. {:?}",
        lost.len(),
        created.len(),
        lost[0]
    );
    eprintln!("{} acknowledged creations all survived kill -9", created.len());
    drop(s2);
    drop(s);
}

/// POST /files/ (Upload-Length: 10); the Location of a 201, or None if the
/// server did not answer one.
fn try_create(addr: std::net::SocketAddr) -> Option<String> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /files/ HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 10\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).ok()?;
    let mut answer = String::new();
    c.read_to_string(&mut answer).ok()?;
    if !answer.starts_with("HTTP/1.1 201") {
        return None;
    }
    answer.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location").then(|| v.trim().to_string())
    })
}

/// A crash between a removal's commit and its file's deletion leaves a data
/// file no record owns; the next start deletes it, and only it.
#[test]
fn orphan_data_files_are_deleted_at_start() {
    let mut s = Server::start(&[]);
    let kept = s.create(10, &[]);
    assert_eq!(s.patch(&kept, 0, b"0123456789", &[]).status, 204);
    let kept_file = s.upload_file(&kept).expect("data file");
    assert!(s.sigterm().success());

    // An upload id from before the restart whose record is gone, and a file
    // that is not an upload's: dated two minutes back.
    let orphan_id = uuid::Uuid::now_v7();
    let hex = orphan_id.simple().to_string();
    let shard = s.dir.join("uploads").join(&hex[30..32]).join(&hex[29..30]);
    let orphan = shard.join(orphan_id.to_string());
    let stranger = shard.join("notes.txt");
    let old = std::time::SystemTime::now() - Duration::from_secs(120);
    for f in [&orphan, &stranger] {
        std::fs::write(f, b"left behind").unwrap();
        std::fs::File::options().write(true).open(f).unwrap().set_modified(old).unwrap();
    }

    let s2 = Server::start_in(&s.dir, &[]);
    let gone = poll(Duration::from_secs(10), || (!orphan.exists()).then_some(()));
    assert!(gone.is_some(), "the orphan file was not deleted");
    assert!(stranger.exists(), "a file that is not an upload's was touched");
    assert!(kept_file.exists());
    assert_eq!(s2.get(&kept).body, b"0123456789");
    drop(s2);
    drop(s);
}

/// PATCHes whose offsets ride on the data file's sync (stored without a
/// metadata flush) survive kill -9 right after the last 204: after a restart
/// the upload is at the last acknowledged offset, read from its synced file,
/// and its digest, carried over the bytes the stored record had not seen,
/// still covers every byte once.
#[test]
fn every_acknowledged_patch_survives_kill9() {
    const CHUNK: usize = 64 << 10;
    let data = Arc::new(source(40 * CHUNK + 1000, 64));
    let mut s = Server::start(&[]);
    let path = s.create(data.len() as u64, &[]);
    let mut acked = 0u64;
    for chunk in data[..40 * CHUNK].chunks(CHUNK) {
        let r = s.patch(&path, acked, chunk, &[]);
        assert_eq!(r.status, 204, "{r:?}");
        acked += chunk.len() as u64;
        assert_eq!(r.header("upload-offset"), Some(acked.to_string().as_str()));
    }
    s.kill9();
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(check_offset_and_file(&s2, &path, acked), acked, "an acknowledged offset was lost");
    resume_and_verify(&s2, &path, &data, acked);
    drop(s2);
    drop(s);
}

/// Bytes that must be verified first are never taken from the file at
/// start-up: after PATCHes stored without a flush, a PATCH with an
/// Upload-Checksum is killed mid-body; after a restart the upload is where
/// the last acknowledged PATCH left it, and resumes from there.
#[test]
fn kill9_mid_checksum_patch_keeps_only_acknowledged_bytes() {
    use sha2::Digest;
    const CHUNK: usize = 64 << 10;
    let data = Arc::new(source(2 * CHUNK + MIB, 65));
    let mut s = Server::start(&[]);
    let path = s.create(data.len() as u64, &[]);
    for i in 0..2 {
        let r = s.patch(&path, (i * CHUNK) as u64, &data[i * CHUNK..(i + 1) * CHUNK], &[]);
        assert_eq!(r.status, 204, "{r:?}");
    }
    let acked = 2 * CHUNK;
    let sum = format!("sha256 {}", b64(&sha2::Sha256::digest(&data[acked..])));
    let len = (data.len() - acked).to_string();
    let off = acked.to_string();
    let mut c =
        s.open("PATCH", &path, &patch_headers(&off, &[("Content-Length", &len), ("Upload-Checksum", &sum)]));
    // More than two of the 256 KiB blocks in which bytes go to the disk.
    c.write_all(&data[acked..acked + 600_000]).unwrap();
    c.flush().unwrap();
    // The bytes reach the file (a checksum body is never checkpointed, so
    // only the file can show them) before the process dies.
    let file = s.upload_file(&path).expect("data file");
    let written = poll(Duration::from_secs(10), || {
        (std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > acked as u64).then_some(())
    });
    assert!(written.is_some(), "the unverified bytes never reached the file");
    s.kill9();
    drop(c);
    let s2 = Server::start_in(&s.dir, &[]);
    assert_eq!(s2.offset(&path), Some(acked as u64), "unverified bytes were taken as the upload's");
    resume_and_verify(&s2, &path, &data, acked as u64);
    drop(s2);
    drop(s);
}
