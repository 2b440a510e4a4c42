//! Helpers shared by the asset tests (`tests/assets_*.rs`, `tests/openapi.rs`):
//! JSON calls to `/v1`, tus uploads with a key, polling an asset's state,
//! signing download URLs, `tusk keys ...`, and a small JSON Schema checker
//! for the parts of JSON Schema `src/api/openapi.json` uses.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Resp, Server, poll};

pub const OPENAPI_SRC: &str = include_str!("../../src/api/openapi.json");

pub fn openapi() -> Value {
    serde_json::from_str(OPENAPI_SRC).expect("src/api/openapi.json is JSON")
}

/// A `/v1` call. `key` adds `Authorization: Bearer`; `body` is sent as JSON.
pub fn api(s: &Server, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
    if body.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    s.request(method, path, &h, &bytes)
}

pub fn json(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// Asserts the `/v1` error envelope and returns it.
pub fn error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = json(r);
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v.get("errors").is_some(), "errors is always present: {v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "only code, message, errors: {v}");
    v
}

/// The `field`s of a 422's `errors`.
pub fn error_fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors is a list: {v}"))
        .iter()
        .map(|e| {
            assert!(e["code"].is_string() && e["message"].is_string(), "FieldError: {e}");
            e["field"].as_str().unwrap().to_string()
        })
        .collect()
}

pub fn create_asset(s: &Server, key: Option<&str>, body: &Value) -> (Resp, Value) {
    let r = api(s, "POST", "/v1/assets", key, Some(body));
    assert_eq!(r.status, 201, "{r:?}");
    let v = json(&r);
    (r, v)
}

pub fn get_asset(s: &Server, key: Option<&str>, id: &str) -> Value {
    let r = api(s, "GET", &format!("/v1/assets/{id}"), key, None);
    assert_eq!(r.status, 200, "{r:?}");
    json(&r)
}

/// Polls the asset until its state is one of `states`; panics with the last view.
pub fn wait_state(s: &Server, key: Option<&str>, id: &str, states: &[&str], within: Duration) -> Value {
    let mut last = Value::Null;
    poll(within, || {
        last = get_asset(s, key, id);
        states.contains(&last["state"].as_str().unwrap()).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("asset never reached {states:?}: {last}\nlogs:\n{}", s.logs()))
}

pub fn wait_ready(s: &Server, key: Option<&str>, id: &str) -> Value {
    let v = wait_state(s, key, id, &["ready", "failed"], Duration::from_secs(20));
    assert_eq!(v["state"], "ready", "{v}");
    v
}

/// tus headers with an optional key.
pub fn tus_headers<'a>(auth: &'a Option<String>, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("Tus-Resumable", "1.0.0")];
    if let Some(a) = auth {
        h.push(("Authorization", a.as_str()));
    }
    h.extend_from_slice(extra);
    h
}

pub fn bearer(key: Option<&str>) -> Option<String> {
    key.map(|k| format!("Bearer {k}"))
}

/// Creates a tus upload of `len` bytes; returns (upload path, asset id).
pub fn tus_create(s: &Server, key: Option<&str>, len: u64, metadata: Option<&str>) -> (String, String) {
    let auth = bearer(key);
    let l = len.to_string();
    let mut extra = vec![("Upload-Length", l.as_str())];
    if let Some(m) = metadata {
        extra.push(("Upload-Metadata", m));
    }
    let r = s.request("POST", "/files/", &tus_headers(&auth, &extra), b"");
    assert_eq!(r.status, 201, "{r:?}");
    let path = Server::path_of(r.header("location").unwrap());
    let id = path.rsplit('/').next().unwrap().to_string();
    (path, id)
}

pub fn tus_patch(s: &Server, key: Option<&str>, path: &str, offset: u64, data: &[u8]) -> Resp {
    let auth = bearer(key);
    let off = offset.to_string();
    let h = tus_headers(
        &auth,
        &[("Upload-Offset", off.as_str()), ("Content-Type", "application/offset+octet-stream")],
    );
    s.request("PATCH", path, &h, data)
}

/// Uploads `data` through tus in one PATCH; returns the asset id.
pub fn tus_upload(s: &Server, key: Option<&str>, data: &[u8], metadata: Option<&str>) -> String {
    let (path, id) = tus_create(s, key, data.len() as u64, metadata);
    let r = tus_patch(s, key, &path, 0, data);
    assert_eq!(r.status, 204, "{r:?}");
    id
}

/// The download signature, computed as `src/api/signing.rs` does, from the
/// secret the server keeps in its data directory.
pub fn sign(data_dir: &Path, id: &str, expires: u64) -> String {
    use hmac::{KeyInit, Mac};
    let secret = std::fs::read(data_dir.join("signing.key")).expect("signing.key");
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(format!("{id}:{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// `tusk keys ARGS --data-dir DIR`.
pub fn keys(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tusk"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run tusk keys")
}

/// `tusk keys create --project P`: the secret (the only stdout line).
pub fn create_key(dir: &Path, project: &str) -> String {
    let out = keys(dir, &["create", "--project", project]);
    assert!(out.status.success(), "keys create: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is the secret only: {stdout:?}");
    assert!(lines[0].starts_with("sk_") && lines[0].len() > 20, "{stdout:?}");
    lines[0].to_string()
}

/// The path and query of an absolute URL.
pub fn path_query(url: &str) -> String {
    Server::path_of(url)
}

// ---------------------------------------------------------------------------
// A JSON Schema checker for the keywords openapi.json uses.

/// Validates `v` against `schema` (resolving `#/...` refs in `doc`); returns
/// every violation as "path: problem".
pub fn validate(doc: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, v, "$", &mut out);
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.strip_prefix('#').expect("local ref");
            resolve(doc, doc.pointer(ptr).unwrap_or_else(|| panic!("dangling $ref {r}")))
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        other => panic!("unknown type {other}"),
    }
}

fn pattern_ok(p: &str, s: &str) -> bool {
    let all = |f: fn(u8) -> bool| s.bytes().all(f);
    match p {
        "^[0-9a-f]{64}$" => s.len() == 64 && all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "^[a-z]{2}$" => s.len() == 2 && all(|b| b.is_ascii_lowercase()),
        "^[0-9]+(\\.[0-9]+)?$" => {
            let (i, f) = s.split_once('.').unwrap_or((s, "0"));
            !i.is_empty() && !f.is_empty() && i.bytes().chain(f.bytes()).all(|b| b.is_ascii_digit())
        }
        "^[!-+\\--~]+$" => !s.is_empty() && all(|b| (0x21..=0x7e).contains(&b) && b != b','),
        other => panic!("the test's checker does not know the pattern {other:?}; teach it"),
    }
}

fn format_ok(f: &str, s: &str) -> bool {
    match f {
        "uuid" => uuid::Uuid::try_parse(s).is_ok(),
        "uri" => s.starts_with("http://") || s.starts_with("https://"),
        "date-time" => {
            // RFC 3339, UTC: 2026-11-22T08:39:23.123Z
            let b = s.as_bytes();
            b.len() >= 20
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && b[16] == b':'
                && s.ends_with('Z')
                && s[..4].parse::<u32>().is_ok()
        }
        other => panic!("unknown format {other}"),
    }
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type"),
        };
        if !ok {
            out.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        out.push(format!("{at}: {v} is not {c}"));
    }
    if let Some(s) = v.as_str() {
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !pattern_ok(p, s)
        {
            out.push(format!("{at}: {s:?} does not match {p}"));
        }
        if let Some(f) = schema.get("format").and_then(Value::as_str)
            && !format_ok(f, s)
        {
            out.push(format!("{at}: {s:?} is not a {f}"));
        }
        if let Some(n) = schema.get("minLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) < n
        {
            out.push(format!("{at}: shorter than {n}"));
        }
        if let Some(n) = schema.get("maxLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) > n
        {
            out.push(format!("{at}: longer than {n}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(m) = schema.get("minimum").and_then(Value::as_f64)
            && n < m
        {
            out.push(format!("{at}: {n} < {m}"));
        }
        if let Some(m) = schema.get("maximum").and_then(Value::as_f64)
            && n > m
        {
            out.push(format!("{at}: {n} > {m}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                out.push(format!("{at}: missing required {r}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            let sub = format!("{at}.{k}");
            if let Some(names) = schema.get("propertyNames") {
                check(doc, names, &Value::String(k.clone()), &format!("{sub} (name)"), out);
            }
            match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                (Some(p), _) => check(doc, p, val, &sub, out),
                (None, Some(Value::Bool(false))) => out.push(format!("{at}: unexpected property {k}")),
                (None, Some(ap)) if ap.is_object() => check(doc, ap, val, &sub, out),
                _ => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, val) in arr.iter().enumerate() {
            check(doc, items, val, &format!("{at}[{i}]"), out);
        }
    }
}

/// Asserts `v` is a valid `components.schemas.NAME`.
pub fn assert_schema(name: &str, v: &Value) {
    let doc = openapi();
    let schema = doc["components"]["schemas"][name].clone();
    assert!(!schema.is_null(), "no schema {name}");
    let errs = validate(&doc, &schema, v);
    assert!(errs.is_empty(), "{name} does not validate:\n{}\n{v:#}", errs.join("\n"));
}
