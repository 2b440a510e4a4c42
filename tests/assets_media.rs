//! Real media (tests/fixtures/media, values measured with ffprobe in
//! MANIFEST.json): sniffed type, extension, content type, duration within
//! 50 ms, dimensions, size and sha256; a corrupt MP4 fails; `--allowed-types`;
//! an upload resumed across a kill -9; sniffing waits for 8 KiB.

mod assets_common;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use assets_common::*;
use common::garage::Store;
use common::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("MANIFEST.json")).expect("MANIFEST.json");
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Uploads in 4 KiB PATCHes, so sniffing happens across requests.
fn upload_chunked(s: &Server, data: &[u8], name: &str) -> String {
    let (path, id) = tus_create(s, None, data.len() as u64, Some(&format!("filename {}", b64s(name))));
    for (i, c) in data.chunks(4096).enumerate() {
        let r = tus_patch(s, None, &path, (i * 4096) as u64, c);
        assert_eq!(r.status, 204, "{name}: {r:?}");
    }
    id
}

fn check_against_manifest(a: &Value, m: &Value) {
    let file = m["file"].as_str().unwrap();
    assert_schema("Asset", a);
    assert_eq!(a["state"], "ready", "{file}: {a}");
    for f in ["type", "extension", "content_type", "width", "height", "size_bytes", "sha256"] {
        assert_eq!(a[f], m[f], "{file}: {f}: {a}");
    }
    assert_eq!(a["received_bytes"], m["size_bytes"]);
    match m["duration_seconds"].as_f64() {
        Some(want) => {
            let got: f64 = a["duration_seconds"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: duration_seconds is a decimal string: {a}"))
                .parse()
                .unwrap();
            assert!((got - want).abs() <= 0.05, "{file}: duration {got} vs ffprobe {want}");
        }
        None => assert!(a["duration_seconds"].is_null(), "{file}: {a}"),
    }
    assert!(a["error_code"].is_null() && a["error_message"].is_null());
}

#[test]
fn every_fixture_is_sniffed_and_measured_like_ffprobe() {
    every_fixture_is_sniffed_and_measured_like_ffprobe_on(Store::Files);
}

#[test]
fn every_fixture_is_sniffed_and_measured_like_ffprobe_on_s3() {
    every_fixture_is_sniffed_and_measured_like_ffprobe_on(Store::S3);
}

fn every_fixture_is_sniffed_and_measured_like_ffprobe_on(store: Store) {
    let (s, garage) = store.serve(&[]);
    let entries: Vec<Value> =
        manifest().into_iter().filter(|m| !m["file"].as_str().unwrap().starts_with("corrupt")).collect();
    assert!(entries.len() >= 10, "MANIFEST.json lists the fixtures");
    for kind in ["audio", "video", "image"] {
        assert!(entries.iter().any(|m| m["type"] == kind), "a {kind} fixture");
    }
    let mut ids = Vec::new();
    for m in &entries {
        let file = m["file"].as_str().unwrap();
        let data = fixture(file);
        assert_eq!(sha256_hex(&data), m["sha256"], "{file} is the file MANIFEST.json describes");
        assert_eq!(data.len() as u64, m["size_bytes"].as_u64().unwrap());
        ids.push(upload_chunked(&s, &data, file));
    }
    let mut failures = Vec::new();
    for (m, id) in entries.iter().zip(&ids) {
        let a = wait_state(&s, None, id, &["ready", "failed"], Duration::from_secs(30));
        let r = std::panic::catch_unwind(|| check_against_manifest(&a, m));
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("{}: {msg}", m["file"]));
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) wrong:\n{}", failures.len(), failures.join("\n"));
    if let Some(g) = &garage {
        assert_eq!(g.check_objects(&s, None), entries.len(), "every fixture is in the bucket");
    }
}

#[test]
fn a_corrupt_mp4_fails_with_media_unreadable() {
    let s = Server::start(&[]);
    let data = fixture("corrupt.mp4");
    let id = upload_chunked(&s, &data, "corrupt.mp4");
    let a = wait_state(&s, None, &id, &["ready", "failed"], Duration::from_secs(30));
    assert_schema("Asset", &a);
    assert_eq!(a["state"], "failed", "{a}");
    assert_eq!(a["error_code"], "media_unreadable");
    assert!(a["error_message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(a["type"], "video", "sniffed before it failed");
    assert!(a["duration_seconds"].is_null() && a["width"].is_null());
    assert!(a["sha256"].is_null() && a["download_url"].is_null() && a["upload_url"].is_null());
    // failed is final: it stays failed.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_asset(&s, None, &id)["state"], "failed");
}

/// A type the server does not accept is refused as soon as its first 8 KiB
/// are in (here across two 4 KiB PATCHes), not after the last byte.
#[test]
fn types_the_server_does_not_accept_fail_with_type_not_allowed() {
    let s = Server::start(&["--allowed-types", "image"]);
    let mp3 = fixture("tone.mp3");
    let (path, id) = tus_create(&s, None, mp3.len() as u64, Some(&format!("filename {}", b64s("tone.mp3"))));
    assert_eq!(tus_patch(&s, None, &path, 0, &mp3[..4096]).status, 204, "4 KiB do not decide yet");
    let r = tus_patch(&s, None, &path, 4096, &mp3[4096..]);
    assert_eq!(r.status, 415, "{r:?}");
    assert!(r.text().contains("ERR_TYPE_NOT_ALLOWED") && r.text().contains("audio/mpeg"), "{}", r.text());
    let a = get_asset(&s, None, &id);
    assert_eq!(a["state"], "failed", "{a}");
    assert_eq!(a["error_code"], "type_not_allowed");
    assert!(a["error_message"].as_str().unwrap().contains("audio"), "{a}");
    assert_eq!(a["type"], "audio", "says what was sniffed: {a}");
    assert_eq!(a["received_bytes"], 0, "the bytes were removed: {a}");
    assert!(s.upload_file(&path).is_none(), "no data file is left");
    // Every later request on it says why.
    assert_eq!(s.request("HEAD", &path, &[("Tus-Resumable", "1.0.0")], b"").status, 415);
    let png = upload_chunked(&s, &fixture("pic.png"), "pic.png");
    wait_ready(&s, None, &png);
}

#[test]
fn an_upload_resumed_after_kill_9_has_the_right_sha256_and_measurements() {
    an_upload_resumed_after_kill_9_has_the_right_sha256_and_measurements_on(Store::Files);
}

#[test]
fn an_upload_resumed_after_kill_9_has_the_right_sha256_and_measurements_on_s3() {
    an_upload_resumed_after_kill_9_has_the_right_sha256_and_measurements_on(Store::S3);
}

fn an_upload_resumed_after_kill_9_has_the_right_sha256_and_measurements_on(store: Store) {
    let m = manifest().into_iter().find(|m| m["file"] == "tone.wav").unwrap();
    let data = fixture("tone.wav");
    let garage = store.garage();
    let mut s = Store::serve_with(&garage, None, &[]);
    let (path, id) = tus_create(&s, None, data.len() as u64, Some(&format!("filename {}", b64s("tone.wav"))));
    let half = data.len() / 2;
    assert_eq!(tus_patch(&s, None, &path, 0, &data[..half]).status, 204);
    let before = get_asset(&s, None, &id);
    assert_eq!(before["type"], "audio", "sniffed after 8 KiB: {before}");
    let dir = s.dir.clone();
    // kill -9 mid-upload (the old `s` stays alive, shadowed, keeping the temp dir).
    s.kill9();
    let s = Store::serve_with(&garage, Some(&dir), &[]);
    let off = s.offset(&path).expect("HEAD after restart");
    assert!(off as usize <= half && off > 0, "offset {off}");
    assert_eq!(get_asset(&s, None, &id)["state"], "pending_upload");
    assert_eq!(tus_patch(&s, None, &path, off, &data[off as usize..]).status, 204);
    let a = wait_ready(&s, None, &id);
    check_against_manifest(&a, &m);
    assert_eq!(a["sha256"], sha256_hex(&data));
    assert_eq!(a["name"], "tone.wav");
}

#[test]
fn text_and_unknown_bytes() {
    let s = Server::start(&[]);
    let text = "plain UTF-8 text, ünïcødé included.\n".repeat(50);
    let id = tus_upload(&s, None, text.as_bytes(), None);
    let a = wait_ready(&s, None, &id);
    assert_eq!(
        (&a["type"], &a["content_type"], &a["extension"]),
        (&"other".into(), &"text/plain".into(), &"txt".into()),
        "{a}"
    );
    let bin = bytes(20_000, 99);
    let id = tus_upload(&s, None, &bin, Some(&format!("filetype {}", b64s("image/png"))));
    let a = wait_ready(&s, None, &id);
    assert_eq!(a["type"], "other", "never the client's claim: {a}");
    assert_eq!(a["content_type"], "application/octet-stream");
    assert!(a["extension"].is_null());
    assert!(a["duration_seconds"].is_null() && a["width"].is_null() && a["height"].is_null());
}

#[test]
fn sniffing_waits_for_8_kib() {
    let s = Server::start(&[]);
    let mut data = fixture("pic.png");
    data.extend(bytes(20_000 - data.len(), 5));
    let (path, id) = tus_create(&s, None, 20_000, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &data[..4096]).status, 204);
    let a = get_asset(&s, None, &id);
    assert_eq!(a["received_bytes"], 4096);
    assert!(a["type"].is_null() && a["content_type"].is_null() && a["extension"].is_null(), "{a}");
    assert_eq!(tus_patch(&s, None, &path, 4096, &data[4096..8191]).status, 204);
    assert!(get_asset(&s, None, &id)["type"].is_null(), "8191 bytes are not enough");
    assert_eq!(tus_patch(&s, None, &path, 8191, &data[8191..8192]).status, 204);
    let a = get_asset(&s, None, &id);
    assert_eq!(a["state"], "pending_upload");
    assert_eq!(a["type"], "image", "{a}");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["extension"], "png");
    // A whole upload smaller than 8 KiB is sniffed when complete.
    let small = fixture("pic.jpg");
    let id = tus_upload(&s, None, &small, None);
    assert_eq!(wait_ready(&s, None, &id)["content_type"], "image/jpeg");
}
