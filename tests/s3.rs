//! tusk with `--storage s3` against a real Garage: uploads stream into a
//! bucket and read back whole, with their sniffed type and digest on the
//! object; `kill -9` mid-PATCH and a bucket that goes away mid-PATCH leave
//! a true offset to resume from; termination leaves nothing in the bucket;
//! a wrong bucket, wrong credentials or an endpoint that does not answer
//! refuse to start, saying which.

mod assets_common;
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use assets_common::{get_asset, tus_create, tus_patch, wait_ready};
use common::garage::Garage;
use common::{Server, read_response_within, sha256_hex};
use tusk::backends::s3::client::{S3Client, S3Settings};

const MIB: usize = 1 << 20;

/// A WAV file of `len` bytes: 16-bit stereo at 44.1 kHz, so its duration
/// says the probe read its header through ranged GETs.
fn wav(len: usize, seed: u64) -> Vec<u8> {
    let data_len = (len - 44) as u32;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(data_len + 36).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&44_100u32.to_le_bytes());
    v.extend_from_slice(&(44_100u32 * 4).to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend(common::bytes(len - 44, seed));
    v
}

fn settings(g: &Garage) -> S3Settings {
    g.settings()
}

/// Objects and multipart uploads in the bucket whose key contains `id`.
fn in_bucket(g: &Garage, id: &str) -> (Vec<(String, u64)>, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = S3Client::new(&settings(g)).unwrap();
        let objects: Vec<_> =
            client.list_objects("").await.unwrap().into_iter().filter(|o| o.0.contains(id)).collect();
        let pending =
            client.list_multipart("").await.unwrap().into_iter().filter(|p| p.key.contains(id)).count();
        (objects, pending)
    })
}

fn start(g: &Garage, extra: &[&str]) -> Server {
    let mut args: Vec<String> = g.tusk_args("5MiB");
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

fn restart(g: &Garage, dir: &std::path::Path) -> Server {
    let args: Vec<String> = g.tusk_args("5MiB");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_in(dir, &args)
}

fn offset(s: &Server, path: &str) -> u64 {
    let r = s.head(path);
    assert_eq!(r.status, 200, "{r:?}");
    r.header("upload-offset").unwrap().parse().unwrap()
}

#[test]
fn an_upload_streams_into_parts_and_reads_back_whole_with_its_type() {
    let g = Garage::start();
    let s = start(&g, &[]);
    let data = wav(12 * MIB + 4321, 1);
    let meta = format!("filename {}", common::b64(b"tone.wav"));
    let (path, id) = tus_create(&s, None, data.len() as u64, Some(&meta));
    // Ends inside the first part, across the second's edge, and the rest.
    let mut at = 0;
    for end in [3 * MIB + 17, 7 * MIB, data.len()] {
        let r = tus_patch(&s, None, &path, at as u64, &data[at..end]);
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("upload-offset"), Some(end.to_string().as_str()));
        at = end;
        assert_eq!(offset(&s, &path), end as u64);
    }
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data), "{asset}");
    assert_eq!(asset["content_type"], "audio/wav", "{asset}");
    let seconds: f64 = asset["duration_seconds"].as_str().unwrap().parse().unwrap();
    assert!((seconds - (data.len() - 44) as f64 / 176_400.0).abs() < 0.01, "{asset}");

    // The tus GET and a range of it, from the bucket.
    let r = s.request("GET", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the bytes read back differ");
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    let r = s.request("GET", &path, &[("Range", "bytes=5242870-5242889")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[5_242_870..5_242_890]);

    // One object, with its type and digest; no tails, no open multipart upload.
    let (objects, pending) = in_bucket(&g, &id);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].0.ends_with(&id) && objects[0].1 == data.len() as u64, "{objects:?}");
    assert_eq!(pending, 0);
    assert_eq!(objects[0].0, format!("{}/{id}", asset["project_id"].as_str().unwrap()), "{{project}}/{{id}}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let headers = rt
        .block_on(S3Client::new(&settings(&g)).unwrap().head_headers(&objects[0].0))
        .unwrap()
        .expect("the object");
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(headers["x-amz-meta-sha256"].to_str().unwrap(), sha256_hex(&data));

    // The signed download streams from the bucket too.
    let url = asset["download_url"].as_str().unwrap();
    let r = s.request("GET", &Server::path_of(url), &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == data);
}

#[test]
fn presigned_downloads_point_at_the_bucket() {
    let g = Garage::start();
    let s = start(&g, &["--s3-presign-downloads"]);
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/pic.png")).unwrap();
    let id =
        assets_common::tus_upload(&s, None, &png, Some(&format!("filename {}", common::b64(b"pic.png"))));
    let asset = wait_ready(&s, None, &id);
    assert!(asset["width"].as_u64().is_some(), "probed through ranged reads: {asset}");
    let url = asset["download_url"].as_str().unwrap();
    let endpoint = g.var("S3_ENDPOINT");
    assert!(url.starts_with(&endpoint), "{url} is not in the bucket at {endpoint}");
    let addr = endpoint.trim_start_matches("http://").parse().unwrap();
    let r = common::request(addr, "GET", &Server::path_of(url), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, png);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r.header("content-disposition").is_some_and(|d| d.contains("pic.png")), "{r:?}");
}

/// Streams `data[from..]` as one PATCH, `pace` between MiB; calls `at(sent)`
/// after each MiB, which may stop the stream by returning false. Returns the
/// answer, if one came.
fn stream(
    s: &Server,
    path: &str,
    data: &Arc<Vec<u8>>,
    from: usize,
    pace: Duration,
    mut at: impl FnMut(usize) -> bool,
) -> Option<common::Resp> {
    let len = (data.len() - from).to_string();
    let off = from.to_string();
    let mut c = s.open("PATCH", path, &common::patch_headers(&off, &[("Content-Length", &len)]));
    let mut sent = 0;
    for chunk in data[from..].chunks(MIB) {
        if c.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if !at(sent) {
            return None;
        }
        std::thread::sleep(pace);
    }
    read_response_within(&mut c, false, Duration::from_secs(60))
}

#[test]
fn kill9_mid_patch_resumes_from_a_true_offset() {
    let g = Garage::start();
    let mut s = start(&g, &[]);
    let data = Arc::new(common::bytes(256 * MIB + 999, 7));
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    let mut acked = 0u64;
    let mut dead = Vec::new();
    // Killed at three points of three PATCHes: mid-part, past a part's edge, late.
    for (round, kill_after) in [(0, 9 * MIB), (1, 31 * MIB), (2, 83 * MIB)] {
        let from = offset(&s, &path) as usize;
        assert!(from as u64 >= acked, "round {round}: the offset went back from {acked} to {from}");
        let mut killed = false;
        let pid = s.child.id().to_string();
        let _ = stream(&s, &path, &data, from, Duration::from_millis(20), |sent| {
            if sent >= kill_after {
                Command::new("kill").args(["-9", &pid]).status().unwrap();
                killed = true;
                return false;
            }
            true
        });
        assert!(killed);
        s.kill9(); // reaps it
        let next = restart(&g, &s.dir.clone());
        // The first server owns the temporary data directory: kept until the end.
        dead.push(std::mem::replace(&mut s, next));
        let now = offset(&s, &path);
        assert!(now as usize <= from + kill_after, "round {round}: offset {now} is past the bytes sent");
        acked = now;
    }
    // The rest in one go, then every byte is checked.
    let from = offset(&s, &path) as usize;
    let r = stream(&s, &path, &data, from, Duration::ZERO, |_| true).expect("an answer");
    assert_eq!(r.status, 204, "{r:?}");
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data), "the digest carried across restarts is wrong");
    let r = s.request("GET", &path, &[], b"");
    assert!(r.body.len() == data.len() && sha256_hex(&r.body) == sha256_hex(&data), "the object differs");
    // Read from the bucket itself: the bytes, the digest, and nothing left
    // over (no multipart upload, no tail) once the sweep of the last start ran.
    assert_eq!(g.check_objects(&s, None), 1);
    assert_eq!(in_bucket(&g, &id).1, 0);
}

#[test]
fn a_long_patch_is_recorded_at_part_edges_without_storing_tails() {
    let g = Garage::start();
    let s = start(&g, &[]);
    let data = Arc::new(common::bytes(23 * MIB + 77, 12));
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    // 80 ms a MiB: the 1 s checkpoint falls between part edges (5 MiB
    // parts), and waits for the next edge instead of storing the part so
    // far as a tail.
    let mut seen = None;
    let r = stream(&s, &path, &data, 0, Duration::from_millis(80), |sent| {
        if sent == 22 * MIB {
            let tails: Vec<_> = in_bucket(&g, &id).0.into_iter().filter(|o| o.0.contains(".part")).collect();
            // The asset's view, not a HEAD: a HEAD would take the upload over.
            let recorded = get_asset(&s, None, &id)["received_bytes"].as_u64().unwrap();
            seen = Some((recorded, tails));
        }
        true
    })
    .expect("an answer");
    assert_eq!(r.status, 204, "{r:?}");
    let (at, tails) = seen.unwrap();
    assert!(at > 0 && at % (5 * MIB as u64) == 0, "recorded at {at}, not at a part's edge");
    assert!(tails.is_empty(), "tails stored while the body streamed: {tails:?}");
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data));
    assert_eq!(g.check_objects(&s, None), 1);
}

#[test]
fn a_bucket_that_goes_away_mid_patch_answers_503_and_the_retry_resumes() {
    let mut g = Garage::start();
    let s = start(&g, &[]);
    let data = Arc::new(common::bytes(40 * MIB + 5, 9));
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    let r = tus_patch(&s, None, &path, 0, &data[..6 * MIB]);
    assert_eq!(r.status, 204, "{r:?}");
    let mut stopped = false;
    let answer = stream(&s, &path, &data, 6 * MIB, Duration::from_millis(30), |sent| {
        if sent >= 12 * MIB && !stopped {
            g.stop();
            stopped = true;
        }
        true
    });
    let r = answer.expect("an answer, not a dropped connection");
    assert_eq!(r.status, 503, "{r:?}");
    let kept: u64 = r.header("upload-offset").expect("the durable offset").parse().unwrap();
    assert!(kept >= 6 * MIB as u64, "acknowledged bytes were lost: {kept}");
    assert!(r.text().contains("storage"), "{}", r.text());
    // HEAD needs no bucket: the offset is the one the 503 gave.
    assert_eq!(offset(&s, &path), kept);
    // While it is away, a PATCH is a 503 too, never a 500.
    let r = tus_patch(&s, None, &path, kept, &data[kept as usize..kept as usize + MIB]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(offset(&s, &path), kept);

    g.restart();
    let from = offset(&s, &path) as usize;
    let r = stream(&s, &path, &data, from, Duration::ZERO, |_| true).expect("an answer");
    assert_eq!(r.status, 204, "{r:?}");
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data));
    let r = s.request("GET", &path, &[], b"");
    assert!(sha256_hex(&r.body) == sha256_hex(&data), "the object differs");
}

/// Waits (at most 10 s) until a write with the test key is refused with a
/// 403 (`refused`) or accepted again: Garage applies a grant change on
/// its own time.
fn wait_for_write_refusal(g: &Garage, refused: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = S3Client::new(&settings(g)).unwrap();
    for _ in 0..100 {
        let put = rt.block_on(client.put_object("probe", vec![bytes::Bytes::from_static(b"x")], &[]));
        let is_refused = matches!(&put, Err(tusk::backends::s3::client::S3Error::Refused { status, .. })
            if status.as_u16() == 403);
        if is_refused == refused {
            let _ = rt.block_on(client.delete_object("probe"));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Garage did not {} writes within 10 s", if refused { "refuse" } else { "accept" });
}

#[test]
fn a_bucket_that_refuses_tusk_mid_upload_answers_503_and_the_retry_resumes() {
    let g = Garage::start();
    let s = start(&g, &[]);
    let data = common::bytes(12 * MIB + 7, 4);
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &data[..6 * MIB]).status, 204);
    // The operator withdraws the key's write grant (a rotated or revoked
    // credential looks the same to tusk: 403 from the bucket).
    g.cli(&["bucket", "deny", "--write", "tusk", "--key", "tusk-key"]);
    wait_for_write_refusal(&g, true);
    let kept = offset(&s, &path);
    let r = tus_patch(&s, None, &path, kept, &data[kept as usize..]);
    assert_eq!(r.status, 503, "a refusal by the bucket is not a bare 500: {r:?}");
    assert!(r.text().contains("storage") && r.text().contains("kept"), "{}", r.text());
    let after: u64 = r.header("upload-offset").expect("the durable offset").parse().unwrap();
    assert!(after >= 6 * MIB as u64, "acknowledged bytes were lost: {after}");
    assert_eq!(offset(&s, &path), after);

    g.cli(&["bucket", "allow", "--write", "tusk", "--key", "tusk-key"]);
    wait_for_write_refusal(&g, false);
    let r = tus_patch(&s, None, &path, after, &data[after as usize..]);
    assert_eq!(r.status, 204, "{r:?}");
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data));
    assert_eq!(g.check_objects(&s, None), 1);
}

#[test]
fn a_bucket_away_after_the_last_byte_delays_the_asset_but_never_fails_it() {
    let mut g = Garage::start();
    let s = start(&g, &[]);
    let data = wav(11 * MIB + 99, 6);
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    let r = tus_patch(&s, None, &path, 0, &data);
    assert_eq!(r.status, 204, "{r:?}");
    // Gone while the parts are joined and the media probed.
    g.stop();
    let r = s.request("GET", &path, &[], b"");
    assert_eq!(r.status, 503, "a store away is a 503, never a 500: {r:?}");
    assert_ne!(get_asset(&s, None, &id)["state"], "failed");
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(get_asset(&s, None, &id)["state"], "failed", "the store's outage is not the media's fault");
    g.restart();
    let asset = wait_ready(&s, None, &id);
    assert_eq!(asset["sha256"], sha256_hex(&data));
    assert!(asset["duration_seconds"].as_str().is_some(), "probed once the store is back: {asset}");
    assert_eq!(g.check_objects(&s, None), 1);
}

#[test]
fn termination_and_deletion_leave_nothing_in_the_bucket() {
    let g = Garage::start();
    let s = start(&g, &[]);
    let data = common::bytes(7 * MIB, 3);
    // Unfinished: a part and a tail in the bucket, then terminated.
    let (path, id) = tus_create(&s, None, 20 * MIB as u64, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &data).status, 204);
    let (objects, pending) = in_bucket(&g, &id);
    assert!(!objects.is_empty() && pending == 1, "{objects:?} {pending}");
    let r = s.request("DELETE", &path, &[("Tus-Resumable", "1.0.0")], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(in_bucket(&g, &id), (vec![], 0));
    // Finished, then the asset deleted through the API.
    let id = assets_common::tus_upload(&s, None, &data, None);
    wait_ready(&s, None, &id);
    assert_eq!(in_bucket(&g, &id).0.len(), 1);
    let r = assets_common::api(&s, "DELETE", &format!("/v1/assets/{id}"), None, None);
    assert!(r.status == 204 || r.status == 200, "{r:?}");
    assert_eq!(in_bucket(&g, &id), (vec![], 0));
    assert_eq!(assets_common::api(&s, "GET", &format!("/v1/assets/{id}"), None, None).status, 404);
}

#[test]
fn unfinished_uploads_say_why_they_cannot_be_read_and_trailers_are_refused() {
    let g = Garage::start();
    let s = start(&g, &[]);
    let (path, _) = tus_create(&s, None, 10, None);
    assert_eq!(tus_patch(&s, None, &path, 0, b"hello").status, 204);
    let r = s.request("GET", &path, &[], b"");
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.text().contains("once it is complete"), "{}", r.text());
    let r = s.request("OPTIONS", "/files/", &[], b"");
    assert!(!r.header("tus-extension").unwrap().contains("checksum-trailer"), "{r:?}");
    let r = s.request(
        "PATCH",
        &path,
        &common::patch_headers("5", &[("Trailer", "Upload-Checksum"), ("Content-Length", "5")]),
        b"world",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("Upload-Checksum as a header"), "{}", r.text());
    assert_eq!(get_asset(&s, None, path.rsplit('/').next().unwrap())["state"], "pending_upload");
}

/// `tusk serve` with `args` must exit at start with a message containing `says`.
fn refuses(args: &[String], says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(err.contains(says), "expected {says:?} in: {err}");
}

#[test]
fn a_wrong_bucket_refuses_to_start_saying_which() {
    let g = Garage::start();
    let with = |flag: &str, value: &str| {
        let mut args = g.tusk_args("5MiB");
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value.to_string();
        args
    };
    refuses(&with("--s3-bucket", "no-such-bucket"), "does not exist");
    refuses(&with("--s3-secret-access-key", "wrong"), "refused the credentials");
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    refuses(&with("--s3-endpoint", &format!("http://{closed}")), "does not answer");
    refuses(&with("--s3-part-size", "1MiB"), "--s3-part-size");
    refuses(&["--storage".into(), "s3".into()], "--storage s3 needs --s3-endpoint");
}

#[test]
fn multipart_uploads_and_objects_no_record_owns_are_removed_at_start() {
    let g = Garage::start();
    // Left by a crash between a removal's commit and its bucket calls: an
    // open multipart upload and a tail of ids no record names.
    let orphan = uuid::Uuid::now_v7();
    let key = format!("{}/{orphan}", uuid::Uuid::now_v7());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = S3Client::new(&settings(&g)).unwrap();
        client.create_multipart(&key, &[]).await.unwrap();
        client
            .put_object(&format!("{key}.part1"), vec![bytes::Bytes::from_static(b"tail")], &[])
            .await
            .unwrap();
    });
    assert_eq!(in_bucket(&g, &orphan.to_string()).1, 1);
    std::thread::sleep(Duration::from_millis(5)); // the orphan's id is older than the start
    let s = start(&g, &[]);
    // An upload of this run is left alone.
    let (path, id) = tus_create(&s, None, 10 * MIB as u64, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &common::bytes(6 * MIB, 2)).status, 204);
    let swept = common::poll(Duration::from_secs(10), || {
        (in_bucket(&g, &orphan.to_string()) == (vec![], 0)).then_some(())
    });
    assert!(swept.is_some(), "the orphan is still there: {:?}", in_bucket(&g, &orphan.to_string()));
    let (objects, pending) = in_bucket(&g, &id);
    assert!(!objects.is_empty() && pending == 1, "this run's upload was touched: {objects:?} {pending}");
    assert_eq!(offset(&s, &path), 6 * MIB as u64);
}

#[test]
fn uploads_past_the_buffer_budget_wait_for_it_and_all_finish() {
    let g = Garage::start();
    // Room for two parts of 5 MiB: six uploads of 12 MiB at once take turns.
    let s = start(&g, &["--s3-buffer", "10MiB"]);
    let uploads: Vec<_> = (0..6u64)
        .map(|i| {
            let data = common::bytes(12 * MIB + i as usize, 40 + i);
            let (path, id) = tus_create(&s, None, data.len() as u64, None);
            (path, id, data)
        })
        .collect();
    std::thread::scope(|scope| {
        for (path, _, data) in &uploads {
            let s = &s;
            scope.spawn(move || {
                let r = tus_patch(s, None, path, 0, data);
                assert_eq!(r.status, 204, "{r:?}");
            });
        }
    });
    for (path, id, data) in &uploads {
        let asset = wait_ready(&s, None, id);
        assert_eq!(asset["sha256"], sha256_hex(data));
        assert_eq!(offset(&s, path), data.len() as u64);
    }
}

#[test]
fn expiry_aborts_the_multipart_upload_and_removes_its_objects() {
    let g = Garage::start();
    let s = start(&g, &["--expire-after", "2s"]);
    let (path, id) = tus_create(&s, None, 20 * MIB as u64, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &common::bytes(7 * MIB, 5)).status, 204);
    let (objects, pending) = in_bucket(&g, &id);
    assert!(!objects.is_empty() && pending == 1, "a part and a tail are there: {objects:?} {pending}");
    let gone = common::poll(Duration::from_secs(8), || (s.head(&path).status == 410).then_some(()));
    assert!(gone.is_some(), "the unfinished upload did not expire");
    let emptied = common::poll(Duration::from_secs(4), || (in_bucket(&g, &id) == (vec![], 0)).then_some(()));
    assert!(emptied.is_some(), "left in the bucket: {:?}", in_bucket(&g, &id));
}
