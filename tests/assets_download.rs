//! Signed downloads: `GET /v1/assets/{id}/content?expires=…&signature=…`.
//! Bytes, sha256 ETag, Range, sniffed Content-Type, safe Content-Disposition;
//! tampering and expiry are 403, an asset that is not ready is 409.

mod assets_common;
mod common;

use std::time::Duration;

use assets_common::*;
use common::*;
use serde_json::json;

const PNG: &[u8] = include_bytes!("fixtures/media/pic.png");

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS(.mmm)Z`.
fn unix(ts: &str) -> u64 {
    let n = |a: usize, b: usize| ts[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)) as u64
}

fn query_param(url: &str, name: &str) -> String {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_string()
}

#[test]
fn downloads_bytes_with_etag_range_type_and_safe_disposition() {
    let s = Server::start(&[]);
    // The client claims HTML; the bytes are a PNG. The name tries to escape.
    let meta = format!("filename {},filetype {}", b64s("../../evil \"pic\".png"), b64s("text/html"));
    let id = tus_upload(&s, None, PNG, Some(&meta));
    let a = wait_ready(&s, None, &id);
    let url = a["download_url"].as_str().unwrap();
    assert!(url.starts_with(&s.url(&format!("/v1/assets/{id}/content?"))), "{url}");
    let expires: u64 = query_param(url, "expires").parse().unwrap();
    assert_eq!(unix(a["download_expires_at"].as_str().unwrap()), expires);
    let ttl = expires as i64 - now_secs() as i64;
    assert!((895..=901).contains(&ttl), "default TTL is 15 minutes: {ttl}");
    let sig = query_param(url, "signature");
    assert_eq!(sig, sign(&s.dir, &id, expires), "HMAC-SHA256 over \"id:expires\" with signing.key");
    let path = path_query(url);

    let r = s.get(&path);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, PNG);
    let etag = format!("\"{}\"", sha256_hex(PNG));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(a["sha256"], sha256_hex(PNG));
    assert_eq!(r.header("content-type"), Some("image/png"), "sniffed, not the client's claim");
    assert_eq!(r.header("content-length"), Some(PNG.len().to_string().as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let cd = r.header("content-disposition").unwrap();
    assert_eq!(cd, "inline; filename=\"evil _pic_.png\"; filename*=UTF-8''evil%20%22pic%22.png");

    let r = s.request("GET", &path, &[("Range", "bytes=10-19")], b"");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, &PNG[10..20]);
    assert_eq!(r.header("content-range"), Some(format!("bytes 10-19/{}", PNG.len()).as_str()));
    let r = s.request("GET", &path, &[("Range", "bytes=-7")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &PNG[PNG.len() - 7..]);
    let r = s.request("GET", &path, &[("Range", "bytes=100-")], b"");
    assert_eq!(r.body, &PNG[100..]);
    let r = s.request("GET", &path, &[("Range", &format!("bytes={}-", PNG.len()))], b"");
    assert_eq!(r.status, 416, "{r:?}");
    let r = s.request("GET", &path, &[("If-None-Match", &etag)], b"");
    assert_eq!(r.status, 304);
    let r = s.request("HEAD", &path, &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), Some(PNG.len().to_string().as_str()));

    // Bytes that a browser must not render here are an attachment.
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n";
    let id = tus_upload(&s, None, html, Some(&format!("filename {}", b64s("x.html"))));
    let a = wait_ready(&s, None, &id);
    let r = s.get(&path_query(a["download_url"].as_str().unwrap()));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, html);
    let ct = r.header("content-type").unwrap();
    assert_eq!(ct, a["content_type"].as_str().unwrap());
    let cd = r.header("content-disposition").unwrap();
    assert_eq!(cd, "attachment; filename=\"x.html\"; filename*=UTF-8''x.html", "never rendered here: {ct}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn the_signature_alone_grants_access_and_tampering_is_403() {
    let s = Server::start(&[]);
    let a_id = tus_upload(&s, None, b"first asset bytes", None);
    let b_id = tus_upload(&s, None, b"second asset bytes", None);
    let a = wait_ready(&s, None, &a_id);
    wait_ready(&s, None, &b_id);
    // Keys exist now: the API needs one, the signed URL does not.
    let key = create_key(&s.dir, "default");
    poll(Duration::from_secs(5), || (api(&s, "GET", "/v1/assets", None, None).status == 401).then_some(()))
        .expect("key honoured");
    let url = a["download_url"].as_str().unwrap();
    let path = path_query(url);
    let r = s.get(&path);
    assert_eq!(r.status, 200, "no key needed: {r:?}");
    assert_eq!(r.body, b"first asset bytes");
    // A wrong key does not get in the way either.
    let r = s.request("GET", &path, &[("Authorization", "Bearer sk_wrong")], b"");
    assert_eq!(r.status, 200);

    let expires = query_param(url, "expires");
    let sig = query_param(url, "signature");
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let later = (expires.parse::<u64>().unwrap() + 3600).to_string();
    let tampered = [
        format!("/v1/assets/{a_id}/content?expires={expires}&signature={}", flip(&sig, 0)),
        format!("/v1/assets/{a_id}/content?expires={expires}&signature={}", flip(&sig, 63)),
        format!("/v1/assets/{a_id}/content?expires={later}&signature={sig}"),
        format!("/v1/assets/{b_id}/content?expires={expires}&signature={sig}"),
        format!("/v1/assets/{a_id}/content?expires={expires}&signature={}", &sig[..62]),
        format!("/v1/assets/{a_id}/content?expires={expires}&signature=zz{}", &sig[2..]),
        format!("/v1/assets/{a_id}/content?expires={expires}&signature="),
        format!("/v1/assets/{a_id}/content?expires={expires}"),
        format!("/v1/assets/{a_id}/content?signature={sig}"),
        format!("/v1/assets/{a_id}/content?expires=-1&signature={sig}"),
        format!("/v1/assets/{a_id}/content"),
    ];
    for p in tampered {
        let r = s.get(&p);
        let e = error(&r, 403, "invalid_signature");
        assert_schema("Error", &e);
        assert!(r.body.len() < 300 && !r.text().contains("first asset"), "{p}");
        let r = s.request("HEAD", &p, &[], b"");
        assert_eq!(r.status, 403, "HEAD {p}");
    }
    // The other asset's own URL works.
    let b = get_asset(&s, Some(&key), &b_id);
    assert_eq!(s.get(&path_query(b["download_url"].as_str().unwrap())).body, b"second asset bytes");
}

#[test]
fn expired_urls_are_403() {
    let s = Server::start(&["--download-ttl", "1s"]);
    let id = tus_upload(&s, None, b"short-lived", None);
    let a = wait_ready(&s, None, &id);
    let url = a["download_url"].as_str().unwrap();
    let expires: u64 = query_param(url, "expires").parse().unwrap();
    assert!(expires <= now_secs() + 1, "--download-ttl 1s");
    let path = path_query(url);
    // Valid now (unless the second already turned), expired within ~2 s.
    let r = poll(Duration::from_secs(4), || {
        let r = s.get(&path);
        (r.status != 200).then_some(r)
    })
    .expect("the URL expires");
    let e = error(&r, 403, "url_expired");
    assert_schema("Error", &e);
    assert!(now_secs() > expires);
    // A fresh view signs a fresh URL.
    let fresh = get_asset(&s, None, &id);
    assert_eq!(s.get(&path_query(fresh["download_url"].as_str().unwrap())).body, b"short-lived");
    // A correctly signed URL from the past is expired, not invalid.
    let past = now_secs() - 10;
    let p = format!("/v1/assets/{id}/content?expires={past}&signature={}", sign(&s.dir, &id, past));
    error(&s.get(&p), 403, "url_expired");
}

#[test]
fn only_ready_assets_download_409_otherwise() {
    let s = Server::start(&["--allowed-types", "image,audio,video"]);
    let exp = now_secs() + 600;
    let signed =
        |id: &str| format!("/v1/assets/{id}/content?expires={exp}&signature={}", sign(&s.dir, id, exp));

    // pending_upload (from /v1 and from tus, part uploaded)
    let (_, a) = create_asset(&s, None, &json!({ "size_bytes": 100 }));
    let pending = a["id"].as_str().unwrap().to_string();
    let r = s.get(&signed(&pending));
    assert_schema("Error", &error(&r, 409, "asset_not_ready"));
    let (path, half) = tus_create(&s, None, 100, None);
    assert_eq!(s.patch(&path, 0, &[1u8; 50], &[]).status, 204);
    error(&s.get(&signed(&half)), 409, "asset_not_ready");
    assert_eq!(s.request("HEAD", &signed(&half), &[], b"").status, 409);

    // failed (type not allowed here: refused at its first 8 KiB)
    let (path, failed) = tus_create(&s, None, 9000, None);
    assert_eq!(tus_patch(&s, None, &path, 0, &bytes(9000, 1)).status, 415);
    let f = wait_state(&s, None, &failed, &["ready", "failed"], Duration::from_secs(20));
    assert_eq!(f["state"], "failed", "{f}");
    assert!(f["download_url"].is_null() && f["sha256"].is_null());
    error(&s.get(&signed(&failed)), 409, "asset_not_ready");

    // ready: the same construction works.
    let ok = tus_upload(&s, None, PNG, None);
    wait_ready(&s, None, &ok);
    let r = s.get(&signed(&ok));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, PNG);

    // Unknown and deleted assets: 404 even with a valid signature.
    let unknown = uuid::Uuid::now_v7().to_string();
    error(&s.get(&signed(&unknown)), 404, "not_found");
    assert_eq!(api(&s, "DELETE", &format!("/v1/assets/{ok}"), None, None).status, 204);
    error(&s.get(&signed(&ok)), 404, "not_found");
}
