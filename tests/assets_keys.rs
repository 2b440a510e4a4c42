//! Projects and keys: `tusk keys create|list|revoke`, open mode and its end,
//! keys created or revoked while the server runs, 401 on /v1 and tus,
//! cross-project isolation, and refusing an open non-loopback listener.

mod assets_common;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assets_common::*;
use common::*;
use serde_json::json;

/// A key change must count within about a second.
const HONOURED_WITHIN: Duration = Duration::from_millis(1500);

fn list_lines(dir: &std::path::Path) -> Vec<String> {
    let out = keys(dir, &["list"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn keys_cli_create_list_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(list_lines(dir).is_empty());
    let a = create_key(dir, "alpha");
    let b = create_key(dir, "beta");
    assert_ne!(a, b);
    let lines = list_lines(dir);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut key_ids = Vec::new();
    for (line, project) in lines.iter().zip(["alpha", "beta"]) {
        assert!(!line.contains(&a) && !line.contains(&b) && !line.contains("sk_"), "no secret: {line}");
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols[0].starts_with("key_"), "{line}");
        assert_eq!(cols[1], project);
        assert!(cols[2].ends_with('Z') && cols[2].contains('T'), "created: {line}");
        assert_eq!(cols[3], "active");
        key_ids.push(cols[0].to_string());
    }
    // Only a hash of the secret is stored.
    for e in std::fs::read_dir(dir.join("keys")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains(&a) && !text.contains(&b));
    }
    // Revoke by id, and by the secret itself.
    let out = keys(dir, &["revoke", &key_ids[0]]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    let out = keys(dir, &["revoke", &b]);
    assert!(out.status.success(), "{out:?}");
    for line in list_lines(dir) {
        assert!(line.split('\t').nth(3).unwrap().starts_with("revoked "), "{line}");
    }
    // Unknown key, bad project name: fail, nothing on stdout.
    let out = keys(dir, &["revoke", "key_nope"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    for bad in ["", "a b", "x/y", &"p".repeat(65)] {
        let out = keys(dir, &["create", "--project", bad]);
        assert!(!out.status.success() && out.stdout.is_empty(), "{bad:?}: {out:?}");
    }
    // TUSK_DATA_DIR works like --data-dir.
    let out = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["keys", "list"])
        .env("TUSK_DATA_DIR", dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

/// Every kind of request without (or with a wrong) key, once keys exist.
fn assert_all_need_a_key(s: &Server, upload: &str, asset_id: &str) {
    for auth in [None, Some("Bearer sk_unknown"), Some("Basic Zm9vOmJhcg==")] {
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        for (m, p) in [
            ("GET", "/v1/assets".to_string()),
            ("POST", "/v1/assets".to_string()),
            ("GET", format!("/v1/assets/{asset_id}")),
            ("DELETE", format!("/v1/assets/{asset_id}")),
            ("GET", "/v1/events".to_string()),
        ] {
            let r = s.request(m, &p, &h, b"");
            let e = error(&r, 401, "unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{m} {p}");
            assert_schema("Error", &e);
        }
        let mut th = h.clone();
        th.push(TUS);
        for (m, p, extra) in [
            ("POST", "/files/", vec![("Upload-Length", "5")]),
            ("HEAD", upload, vec![]),
            ("PATCH", upload, vec![("Upload-Offset", "0"), OCTET]),
            ("GET", upload, vec![]),
            ("DELETE", upload, vec![]),
            ("POST", "/files/", vec![("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?1")]),
        ] {
            let mut hh = th.clone();
            hh.extend(extra);
            let r = s.request(m, p, &hh, if m == "PATCH" { b"hello" } else { b"" });
            assert_eq!(r.status, 401, "{m} {p} with {auth:?}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Discovery needs no key.
    let r = s.request("OPTIONS", "/files/", &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.header("tus-extension").is_some());
    let r = s.request(
        "OPTIONS",
        "/files/",
        &[("Origin", "https://x.test"), ("Access-Control-Request-Method", "PATCH")],
        b"",
    );
    assert!(r.status < 300, "{r:?}");
    // Public /v1 needs no key either.
    assert_eq!(s.get("/v1/openapi.json").status, 200);
    assert_eq!(s.get("/v1/asset-types").status, 200);
}

#[test]
fn open_mode_ends_when_a_key_is_created_while_the_server_runs() {
    let s = Server::start(&[]);
    assert!(s.logs().contains("OPEN MODE"), "says so loudly: {}", s.logs());
    // Open: no key needed, the project is `default`.
    let (upload, id) = tus_create(&s, None, 5, None);
    let a = get_asset(&s, None, &id);
    let list = api(&s, "GET", "/v1/assets", None, None);
    assert_eq!(list.status, 200);

    let key = create_key(&s.dir, "default");
    let t = Instant::now();
    poll(HONOURED_WITHIN, || (api(&s, "GET", "/v1/assets", None, None).status == 401).then_some(()))
        .unwrap_or_else(|| panic!("open mode did not end within {HONOURED_WITHIN:?}"));
    eprintln!("open mode ended after {:?}", t.elapsed());
    assert_all_need_a_key(&s, &upload, &id);

    // With the key: the same project's asset, and tus works.
    let k = Some(key.as_str());
    assert_eq!(get_asset(&s, k, &id)["project_id"], a["project_id"]);
    assert_eq!(tus_patch(&s, k, &upload, 0, b"hello").status, 204);
    let a = wait_ready(&s, k, &id);
    assert_eq!(a["sha256"], sha256_hex(b"hello"));
    let auth = bearer(k);
    let r = s.request("GET", &upload, &tus_headers(&auth, &[]), b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    // Lower-case scheme is fine too.
    let lower = format!("bearer {key}");
    assert_eq!(s.request("GET", "/v1/assets", &[("Authorization", &lower)], b"").status, 200);

    // A restart with the key in place starts closed.
    drop(s);
}

#[test]
fn a_server_started_with_keys_is_closed_from_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = create_key(tmp.path(), "p");
    let s = Server::start_in(tmp.path(), &[]);
    assert!(!s.logs().contains("OPEN MODE"), "{}", s.logs());
    let k = Some(key.as_str());
    let (upload, id) = tus_create(&s, k, 5, None);
    assert_all_need_a_key(&s, &upload, &id);
    assert_eq!(get_asset(&s, k, &id)["state"], "pending_upload");
}

#[test]
fn revoked_keys_stop_working_within_a_second() {
    let s = Server::start(&[]);
    let k1 = create_key(&s.dir, "a");
    let key_id = list_lines(&s.dir)[0].split('\t').next().unwrap().to_string();
    let k2 = create_key(&s.dir, "a");
    let ok = |k: &str| api(&s, "GET", "/v1/assets", Some(k), None).status;
    poll(HONOURED_WITHIN, || (ok(&k1) == 200 && ok(&k2) == 200).then_some(())).expect("new keys honoured");
    // Both keys see the same project.
    let (_, a) = create_asset(&s, Some(&k1), &json!({}));
    let id = a["id"].as_str().unwrap();
    assert_eq!(get_asset(&s, Some(&k2), id)["id"], id);

    let out = keys(&s.dir, &["revoke", &key_id]);
    assert!(out.status.success(), "{out:?}");
    poll(HONOURED_WITHIN, || (ok(&k1) == 401).then_some(())).expect("revoked by id within ~1 s");
    let r = api(&s, "GET", "/v1/assets", Some(&k1), None);
    error(&r, 401, "unauthorized");
    let (upload, _) = tus_create(&s, Some(&k2), 3, None);
    assert_eq!(tus_patch(&s, Some(&k1), &upload, 0, b"abc").status, 401, "tus too");
    assert_eq!(ok(&k2), 200, "the other key still works");

    let out = keys(&s.dir, &["revoke", &k2]);
    assert!(out.status.success(), "{out:?}");
    poll(HONOURED_WITHIN, || (ok(&k2) == 401).then_some(())).expect("revoked by secret within ~1 s");
    // Revoking every key does not reopen the server.
    assert_eq!(api(&s, "GET", "/v1/assets", None, None).status, 401);
    assert_eq!(s.request("POST", "/files/", &[TUS, ("Upload-Length", "1")], b"").status, 401);
}

#[test]
fn projects_cannot_see_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let ka = create_key(tmp.path(), "a");
    let kb = create_key(tmp.path(), "b");
    let s = Server::start_in(tmp.path(), &[]);
    let (a, b) = (Some(ka.as_str()), Some(kb.as_str()));

    let ready = tus_upload(&s, a, b"project a's bytes", Some(&format!("filename {}", b64s("a.txt"))));
    let ra = wait_ready(&s, a, &ready);
    let (pending_path, pending) = tus_create(&s, a, 100, None);
    assert_eq!(tus_patch(&s, a, &pending_path, 0, &[7u8; 10]).status, 204);
    let (partial, _) = s.create_resp(
        &[
            TUS,
            ("Authorization", &format!("Bearer {ka}")),
            ("Upload-Length", "4"),
            ("Upload-Concat", "partial"),
        ],
        b"",
    );

    // /v1: 404, never 403, for every id of project a.
    for id in [&ready, &pending] {
        for m in ["GET", "DELETE"] {
            let r = api(&s, m, &format!("/v1/assets/{id}"), b, None);
            let e = error(&r, 404, "not_found");
            let unknown = api(&s, m, &format!("/v1/assets/{}", uuid::Uuid::now_v7()), b, None);
            assert_eq!(json(&unknown), e, "indistinguishable from an unknown id");
        }
    }
    let lb = json(&api(&s, "GET", "/v1/assets", b, None));
    assert_eq!(lb["data"], json!([]));
    let la = json(&api(&s, "GET", "/v1/assets", a, None));
    assert_eq!(la["data"].as_array().unwrap().len(), 2);
    // A cursor from project a does not leak project a's assets to b.
    let lb = json(&api(&s, "GET", &format!("/v1/assets?cursor={pending}"), b, None));
    assert_eq!(lb["data"], json!([]));

    // tus: HEAD, PATCH, GET, DELETE with b's key: 404.
    let auth_b = bearer(b);
    for path in [format!("/files/{ready}"), pending_path.clone(), partial.clone()] {
        for (m, extra) in [
            ("HEAD", vec![]),
            ("PATCH", vec![("Upload-Offset", "10"), OCTET]),
            ("GET", vec![]),
            ("DELETE", vec![]),
        ] {
            let r =
                s.request(m, &path, &tus_headers(&auth_b, &extra), if m == "PATCH" { b"zz" } else { b"" });
            assert_eq!(r.status, 404, "{m} {path} with project b's key: {r:?}");
        }
        // The IETF draft on the same URL too.
        let r =
            s.request("HEAD", &path, &tus_headers(&auth_b, &[("Upload-Draft-Interop-Version", "6")]), b"");
        assert_eq!(r.status, 404, "IETF HEAD {path}: {r:?}");
    }
    // b cannot concatenate a's partial.
    let v = format!("final;{partial}");
    let r = s.request("POST", "/files/", &tus_headers(&auth_b, &[("Upload-Concat", &v)]), b"");
    assert_ne!(r.status, 201, "{r:?}");
    // Nothing of a changed.
    assert_eq!(tus_patch(&s, a, &pending_path, 10, &[7u8; 90]).status, 204);
    wait_ready(&s, a, &pending);
    let again = get_asset(&s, a, &ready);
    assert_eq!(again["sha256"], ra["sha256"]);
    assert_eq!(s.get(&path_query(again["download_url"].as_str().unwrap())).body, b"project a's bytes");
    // b's own assets are b's.
    let (_, mine) = create_asset(&s, b, &json!({}));
    assert_ne!(mine["project_id"], ra["project_id"]);
    error(
        &api(&s, "GET", &format!("/v1/assets/{}", mine["id"].as_str().unwrap()), a, None),
        404,
        "not_found",
    );
}

/// Runs `tusk serve ARGS` on `0.0.0.0:0`; returns Err(stderr) if it exits
/// within 15 s, else Ok((child, port)) once it listens.
fn serve_any_address(dir: &std::path::Path, args: &[&str]) -> Result<(std::process::Child, u16), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tusk"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("TUSK_ALLOW_ANONYMOUS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if let Some(i) = line.find("listening on http://") {
                let rest = &line[i + "listening on http://".len()..];
                let _ = tx.send(Some(rest.split('/').next().unwrap().to_string()));
            }
        }
        let _ = tx.send(None);
        let _ = tx.send(Some(format!("EXIT:{all}")));
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Some(addr)) => {
            let port = addr.rsplit(':').next().unwrap().parse().unwrap();
            Ok((child, port))
        }
        Ok(None) => {
            let status = child.wait().unwrap();
            let log = rx.recv_timeout(Duration::from_secs(5)).ok().flatten().unwrap_or_default();
            assert!(!status.success(), "a refusal exits non-zero");
            Err(log.trim_start_matches("EXIT:").to_string())
        }
        Err(_) => {
            let _ = child.kill();
            panic!("tusk neither started nor exited");
        }
    }
}

#[test]
fn a_non_loopback_listener_without_keys_needs_allow_anonymous() {
    let tmp = tempfile::tempdir().unwrap();
    let err = serve_any_address(tmp.path(), &[]).expect_err("refuses to start");
    assert!(
        err.contains("0.0.0.0") && err.contains("--allow-anonymous") && err.contains("tusk keys create"),
        "{err}"
    );

    let (mut child, port) = serve_any_address(tmp.path(), &["--allow-anonymous"]).expect("starts");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = request(addr, "GET", "/v1/assets", &[], b"");
    assert_eq!(r.status, 200, "anonymous allowed: {r:?}");
    let _ = child.kill();
    let _ = child.wait();

    // With a key it starts, closed.
    let key = create_key(tmp.path(), "p");
    let (mut child, port) = serve_any_address(tmp.path(), &[]).expect("starts with a key");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(request(addr, "GET", "/v1/assets", &[], b"").status, 401);
    let auth = format!("Bearer {key}");
    assert_eq!(request(addr, "GET", "/v1/assets", &[("Authorization", &auth)], b"").status, 200);
    let _ = child.kill();
    let _ = child.wait();
}
