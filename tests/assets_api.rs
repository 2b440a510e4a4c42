//! `/v1/assets`: create, read, list, delete; every field; state transitions;
//! validation (422 per field), 400, 405, 413; pagination; language and
//! metadata through tus; concatenation.

mod assets_common;
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use assets_common::*;
use common::*;
use serde_json::{Value, json};

const PNG: &[u8] = include_bytes!("fixtures/media/pic.png");

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn create_returns_the_asset_and_a_location_a_tus_client_can_patch() {
    let s = Server::start(&[]);
    let data = bytes(20_000, 7);
    let (r, a) = create_asset(
        &s,
        None,
        &json!({ "name": "song.bin", "size_bytes": 20_000, "language": "de", "metadata": { "k": "v", "e": "" } }),
    );
    assert_schema("Asset", &a);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = a["id"].as_str().unwrap();
    let loc = r.header("location").expect("Location");
    assert_eq!(loc, s.url(&format!("/files/{id}")), "Location is the absolute tus URL");
    // upload_url is the same URL with a capability for a client without the key.
    let upload_url = a["upload_url"].as_str().unwrap();
    assert!(upload_url.starts_with(&format!("{loc}?access=")), "{upload_url}");
    assert!(a["upload_url_expires_at"].is_string(), "{a}");
    assert_eq!(uuid::Uuid::try_parse(id).unwrap().get_version_num(), 7, "UUIDv7");
    assert_eq!(a["project_id"], auth_default_project());
    assert_eq!(a["name"], "song.bin");
    assert_eq!(a["state"], "pending_upload");
    for f in ["type", "extension", "content_type", "sha256", "duration_seconds", "width", "height"] {
        assert!(a[f].is_null(), "{f} is null before any byte: {a}");
    }
    for f in ["error_code", "error_message", "download_url", "download_expires_at"] {
        assert!(a[f].is_null(), "{f}: {a}");
    }
    assert_eq!(a["size_bytes"], 20_000);
    assert_eq!(a["received_bytes"], 0);
    assert_eq!(a["language"], "de");
    assert_eq!(a["metadata"], json!({ "k": "v", "e": "" }), "metadata exactly as sent");
    assert!(a["expires_at"].is_string(), "an unfinished upload expires: {a}");
    assert_eq!(a["created_at"], a["updated_at"]);

    // A tus client starts with HEAD/PATCH on Location; it sees the name and language.
    let path = Server::path_of(loc);
    let h = s.head(&path);
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(h.header("upload-length"), Some("20000"));
    let meta = h.header("upload-metadata").expect("Upload-Metadata");
    assert!(meta.contains(&format!("filename {}", b64s("song.bin"))), "{meta}");
    assert!(meta.contains(&format!("language {}", b64s("de"))), "{meta}");

    assert_eq!(s.patch(&path, 0, &data[..5000], &[]).status, 204);
    let a = get_asset(&s, None, id);
    assert_schema("Asset", &a);
    assert_eq!(a["received_bytes"], 5000);
    assert_eq!(a["state"], "pending_upload");
    assert!(a["type"].is_null(), "not sniffed before 8 KiB");
    assert_eq!(s.patch(&path, 5000, &data[5000..], &[]).status, 204);
    let a = wait_ready(&s, None, id);
    assert_schema("Asset", &a);
    assert_eq!(a["received_bytes"], 20_000);
    assert_eq!(a["sha256"], sha256_hex(&data));
    assert_eq!(a["type"], "other");
    assert_eq!(a["content_type"], "application/octet-stream");
    assert!(a["extension"].is_null());
    assert!(a["upload_url"].is_null(), "upload_url only while pending_upload: {a}");
    assert!(a["expires_at"].is_null(), "a finished upload is not swept: {a}");
    assert!(a["download_url"].as_str().unwrap().starts_with(&s.url(&format!("/v1/assets/{id}/content?"))));
    assert!(a["download_expires_at"].is_string());
    assert!(a["updated_at"].as_str().unwrap() >= a["created_at"].as_str().unwrap());
    // The language and metadata never change.
    assert_eq!(a["language"], "de");
    assert_eq!(a["metadata"], json!({ "k": "v", "e": "" }));
}

fn auth_default_project() -> String {
    // Open mode: the project named `default` (its id is derived from the name).
    uuid::Uuid::new_v5(&uuid::Uuid::from_u128(0x5f1c_2a4e_9d7b_4c1a_8e3f_6b2d_0a9c_7e11), b"default")
        .to_string()
}

/// Polls while the upload completes and processes: the states seen are in
/// order, and the event stream shows `processing` between them.
#[test]
fn states_go_pending_upload_then_processing_then_ready() {
    let s = Server::start(&[]);
    let mut events = s.open("GET", "/v1/events", &[]);
    // The stream is open once its first bytes arrive.
    events.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 64];
    assert!(events.read(&mut first).unwrap() > 0);

    let data = bytes(300_000, 3);
    let (path, id) = tus_create(&s, None, data.len() as u64, None);
    let mut seen = vec![get_asset(&s, None, &id)["state"].as_str().unwrap().to_string()];
    let writer = {
        let addr = s.addr;
        let path = path.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            for (i, c) in data.chunks(50_000).enumerate() {
                let off = (i * 50_000).to_string();
                let r = request(addr, "PATCH", &path, &patch_headers(&off, &[]), c);
                assert_eq!(r.status, 204, "{r:?}");
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = get_asset(&s, None, &id);
        let st = a["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st == "ready" || st == "failed" || Instant::now() > deadline {
            break;
        }
    }
    writer.join().unwrap();
    let order = ["pending_upload", "processing", "ready"];
    let pos: Vec<usize> = seen.iter().map(|st| order.iter().position(|o| o == st).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "states seen out of order: {seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("pending_upload"));
    assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");

    // The event stream has every transition of this asset, in order.
    let mut raw = Vec::new();
    let _ = poll(Duration::from_secs(5), || {
        let mut buf = [0u8; 8192];
        events.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if let Ok(n) = events.read(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&raw).contains("event: asset.ready").then_some(())
    });
    let text = String::from_utf8_lossy(&raw).into_owned();
    let at = |ev: &str| {
        text.find(&format!("event: {ev}\ndata: "))
            .unwrap_or_else(|| panic!("no {ev} event in the stream:\n{text}"))
    };
    assert!(at("asset.created") < at("asset.processing") && at("asset.processing") < at("asset.ready"));
    assert!(text.contains(&id));
}

#[test]
fn tus_creation_makes_the_same_asset() {
    let s = Server::start(&[]);
    // `filename` wins over `name`; metadata exactly as sent, incl. a key without a value.
    let meta = format!("filename {},name {},flag,k {}", b64s("a.txt"), b64s("other"), b64s("v v"));
    let (_path, id) = tus_create(&s, None, 5, Some(&meta));
    let a = get_asset(&s, None, &id);
    assert_schema("Asset", &a);
    assert_eq!(a["name"], "a.txt");
    assert_eq!(a["metadata"], json!({ "filename": "a.txt", "name": "other", "flag": "", "k": "v v" }));
    assert!(a["language"].is_null());
    let meta = format!("name {}", b64s("only-name.bin"));
    let (_path, id) = tus_create(&s, None, 5, Some(&meta));
    assert_eq!(get_asset(&s, None, &id)["name"], "only-name.bin");
    // Deferred length: size_bytes null until declared.
    let auth = None;
    let r = s.request("POST", "/files/", &tus_headers(&auth, &[("Upload-Defer-Length", "1")]), b"");
    assert_eq!(r.status, 201);
    let path = Server::path_of(r.header("location").unwrap());
    let id = path.rsplit('/').next().unwrap();
    let a = get_asset(&s, None, id);
    assert!(a["size_bytes"].is_null() && a["name"].is_null(), "{a}");
    assert_eq!(a["metadata"], json!({}));
    let r = s.patch(&path, 0, b"hello", &[("Upload-Length", "5")]);
    assert_eq!(r.status, 204, "{r:?}");
    let a = wait_ready(&s, None, id);
    assert_eq!(a["size_bytes"], 5);
    assert_eq!(a["sha256"], sha256_hex(b"hello"));
    // A zero-byte asset from /v1 is complete at once.
    let (_, a) = create_asset(&s, None, &json!({ "size_bytes": 0 }));
    let a = wait_ready(&s, None, a["id"].as_str().unwrap());
    assert_eq!(a["sha256"], sha256_hex(b""));
    assert_eq!(a["received_bytes"], 0);
    // An empty body is `{}`: deferred length.
    let r = s.request("POST", "/v1/assets", &[], b"");
    assert_eq!(r.status, 201, "{r:?}");
    assert!(json(&r)["size_bytes"].is_null());
}

#[test]
fn language_from_tus_metadata_or_json() {
    let s = Server::start(&[]);
    let (_p, id) = tus_create(&s, None, 3, Some(&format!("language {}", b64s("fr"))));
    assert_eq!(get_asset(&s, None, &id)["language"], "fr");
    for bad in ["french", "FR", "xx", "", "e"] {
        let meta = format!("language {}", b64s(bad));
        let r = s.request("POST", "/files/", &[TUS, ("Upload-Length", "3"), ("Upload-Metadata", &meta)], b"");
        assert_eq!(r.status, 400, "tus language {bad:?}: {r:?}");
        let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "language": bad })));
        let e = error(&r, 422, "validation_failed");
        assert_eq!(error_fields(&e), ["language"], "{bad:?}");
    }
    let r = api(&s, "POST", "/v1/assets", None, Some(&json!({ "language": 12 })));
    assert_eq!(error_fields(&error(&r, 422, "validation_failed")), ["language"]);
    // A refused creation made no asset.
    let list = json(&api(&s, "GET", "/v1/assets", None, None));
    assert_eq!(ids(&list), [id]);
}

#[test]
fn invalid_input_is_a_422_naming_each_field() {
    let s = Server::start(&["--max-size", "1000000"]);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({ "name": "" }), vec!["name"]),
        (json!({ "name": "x".repeat(1025) }), vec!["name"]),
        (json!({ "name": 5 }), vec!["name"]),
        (json!({ "size_bytes": -1 }), vec!["size_bytes"]),
        (json!({ "size_bytes": 1.5 }), vec!["size_bytes"]),
        (json!({ "size_bytes": "10" }), vec!["size_bytes"]),
        (json!({ "size_bytes": 1_000_001 }), vec!["size_bytes"]),
        (json!({ "language": "eng" }), vec!["language"]),
        (json!({ "metadata": "k=v" }), vec!["metadata"]),
        (json!({ "metadata": ["k"] }), vec!["metadata"]),
        (json!({ "metadata": { "k": 1 } }), vec!["metadata.k"]),
        (json!({ "metadata": { "a b": "x" } }), vec!["metadata.a b"]),
        (json!({ "metadata": { "a,b": "x" } }), vec!["metadata.a,b"]),
        (json!({ "colour": "red" }), vec!["colour"]),
        (
            json!({ "name": "", "size_bytes": -1, "language": "EN", "metadata": { "ok": "1", "bad": null } }),
            vec!["name", "size_bytes", "language", "metadata.bad"],
        ),
    ];
    for (body, fields) in cases {
        let r = api(&s, "POST", "/v1/assets", None, Some(&body));
        let e = error(&r, 422, "validation_failed");
        assert_schema("Error", &e);
        let mut got = error_fields(&e);
        got.sort();
        let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{body}: {e}");
    }
    let e = error(
        &api(&s, "POST", "/v1/assets", None, Some(&json!({ "size_bytes": 1_000_001 }))),
        422,
        "validation_failed",
    );
    assert_eq!(e["errors"][0]["code"], "too_large");
    // Valid edge values pass.
    let (_, a) =
        create_asset(&s, None, &json!({ "name": "x".repeat(1024), "size_bytes": 1_000_000, "metadata": {} }));
    assert_eq!(a["metadata"], json!({}));
    let (_, a) = create_asset(
        &s,
        None,
        &json!({ "name": null, "size_bytes": null, "language": null, "metadata": null }),
    );
    assert!(a["name"].is_null() && a["size_bytes"].is_null() && a["language"].is_null());
    // None of the refused ones was created.
    assert_eq!(ids(&json(&api(&s, "GET", "/v1/assets", None, None))).len(), 2);
}

#[test]
fn bad_json_is_400_big_bodies_413_wrong_methods_405() {
    let s = Server::start(&[]);
    let ct = [("Content-Type", "application/json")];
    for body in [&b"{\"name\":"[..], b"not json", b"[1,2]", b"\"str\"", b"null", b"{\"name\":\"a\"} x"] {
        let r = s.request("POST", "/v1/assets", &ct, body);
        assert_schema("Error", &error(&r, 400, "invalid_json"));
        assert!(json(&r)["errors"].is_null());
    }
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70 << 10));
    let r = s.request("POST", "/v1/assets", &ct, big.as_bytes());
    assert_schema("Error", &error(&r, 413, "body_too_large"));

    let (_, a) = create_asset(&s, None, &json!({}));
    let one = format!("/v1/assets/{}", a["id"].as_str().unwrap());
    for (m, p, allow) in [
        ("PUT", "/v1/assets", "GET, POST"),
        ("DELETE", "/v1/assets", "GET, POST"),
        ("PATCH", one.as_str(), "GET, DELETE"),
        ("POST", one.as_str(), "GET, DELETE"),
        ("PUT", one.as_str(), "GET, DELETE"),
        ("POST", "/v1/asset-types", "GET"),
        ("DELETE", "/v1/openapi.json", "GET"),
    ] {
        let r = s.request(m, p, &[], b"");
        assert_schema("Error", &error(&r, 405, "method_not_allowed"));
        assert_eq!(r.header("allow"), Some(allow), "{m} {p}");
    }
    // Unknown endpoints and malformed ids are 404 in the same envelope.
    error(&s.request("GET", "/v1/nope", &[], b""), 404, "not_found");
    error(&s.request("GET", "/v1/assets/not-a-uuid", &[], b""), 404, "not_found");
    error(&s.request("GET", &format!("/v1/assets/{}", uuid::Uuid::now_v7()), &[], b""), 404, "not_found");
}

#[test]
fn list_is_newest_first_with_cursor_pagination_and_filters() {
    let s = Server::start(&[]);
    let mut created = Vec::new();
    for i in 0..250 {
        let (_, a) = create_asset(&s, None, &json!({ "name": format!("n{i}"), "size_bytes": 10 }));
        created.push(a["id"].as_str().unwrap().to_string());
    }
    // Two ready ones of known types, newest of all.
    let png = tus_upload(&s, None, PNG, None);
    let txt = tus_upload(&s, None, b"plain words, nothing else\n", None);
    wait_ready(&s, None, &png);
    wait_ready(&s, None, &txt);
    let mut newest_first: Vec<String> = created.iter().rev().cloned().collect();
    newest_first.insert(0, png.clone());
    newest_first.insert(0, txt.clone());

    let list = |q: &str| {
        let r = api(&s, "GET", &format!("/v1/assets{q}"), None, None);
        assert_eq!(r.status, 200, "{q}: {r:?}");
        let v = json(&r);
        assert_schema("AssetList", &v);
        v
    };
    // Default limit 20.
    let first = list("");
    assert_eq!(ids(&first), newest_first[..20]);
    assert_eq!(first["next_cursor"], newest_first[19]);
    // Walking every page with limit=100 yields every asset once, in order.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=100&cursor={c}"),
            None => "?limit=100".into(),
        };
        let page = list(&q);
        pages += 1;
        all.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(all, newest_first);
    // limit=1 and the cursor of the page before.
    let p = list("?limit=1");
    assert_eq!(ids(&p), [txt.as_str()]);
    let p = list(&format!("?limit=1&cursor={}", p["next_cursor"].as_str().unwrap()));
    assert_eq!(ids(&p), [png.as_str()]);
    // A page that ends exactly at the last match has no next cursor.
    let ready = list("?state=ready&limit=2");
    assert_eq!(ids(&ready), [txt.as_str(), png.as_str()]);
    assert!(ready["next_cursor"].is_null(), "{ready}");
    let ready = list("?state=ready&limit=1");
    assert_eq!(ids(&ready), [txt.as_str()]);
    assert_eq!(ready["next_cursor"], txt);
    let last = list(&format!("?state=ready&limit=1&cursor={txt}"));
    assert_eq!(ids(&last), [png.as_str()]);
    assert!(last["next_cursor"].is_null());
    // Filters combine.
    assert_eq!(ids(&list("?type=image")), [png.as_str()]);
    assert_eq!(ids(&list("?type=image&state=ready")), [png.as_str()]);
    assert!(ids(&list("?type=image&state=pending_upload")).is_empty());
    assert!(ids(&list("?state=failed")).is_empty());
    let pending = list("?state=pending_upload&limit=100");
    assert_eq!(ids(&pending), newest_first[2..102]);
    assert_eq!(ids(&list("?type=other")), [txt.as_str()]);
    // Everything in the list is a full asset.
    for a in first["data"].as_array().unwrap() {
        assert_schema("Asset", a);
    }

    // Invalid values: 422 naming the parameter.
    for (q, field) in [
        ("?state=done", "state"),
        ("?state=", "state"),
        ("?type=movie", "type"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=ten", "limit"),
        ("?cursor=abc", "cursor"),
        ("?sort=asc", "sort"),
    ] {
        let e = error(&api(&s, "GET", &format!("/v1/assets{q}"), None, None), 422, "validation_failed");
        assert_eq!(error_fields(&e), [field], "{q}");
    }
    let e = error(&api(&s, "GET", "/v1/assets?limit=0&state=x", None, None), 422, "validation_failed");
    assert_eq!(error_fields(&e).len(), 2);
    // limit 100 is allowed.
    assert_eq!(ids(&list("?limit=100")).len(), 100);
}

#[test]
fn delete_removes_the_asset_its_bytes_and_its_tus_url() {
    let s = Server::start(&[]);
    let data = bytes(10_000, 9);
    let id = tus_upload(&s, None, &data, None);
    wait_ready(&s, None, &id);
    let file = s.upload_file(&format!("/files/{id}")).expect("the bytes are stored");
    let r = api(&s, "DELETE", &format!("/v1/assets/{id}"), None, None);
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.body.is_empty());
    error(&api(&s, "GET", &format!("/v1/assets/{id}"), None, None), 404, "not_found");
    error(&api(&s, "DELETE", &format!("/v1/assets/{id}"), None, None), 404, "not_found");
    assert!(!file.exists(), "bytes removed");
    let h = s.head(&format!("/files/{id}"));
    assert!(h.status == 404 || h.status == 410, "{h:?}");
    let p = s.patch(&format!("/files/{id}"), 0, b"x", &[]);
    assert!(p.status == 404 || p.status == 410, "{p:?}");
    assert!(ids(&json(&api(&s, "GET", "/v1/assets", None, None))).is_empty());

    // A pending one, mid-upload.
    let (path, id) = tus_create(&s, None, 50_000, None);
    assert_eq!(s.patch(&path, 0, &data, &[]).status, 204);
    assert_eq!(api(&s, "DELETE", &format!("/v1/assets/{id}"), None, None).status, 204);
    let h = s.head(&path);
    assert!(h.status == 404 || h.status == 410, "{h:?}");
}

#[test]
fn partial_uploads_are_not_assets_and_the_final_one_is() {
    let s = Server::start(&[]);
    let data = bytes(30_000, 11);
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(15_000).enumerate() {
        let l = chunk.len().to_string();
        let (path, _) = s.create_resp(&[TUS, ("Upload-Length", &l), ("Upload-Concat", "partial")], b"");
        let id = path.rsplit('/').next().unwrap().to_string();
        error(&api(&s, "GET", &format!("/v1/assets/{id}"), None, None), 404, "not_found");
        if i == 0 {
            assert_eq!(s.patch(&path, 0, chunk, &[]).status, 204);
        }
        parts.push((path, id, chunk.to_vec()));
    }
    assert!(ids(&json(&api(&s, "GET", "/v1/assets", None, None))).is_empty(), "partials are not listed");
    // The final, before the second part is done (concatenation-unfinished).
    let v = format!("final;{} {}", parts[0].0, parts[1].0);
    let meta = format!("filename {}", b64s("joined.bin"));
    let r = s.request("POST", "/files/", &[TUS, ("Upload-Concat", &v), ("Upload-Metadata", &meta)], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let fin = Server::path_of(r.header("location").unwrap()).rsplit('/').next().unwrap().to_string();
    let a = get_asset(&s, None, &fin);
    assert_schema("Asset", &a);
    assert_eq!(a["name"], "joined.bin");
    assert_eq!(a["state"], "pending_upload");
    assert!(a["sha256"].is_null());
    assert_eq!(s.patch(&parts[1].0, 0, &parts[1].2, &[]).status, 204);
    let a = wait_ready(&s, None, &fin);
    assert_eq!(a["sha256"], sha256_hex(&data));
    assert_eq!(a["size_bytes"], 30_000);
    assert_eq!(a["received_bytes"], 30_000);
    let list = json(&api(&s, "GET", "/v1/assets", None, None));
    assert_eq!(ids(&list), [fin.as_str()]);
    for (_, id, _) in &parts {
        error(&api(&s, "GET", &format!("/v1/assets/{id}"), None, None), 404, "not_found");
    }
    // The download is the concatenation.
    let url = path_query(a["download_url"].as_str().unwrap());
    let r = s.get(&url);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
}
