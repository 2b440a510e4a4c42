//! Browser-safe uploads against the real server: signed upload URLs, upload
//! tokens, limits enforced at the first bytes, per-project policy and
//! quotas, `x-api-key`, and `tusk upload-link`.

mod assets_common;
mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use assets_common::*;
use common::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media").join(name)).unwrap()
}

/// A server with one key for project `web`.
fn keyed(args: &[&str]) -> (Server, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let key = create_key(tmp.path(), "web");
    let s = Server::start_in(tmp.path(), args);
    (s, key, tmp)
}

fn tus(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut h = vec![("Tus-Resumable", "1.0.0".to_string())];
    h.extend(extra.iter().cloned());
    h
}

fn req(s: &Server, method: &str, path: &str, headers: &[(&'static str, String)], body: &[u8]) -> Resp {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.request(method, path, &h, body)
}

fn patch_h(offset: u64) -> Vec<(&'static str, String)> {
    tus(&[("Upload-Offset", offset.to_string()), ("Content-Type", "application/offset+octet-stream".into())])
}

fn with_auth(mut h: Vec<(&'static str, String)>, token: &str) -> Vec<(&'static str, String)> {
    h.push(("Authorization", format!("Bearer {token}")));
    h
}

/// `upload_url` of a fresh asset as a request path with its query.
fn upload_path(asset: &Value) -> String {
    let url = asset["upload_url"].as_str().unwrap_or_else(|| panic!("upload_url: {asset}"));
    assert!(url.contains("?access="), "{url}");
    path_query(url)
}

#[test]
fn an_upload_url_continues_and_cancels_its_upload_without_a_key_and_nothing_else() {
    let (s, key, _d) = keyed(&[]);
    let data = bytes(100_000, 7);
    let (created, asset) =
        create_asset(&s, Some(&key), &json!({"name": "u.bin", "size_bytes": data.len(), "expires_in": 600}));
    assert!(created.header("location").is_some());
    let url = upload_path(&asset);
    let expires = asset["upload_url_expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{asset}");

    // HEAD and PATCH with no Authorization at all.
    let r = req(&s, "HEAD", &url, &tus(&[]), b"");
    assert_eq!((r.status, r.header("upload-offset")), (200, Some("0")), "{r:?}");
    let r = req(&s, "PATCH", &url, &patch_h(0), &data[..40_000]);
    assert_eq!(r.status, 204, "{r:?}");
    let r = req(&s, "HEAD", &url, &tus(&[]), b"");
    assert_eq!(r.header("upload-offset"), Some("40000"));
    // The asset JSON keeps offering a capability URL while pending.
    let again = get_asset(&s, Some(&key), asset["id"].as_str().unwrap());
    assert!(again["upload_url"].as_str().unwrap().contains("?access="), "{again}");
    let r = req(&s, "PATCH", &url, &patch_h(40_000), &data[40_000..]);
    assert_eq!(r.status, 204, "{r:?}");
    let ready = wait_ready(&s, Some(&key), asset["id"].as_str().unwrap());
    assert_eq!(ready["sha256"], sha256_hex(&data));
    assert!(ready["upload_url"].is_null(), "no upload URL once uploaded: {ready}");

    // It reads nothing: no download, no creation, no /v1.
    assert_eq!(req(&s, "GET", &url, &tus(&[]), b"").status, 403);
    let access = url.split_once('?').unwrap().1;
    let r = req(&s, "POST", &format!("/files/?{access}"), &tus(&[("Upload-Length", "5".into())]), b"");
    assert_eq!(r.status, 403, "{r:?}");
    let id = asset["id"].as_str().unwrap();
    let r = s.request("GET", &format!("/v1/assets/{id}?{access}"), &[], b"");
    assert_eq!(r.status, 401, "{r:?}");

    // For another upload: 404; tampered: 401 with a message.
    let (_, other) = create_asset(&s, Some(&key), &json!({"size_bytes": 10}));
    let other_id = other["id"].as_str().unwrap();
    let r = req(&s, "HEAD", &format!("/files/{other_id}?{access}"), &tus(&[]), b"");
    assert_eq!(r.status, 404, "{r:?}");
    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = req(&s, "PATCH", &tampered, &patch_h(0), b"x");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.text().contains("signature is not valid"), "{}", r.text());

    // DELETE cancels it; the same URL then answers 410.
    let other_url = upload_path(&other);
    assert_eq!(req(&s, "DELETE", &other_url, &tus(&[]), b"").status, 204);
    assert_eq!(req(&s, "HEAD", &other_url, &tus(&[]), b"").status, 410);
}

#[test]
fn an_upload_url_expires_and_keeps_the_limits_it_was_made_with() {
    let (s, key, _d) = keyed(&[]);
    let (_, short) = create_asset(&s, Some(&key), &json!({"expires_in": 1, "size_bytes": 4}));
    let url = upload_path(&short);
    assert_eq!(req(&s, "HEAD", &url, &tus(&[]), b"").status, 200);
    std::thread::sleep(Duration::from_millis(2100));
    let r = req(&s, "PATCH", &url, &patch_h(0), b"abcd");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.text().contains("expired"), "{}", r.text());

    // max_size_bytes: a larger declared size is refused at creation; a
    // deferred length may not outgrow it.
    let r =
        api(&s, "POST", "/v1/assets", Some(&key), Some(&json!({"size_bytes": 2000, "max_size_bytes": 1000})));
    assert_eq!(error_fields(&error(&r, 422, "validation_failed")), ["size_bytes"]);
    let (_, capped) = create_asset(&s, Some(&key), &json!({"max_size_bytes": 1000}));
    let url = upload_path(&capped);
    let mut h = patch_h(0);
    h.push(("Upload-Length", "2000".into()));
    let r = req(&s, "PATCH", &url, &h, &bytes(10, 1));
    assert_eq!(r.status, 413, "{r:?}");
    let r = req(&s, "PATCH", &url, &patch_h(0), &bytes(1500, 1));
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(req(&s, "PATCH", &url, &patch_h(0), &bytes(1000, 1)).status, 204);

    // allowed_types: an MP3 through an images-only URL stops at its first bytes.
    let (_, images) = create_asset(&s, Some(&key), &json!({"allowed_types": ["image"], "name": "t.mp3"}));
    let url = upload_path(&images);
    let mp3 = fixture("tone.mp3");
    let mut h = patch_h(0);
    h.push(("Upload-Length", mp3.len().to_string()));
    let r = req(&s, "PATCH", &url, &h, &mp3);
    assert_eq!(r.status, 415, "{r:?}");
    assert!(r.text().contains("audio"), "{}", r.text());
    let a = get_asset(&s, Some(&key), images["id"].as_str().unwrap());
    assert_eq!(
        (a["state"].as_str(), a["error_code"].as_str()),
        (Some("failed"), Some("type_not_allowed")),
        "{a}"
    );
    assert_eq!(a["type"], "audio", "says what was sniffed: {a}");
    assert_eq!(req(&s, "HEAD", &url, &tus(&[]), b"").status, 415);
}

#[test]
fn an_upload_url_works_with_the_resumable_upload_draft() {
    let (s, key, _d) = keyed(&[]);
    let data = bytes(30_000, 3);
    let (_, asset) = create_asset(&s, Some(&key), &json!({"size_bytes": data.len()}));
    let url = upload_path(&asset);
    let draft = |extra: &[(&'static str, String)]| {
        let mut h = vec![("Upload-Draft-Interop-Version", "6".to_string())];
        h.extend(extra.iter().cloned());
        h
    };
    let r = req(&s, "HEAD", &url, &draft(&[]), b"");
    assert_eq!((r.status, r.header("upload-offset")), (204, Some("0")), "{r:?}");
    let h = draft(&[
        ("Upload-Offset", "0".into()),
        ("Upload-Complete", "?1".into()),
        ("Content-Type", "application/partial-upload".into()),
    ]);
    let r = req(&s, "PATCH", &url, &h, &data);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(wait_ready(&s, Some(&key), asset["id"].as_str().unwrap())["sha256"], sha256_hex(&data));
}

fn new_token(s: &Server, key: &str, body: Value) -> Value {
    let r = api(s, "POST", "/v1/upload-tokens", Some(key), Some(&body));
    assert_eq!(r.status, 201, "{r:?}");
    let t = json(&r);
    assert!(t["token"].as_str().unwrap().starts_with("ut_"), "{t}");
    t
}

fn token_create(s: &Server, token: &str, len: usize, meta: Option<&str>) -> Resp {
    let mut h = with_auth(tus(&[("Upload-Length", len.to_string())]), token);
    if let Some(m) = meta {
        h.push(("Upload-Metadata", m.to_string()));
    }
    req(s, "POST", "/files/", &h, b"")
}

#[test]
fn an_upload_token_creates_and_continues_its_own_uploads_within_its_limits() {
    let (s, key, _d) = keyed(&[]);
    let t =
        new_token(&s, &key, json!({"max_uploads": 2, "max_size_bytes": 5000, "metadata": {"source": "web"}}));
    let token = t["token"].as_str().unwrap();

    let r = token_create(&s, token, 6000, None);
    assert_eq!(r.status, 413, "over the token's size: {r:?}");
    let mut paths = Vec::new();
    for i in 0..2 {
        let name = format!("filename {}", b64s(&format!("f{i}.bin")));
        let r = token_create(&s, token, 3000, Some(&name));
        assert_eq!(r.status, 201, "{r:?}");
        paths.push(Server::path_of(r.header("location").unwrap()));
    }
    let r = token_create(&s, token, 10, None);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("allows 2 uploads"), "{}", r.text());

    let data = bytes(3000, 9);
    let r = req(&s, "PATCH", &paths[0], &with_auth(patch_h(0), token), &data);
    assert_eq!(r.status, 204, "{r:?}");
    let id = paths[0].rsplit('/').next().unwrap();
    let a = wait_ready(&s, Some(&key), id);
    assert_eq!(a["metadata"]["source"], "web", "the token's metadata is on its uploads: {a}");
    assert_eq!(a["name"], "f0.bin");

    // Nothing else: no reads, no downloads, no uploads it did not make.
    let r = s.request("GET", "/v1/assets", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(req(&s, "GET", &paths[0], &with_auth(tus(&[]), token), b"").status, 403);
    let (keyed_path, _) = tus_create(&s, Some(&key), 10, None);
    assert_eq!(req(&s, "HEAD", &keyed_path, &with_auth(tus(&[]), token), b"").status, 404);
    let other = new_token(&s, &key, json!({}));
    let other = other["token"].as_str().unwrap();
    assert_eq!(req(&s, "HEAD", &paths[1], &with_auth(tus(&[]), other), b"").status, 404);
    assert_eq!(req(&s, "DELETE", &paths[1], &with_auth(tus(&[]), other), b"").status, 404);

    // Listed without its secret, with what it used; revocable.
    let list = json(&api(&s, "GET", "/v1/upload-tokens", Some(&key), None));
    let mine = list["data"].as_array().unwrap().iter().find(|x| x["id"] == t["id"]).unwrap().clone();
    assert!(mine["token"].is_null(), "{mine}");
    assert_eq!(mine["uploads_used"], 2);
    let r = api(&s, "DELETE", &format!("/v1/upload-tokens/{}", t["id"].as_str().unwrap()), Some(&key), None);
    assert_eq!(r.status, 204);
    let r = req(&s, "HEAD", &paths[1], &with_auth(tus(&[]), token), b"");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(req(&s, "DELETE", &paths[1], &with_auth(tus(&[]), &key), b"").status, 204);
}

#[test]
fn an_upload_token_refuses_a_declared_type_at_once_and_sniffed_bytes_at_the_first_8_kib() {
    let (s, key, _d) = keyed(&[]);
    let t = new_token(&s, &key, json!({"allowed_types": ["image"]}));
    let token = t["token"].as_str().unwrap();
    let meta = format!("filename {},filetype {}", b64s("a.mp3"), b64s("audio/mpeg"));
    let r = token_create(&s, token, 20 << 20, Some(&meta));
    assert_eq!(r.status, 415, "{r:?}");
    assert!(r.text().contains("audio"), "{}", r.text());

    // Declared as nothing in particular: the bytes decide. 20 MiB announced,
    // 64 KiB sent: the answer comes without the rest.
    let total = 20usize << 20;
    let r = token_create(&s, token, total, Some(&format!("filename {}", b64s("big.mp3"))));
    assert_eq!(r.status, 201, "{r:?}");
    let path = Server::path_of(r.header("location").unwrap());
    let auth = format!("Bearer {token}");
    let cl = total.to_string();
    let mut conn = open(
        s.addr,
        "PATCH",
        &path,
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Authorization", &auth),
            ("Upload-Offset", "0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Content-Length", &cl),
        ],
    );
    let mut first = fixture("tone.mp3");
    first.resize(64 << 10, 0);
    conn.write_all(&first).unwrap();
    let r = read_response_within(&mut conn, false, Duration::from_secs(10))
        .expect("answered while 20 MiB were still to come");
    assert_eq!(r.status, 415, "{r:?}");
    assert!(r.text().contains("ERR_TYPE_NOT_ALLOWED") || r.text().contains("not accepted"), "{}", r.text());
    let id = path.rsplit('/').next().unwrap();
    let a = get_asset(&s, Some(&key), id);
    assert_eq!(
        (a["state"].as_str(), a["error_code"].as_str()),
        (Some("failed"), Some("type_not_allowed")),
        "{a}"
    );
    assert_eq!(a["received_bytes"], 0, "its bytes were removed: {a}");
    assert!(a["error_message"].as_str().unwrap().contains("audio/mpeg"), "{a}");
    assert!(s.upload_file(&path).is_none_or(|f| std::fs::metadata(f).map_or(true, |m| m.len() == 0)));
    // An image is fine.
    let png = fixture("pic.png");
    let r = token_create(&s, token, png.len(), Some(&format!("filetype {}", b64s("image/png"))));
    let p = Server::path_of(r.header("location").unwrap());
    assert_eq!(req(&s, "PATCH", &p, &with_auth(patch_h(0), token), &png).status, 204);
    wait_ready(&s, Some(&key), p.rsplit('/').next().unwrap());
}

#[test]
fn the_draft_refuses_a_type_at_the_first_bytes_with_a_problem() {
    let (s, key, _d) = keyed(&["--allowed-types", "image"]);
    let mp3 = fixture("tone.mp3");
    let len = mp3.len().to_string();
    let r = s.request(
        "POST",
        "/files/",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Upload-Draft-Interop-Version", "6"),
            ("Upload-Complete", "?1"),
            ("Content-Length", &len),
        ],
        &mp3,
    );
    assert_eq!(r.status, 415, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{r:?}");
    assert!(r.text().contains("audio"), "{}", r.text());
}

fn tusk(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tusk")).args(args).arg("--data-dir").arg(dir).output().unwrap()
}

fn usage(s: &Server, key: &str) -> Value {
    json(&api(s, "GET", "/v1/project", Some(key), None))["usage"].clone()
}

#[test]
fn a_project_quota_stops_creations_and_uploads_that_cross_it_and_frees_on_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let key = create_key(tmp.path(), "web");
    let mut s = Server::start_in(tmp.path(), &[]);
    let out = tusk(tmp.path(), &["projects", "set", "web", "--quota", "10000"]);
    assert!(out.status.success(), "{out:?}");
    // Honoured by the running server within a second.
    poll(Duration::from_secs(3), || {
        let p = json(&api(&s, "GET", "/v1/project", Some(&key), None));
        (p["quota_bytes"] == 10000).then_some(())
    })
    .expect("the quota was applied");
    let auth = format!("Bearer {key}");
    let h = [("Tus-Resumable", "1.0.0"), ("Upload-Length", "20000"), ("Authorization", auth.as_str())];
    let refused = s.request("POST", "/files/", &h, b"");
    assert_eq!(refused.status, 413, "{refused:?}");
    assert!(
        refused.text().contains("ERR_QUOTA_EXCEEDED") || refused.text().contains("quota"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("10000"), "says the quota: {}", refused.text());

    let first = tus_upload(&s, Some(&key), &bytes(6000, 1), None);
    assert_eq!(usage(&s, &key)["bytes_stored"], 6000);
    let r = api(&s, "POST", "/v1/assets", Some(&key), Some(&json!({"size_bytes": 5000})));
    error(&r, 413, "quota_exceeded");

    // A deferred-length upload crosses it: the bytes that fit are kept.
    let (path, r) = s.create_resp(
        &[("Tus-Resumable", "1.0.0"), ("Upload-Defer-Length", "1"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 201);
    let data = bytes(5000, 2);
    let r = s.patch(&path, 0, &data, &[("Authorization", &auth)]);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.text().contains("quota"), "{}", r.text());
    assert_eq!(r.header("upload-offset"), Some("4000"), "{r:?}");
    let u = usage(&s, &key);
    assert_eq!((u["bytes_stored"].as_u64(), u["uploads_in_flight"].as_u64()), (Some(10000), Some(1)), "{u}");

    // Usage is right after kill -9 and a restart.
    s.kill9();
    let s = Server::start_in(tmp.path(), &[]);
    let u = usage(&s, &key);
    assert_eq!((u["bytes_stored"].as_u64(), u["assets"].as_u64()), (Some(10000), Some(2)), "{u}");
    // `tusk projects show` reports the running server's figures.
    let shown = poll(Duration::from_secs(3), || {
        let out = String::from_utf8(tusk(tmp.path(), &["projects", "show", "web", "--json"]).stdout).unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        (v["usage"]["bytes_stored"] == 10000).then_some(v)
    })
    .expect("projects show reports the usage");
    assert_eq!(shown["quota_bytes"], 10000, "{shown}");
    assert_eq!(shown["usage"]["uploads_in_flight"], 1, "{shown}");

    // Deleting frees space; the upload then resumes.
    assert_eq!(api(&s, "DELETE", &format!("/v1/assets/{first}"), Some(&key), None).status, 204);
    assert_eq!(usage(&s, &key)["bytes_stored"], 4000);
    let mut h = vec![("Authorization", auth.as_str())];
    h.push(("Upload-Length", "5000"));
    let r = s.patch(&path, 4000, &data[4000..], &h);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(usage(&s, &key)["bytes_stored"], 5000);
    let listed = String::from_utf8(tusk(tmp.path(), &["projects", "list"]).stdout).unwrap();
    assert!(listed.lines().any(|l| l.starts_with("web\t10000\t")), "{listed}");
}

#[test]
fn project_policy_limits_size_types_and_duration_of_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let key = create_key(tmp.path(), "web");
    let s = Server::start_in(tmp.path(), &[]);
    let out = tusk(
        tmp.path(),
        &[
            "projects",
            "set",
            "web",
            "--max-size",
            "1MiB",
            "--allowed-types",
            "audio,image",
            "--max-duration",
            "1",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let auth = format!("Bearer {key}");
    poll(Duration::from_secs(3), || {
        let p = json(&api(&s, "GET", "/v1/project", Some(&key), None));
        (p["max_size_bytes"] == 1 << 20).then_some(())
    })
    .expect("the size limit was applied");
    let h = [("Tus-Resumable", "1.0.0"), ("Upload-Length", "2000000"), ("Authorization", auth.as_str())];
    assert_eq!(s.request("POST", "/files/", &h, b"").status, 413);
    // A 2.3 s tone is longer than 1 s.
    let wav = fixture("tone.wav");
    let id = tus_upload(&s, Some(&key), &wav, None);
    let a = wait_state(&s, Some(&key), &id, &["ready", "failed"], Duration::from_secs(20));
    assert_eq!(a["error_code"], "duration_exceeded", "{a}");
    // A PDF is not audio or image: refused at the first bytes.
    let pdf = fixture("doc.pdf");
    let (path, id) = tus_create(&s, Some(&key), pdf.len() as u64, None);
    assert_eq!(tus_patch(&s, Some(&key), &path, 0, &pdf).status, 415);
    assert_eq!(get_asset(&s, Some(&key), &id)["error_code"], "type_not_allowed");
    // `none` clears a setting.
    assert!(tusk(tmp.path(), &["projects", "set", "web", "--allowed-types", "none"]).status.success());
    poll(Duration::from_secs(3), || {
        let p = json(&api(&s, "GET", "/v1/project", Some(&key), None));
        p["allowed_types"].is_null().then_some(())
    })
    .expect("cleared");
}

#[test]
fn x_api_key_is_accepted_like_a_bearer_key() {
    let (s, key, _d) = keyed(&[]);
    let r = s.request("GET", "/v1/assets", &[("x-api-key", &key)], b"");
    assert_eq!(r.status, 200, "{r:?}");
    let r = s.request(
        "POST",
        "/files/",
        &[("x-api-key", &key), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "3")],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = s.request("GET", "/v1/assets", &[("x-api-key", "sk_nope")], b"");
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn upload_link_prints_a_page_url_whose_token_uploads_into_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = tusk(tmp.path(), &["upload-link", "--project", "web"]);
    assert!(!refused.status.success(), "no key yet: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("keys create"), "{refused:?}");
    let key = create_key(tmp.path(), "web");
    let s = Server::start_in(tmp.path(), &[]);
    let base = s.url("");
    let out = tusk(tmp.path(), &["upload-link", "--project", "web", "--max-uploads", "1", "--url", &base]);
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let token = link.strip_prefix(&format!("{base}/?token=")).unwrap_or_else(|| panic!("{link}"));
    // Made while the server runs: usable at once.
    assert_eq!(token_create(&s, token, 3, None).status, 201);
    assert_eq!(token_create(&s, token, 3, None).status, 403);
    let page = s.request("GET", &format!("/?token={token}"), &[], b"");
    assert_eq!(page.status, 200);
    let tokens = json(&api(&s, "GET", "/v1/upload-tokens", Some(&key), None));
    assert_eq!(tokens["data"][0]["max_uploads"], 1, "{tokens}");
}

#[test]
fn usage_follows_bytes_removed_from_under_the_server() {
    let (s, key, _d) = keyed(&[]);
    let (path, _) = tus_create(&s, Some(&key), 10_000, None);
    assert_eq!(tus_patch(&s, Some(&key), &path, 0, &bytes(6000, 4)).status, 204);
    assert_eq!(usage(&s, &key)["bytes_stored"], 6000);
    // Someone cuts the data file; the next PATCH notices and winds back.
    let file = s.upload_file(&path).expect("data file");
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(2000).unwrap();
    let r = tus_patch(&s, Some(&key), &path, 6000, b"x");
    assert_eq!((r.status, r.header("upload-offset")), (409, Some("2000")), "{r:?}");
    assert_eq!(usage(&s, &key)["bytes_stored"], 2000);
}
