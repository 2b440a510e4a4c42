//! `src/api/openapi.json` against the server: every `/v1` route the router
//! answers is documented (and nothing else), methods a path does not have
//! answer 405 with `Allow`, public operations need no key, and real
//! responses validate against the documented schemas.

mod assets_common;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use assets_common::*;
use common::*;
use serde_json::{Value, json};

/// (METHOD, /v1/path/{id}) pairs the router in `src/api/mod.rs` matches,
/// read from its source so a new route cannot be added without this test
/// seeing it.
fn source_routes() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/api/mod.rs");
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("(&Method::") {
        rest = &rest[i + 1..];
        let comma = rest.find(", [").expect("arm: (methods, [segments])");
        let methods: Vec<String> =
            rest[..comma].split('|').map(|m| m.trim().trim_start_matches("&Method::").to_string()).collect();
        let open = comma + 3;
        let close = open + rest[open..].find(']').unwrap();
        let path: String = rest[open..close]
            .split(',')
            .map(|seg| {
                let seg = seg.trim();
                match seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(lit) => lit.to_string(),
                    None => format!("{{{seg}}}"),
                }
            })
            .fold(String::new(), |acc, s| acc + "/" + &s);
        for m in methods {
            out.insert((m, path.clone()));
        }
        rest = &rest[close..];
    }
    assert!(out.len() >= 8, "the route parser found too little: {out:?}");
    out
}

const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

fn doc_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_ascii_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

const PUBLIC: [(&str, &str); 4] = [
    ("GET", "/v1/assets/{id}/content"),
    ("HEAD", "/v1/assets/{id}/content"),
    ("GET", "/v1/asset-types"),
    ("GET", "/v1/openapi.json"),
];

#[test]
fn document_is_openapi_3_1_and_self_consistent() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    let api_key = &doc["components"]["securitySchemes"]["apiKey"];
    assert_eq!(api_key["type"], "apiKey");
    assert_eq!(api_key["in"], "header");
    assert_eq!(api_key["name"], "x-api-key");
    assert_eq!(doc["security"], json!([{ "bearer": [] }, { "apiKey": [] }]));

    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in &all {
        assert!(doc.pointer(r.strip_prefix('#').unwrap()).is_some(), "dangling {r}");
    }

    // Public operations say so; every other one inherits the bearer scheme
    // and documents 401; every operation has a unique operationId.
    let mut ids = BTreeSet::new();
    for (m, p, op) in operations(&doc) {
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "duplicate operationId");
        let public = PUBLIC.contains(&(m.as_str(), p.as_str()));
        if public {
            assert_eq!(op["security"], json!([]), "{m} {p} is public");
        } else {
            assert!(op.get("security").is_none(), "{m} {p} needs the bearer key");
            assert!(op["responses"].get("401").is_some(), "{m} {p} documents 401");
        }
        // Path parameters are declared.
        if p.contains("{id}") {
            let params = doc["paths"][&p]["parameters"].as_array().expect("path parameters");
            let declared = params.iter().any(|x| {
                let x = if x.get("$ref").is_some() {
                    doc.pointer(x["$ref"].as_str().unwrap().strip_prefix('#').unwrap()).unwrap()
                } else {
                    x
                };
                x["name"] == "id" && x["in"] == "path" && x["required"] == true
            });
            assert!(declared, "{p} declares id");
        }
    }

    // Every status code the issue names is documented somewhere.
    let mut codes = BTreeSet::new();
    for (_, _, op) in operations(&doc) {
        codes.extend(op["responses"].as_object().unwrap().keys().cloned());
    }
    for c in ["200", "201", "204", "400", "401", "403", "404", "409", "413", "422"] {
        assert!(codes.contains(c), "status {c} is not documented on any operation");
    }
    let mna = &doc["components"]["responses"]["MethodNotAllowed"];
    assert_eq!(mna["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");

    // The list endpoint documents exactly the query parameters the server knows.
    let list = &doc["paths"]["/v1/assets"]["get"]["parameters"];
    let names: BTreeSet<&str> =
        list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["state", "type", "limit", "cursor"]));
    let limit = list.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(limit["schema"], json!({ "type": "integer", "minimum": 1, "maximum": 100, "default": 20 }));

    // The Asset schema: every field required and described, no others.
    let asset = &doc["components"]["schemas"]["Asset"];
    let required: BTreeSet<&str> =
        asset["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let props: BTreeSet<&str> = asset["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(required, props);
    assert_eq!(asset["additionalProperties"], false);
    let expected = [
        "id",
        "project_id",
        "name",
        "state",
        "type",
        "extension",
        "content_type",
        "size_bytes",
        "received_bytes",
        "sha256",
        "duration_seconds",
        "width",
        "height",
        "language",
        "metadata",
        "error_code",
        "error_message",
        "created_at",
        "updated_at",
        "expires_at",
        "upload_url",
        "upload_url_expires_at",
        "download_url",
        "download_expires_at",
    ];
    assert_eq!(required, BTreeSet::from(expected));
    // Nullability as the issue states it: only these are never null.
    let never_null = ["id", "project_id", "state", "received_bytes", "metadata", "created_at", "updated_at"];
    for f in expected {
        let p = &asset["properties"][f];
        let p = if p.get("$ref").is_some() {
            doc.pointer(p["$ref"].as_str().unwrap().strip_prefix('#').unwrap()).unwrap()
        } else {
            p
        };
        let nullable = p["type"].as_array().is_some_and(|t| t.contains(&json!("null")));
        assert_eq!(nullable, !never_null.contains(&f), "nullability of {f}");
    }
    let err = &doc["components"]["schemas"]["Error"];
    assert_eq!(err["required"], json!(["code", "message", "errors"]));
    assert_eq!(err["properties"]["errors"]["type"], json!(["array", "null"]));
    assert_eq!(doc["components"]["schemas"]["FieldError"]["required"], json!(["field", "code", "message"]));
}

#[test]
fn every_route_the_router_matches_is_documented_and_nothing_else() {
    let doc = openapi();
    let documented = doc_routes(&doc);
    let routed = source_routes();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routes the server answers but openapi.json does not document: {missing:?}");
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

/// Requests every documented path with every method, against a server that
/// requires keys: documented operations are answered (never 405 or an
/// unknown-endpoint 404), others are 405 with an `Allow` of exactly the
/// documented methods; public operations work without a key and the
/// others answer 401 without one. Responses validate against the schemas.
#[test]
fn the_server_answers_what_is_documented() {
    let doc = openapi();
    let s = Server::start(&[]);
    let key = create_key(&s.dir, "docs");
    let k = Some(key.as_str());
    // Wait until the running server honours the key.
    poll(Duration::from_secs(5), || (api(&s, "GET", "/v1/assets", None, None).status == 401).then_some(()))
        .expect("key honoured");

    // A ready asset, so the content route can answer 200.
    let id = tus_upload(&s, k, b"hello, documented world\n", Some(&format!("filename {}", b64s("d.txt"))));
    let ready = wait_ready(&s, k, &id);
    assert_schema("Asset", &ready);
    let download = path_query(ready["download_url"].as_str().unwrap());
    let query = download.split_once('?').unwrap().1.to_string();

    let concrete = |p: &str| {
        let mut p = p.replace("{id}", &id);
        if p.ends_with("/content") {
            p = format!("{p}?{query}");
        }
        p
    };

    let mut allowed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, p) in doc_routes(&doc) {
        allowed.entry(p).or_default().insert(m);
    }
    for (path, methods) in &allowed {
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            let url = concrete(path);
            if m == "GET" && path == "/v1/events" {
                let mut c = s.open("GET", &url, &[("Authorization", &format!("Bearer {key}"))]);
                let r =
                    read_response_within(&mut c, false, Duration::from_millis(800)).expect("events answer");
                assert_eq!(r.status, 200, "{r:?}");
                assert_eq!(r.header("content-type"), Some("text/event-stream"));
                continue;
            }
            if m == "DELETE" && methods.contains("DELETE") {
                continue; // done last, below
            }
            let body = (m == "POST" && methods.contains("POST")).then(|| json!({ "name": "x" }));
            let r = api(&s, m, &url, k, body.as_ref());
            if methods.contains(m) {
                assert_ne!(r.status, 405, "{m} {path} is documented: {r:?}");
                assert!(!(r.status == 404 && r.text().contains("no API endpoint")), "{m} {path}: {r:?}");
                let op = &doc["paths"][path][m.to_ascii_lowercase()];
                assert!(
                    op["responses"].get(r.status.to_string()).is_some(),
                    "{m} {path} answered {} which is not documented: {r:?}",
                    r.status
                );
                // The body matches the documented schema.
                let media = &op["responses"][r.status.to_string()];
                let media = match media.get("$ref") {
                    Some(rf) => doc.pointer(rf.as_str().unwrap().strip_prefix('#').unwrap()).unwrap(),
                    None => media,
                };
                if m != "HEAD"
                    && let Some(schema) = media.pointer("/content/application~1json/schema")
                {
                    let errs = validate(&doc, schema, &json(&r));
                    assert!(errs.is_empty(), "{m} {path}: {errs:?}");
                }
            } else {
                assert_eq!(r.status, 405, "{m} {path} is not documented: {r:?}");
                if m != "HEAD" {
                    let e = error(&r, 405, "method_not_allowed");
                    assert_schema("Error", &e);
                }
                let allow: BTreeSet<String> =
                    r.header("allow").expect("Allow").split(',').map(|x| x.trim().to_string()).collect();
                assert_eq!(&allow, methods, "Allow of {path}");
            }
        }
    }

    // Without a key: public operations answer, the others 401 (Error schema).
    for (m, path) in doc_routes(&doc) {
        let url = concrete(&path);
        let public = PUBLIC.contains(&(m.as_str(), path.as_str()));
        let r = if m == "GET" && path == "/v1/events" {
            s.request("GET", &url, &[], b"")
        } else {
            api(&s, &m, &url, None, (m == "POST").then(|| json!({})).as_ref())
        };
        if public {
            assert!(r.status < 300, "{m} {path} is public: {r:?}");
        } else {
            assert_eq!(r.status, 401, "{m} {path} without a key: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            if m != "HEAD" {
                assert_schema("Error", &error(&r, 401, "unauthorized"));
            }
        }
    }

    // The served document is this file.
    let r = api(&s, "GET", "/v1/openapi.json", None, None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(json(&r), doc);

    // Typed responses: the list, the type catalogue, a 422 and a 404.
    let list = json(&api(&s, "GET", "/v1/assets?limit=5", k, None));
    assert_schema("AssetList", &list);
    assert!(!list["data"].as_array().unwrap().is_empty());
    let types = json(&api(&s, "GET", "/v1/asset-types", None, None));
    assert_schema("AssetTypes", &types);
    let all: Vec<&str> =
        types["data"].as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert_eq!(all, ["audio", "video", "image", "document", "archive", "other"]);
    let e = error(&api(&s, "GET", "/v1/assets?limit=0&colour=red", k, None), 422, "validation_failed");
    assert_schema("Error", &e);
    let e =
        error(&api(&s, "GET", &format!("/v1/assets/{}", uuid::Uuid::now_v7()), k, None), 404, "not_found");
    assert_schema("Error", &e);
    let e = error(&api(&s, "GET", "/v1/nothing-here", k, None), 404, "not_found");
    assert_schema("Error", &e);

    // DELETE last: 204, then the asset is gone.
    let r = api(&s, "DELETE", &format!("/v1/assets/{id}"), k, None);
    assert_eq!(r.status, 204, "{r:?}");
    error(&api(&s, "GET", &format!("/v1/assets/{id}"), k, None), 404, "not_found");
}
