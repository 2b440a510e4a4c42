//! `/v1/assets`: create, read, list, delete, and signed content downloads.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::header::LOCATION;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use super::json_response;
use crate::app::App;
use crate::asset::{AssetInfo, AssetState, AssetType, lang, rfc3339, sniff};
use crate::auth::Caller;
use crate::download::{self, Download};
use crate::http::{Response, public_origin, set};
use crate::record::{Timestamp, UploadRecord};

const MAX_JSON_BODY: usize = 64 << 10;

/// Everything a view needs from the request: where the client reached us.
pub struct View<'a> {
    pub app: &'a App,
    pub origin: String,
}

impl<'a> View<'a> {
    pub fn new(app: &'a App, req_headers: &http::HeaderMap, uri: &http::Uri) -> Self {
        View { app, origin: public_origin(req_headers, uri, app.cfg.behind_proxy) }
    }

    /// The asset JSON. Every field is always present, null where it does not apply.
    pub fn asset(&self, rec: &UploadRecord) -> Value {
        let app = self.app;
        let a = rec.asset.as_ref().expect("only assets are viewed");
        let sniffed = a.sniffed.as_ref();
        let ready = a.state == AssetState::Ready;
        let (download_url, download_expires_at) = if ready {
            let exp = SystemTime::now() + app.cfg.download_ttl;
            let secs = exp.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
            let presigned = app.cfg.presign_downloads().then(|| {
                let content_type = sniffed.map_or("application/octet-stream", |s| s.content_type.as_str());
                let disposition = crate::download::content_disposition(content_type, a.name.as_deref());
                app.bytes.presigned_get(crate::ports::bytes::Loc::of(rec), app.cfg.download_ttl, &disposition)
            });
            let url = presigned.flatten().unwrap_or_else(|| {
                let sig = app.signer.sign(rec.id, secs);
                format!("{}/v1/assets/{}/content?expires={secs}&signature={sig}", self.origin, rec.id)
            });
            (Some(url), Some(rfc3339(Timestamp(secs * 1000))))
        } else {
            (None, None)
        };
        let assembled_or_plain = !rec.is_final() || rec.is_complete();
        // A capability for this one upload, so the JSON can be handed to a
        // tus client in a browser without the key.
        let upload_url = (a.state == AssetState::PendingUpload && !rec.is_final()).then(|| {
            let ttl = rec.url_ttl_secs.map(Duration::from_secs).unwrap_or(app.cfg.upload_url_ttl);
            app.upload_url(&self.origin, rec, ttl)
        });
        json!({
            "id": rec.id,
            "project_id": rec.project_id,
            "name": a.name,
            "state": a.state.as_str(),
            "type": sniffed.map(|s| s.kind.as_str()),
            "extension": sniffed.and_then(|s| s.extension.clone()),
            "content_type": sniffed.map(|s| s.content_type.clone()),
            "size_bytes": rec.length,
            "received_bytes": if assembled_or_plain { rec.offset.0 } else { 0 },
            "sha256": ready.then(|| rec.sha256.finalize_hex()),
            "duration_seconds": a.duration_seconds,
            "width": a.width,
            "height": a.height,
            "language": a.language,
            "metadata": a.metadata,
            "error_code": a.error.as_ref().map(|e| e.code.clone()),
            "error_message": a.error.as_ref().map(|e| e.message.clone()),
            "created_at": rfc3339(rec.created_at),
            "updated_at": rfc3339(rec.updated_at.max(a.updated_at)),
            "expires_at": rec.expires_at(app.cfg.expire_after).map(rfc3339),
            "upload_url": upload_url.as_ref().map(|u| &u.0),
            "upload_url_expires_at": upload_url.as_ref().map(|u| rfc3339(Timestamp(u.1 * 1000))),
            "download_url": download_url,
            "download_expires_at": download_expires_at,
        })
    }
}

async fn find(app: &App, caller: &Caller, id: Uuid) -> Result<UploadRecord, ApiError> {
    match app.meta.get(id).await? {
        Some(rec) if rec.project_id == caller.project_id && rec.asset.is_some() => Ok(rec),
        _ => Err(ApiError::not_found()),
    }
}

pub async fn get(
    app: &App,
    caller: &Caller,
    id: Uuid,
    req: &Request<Incoming>,
) -> Result<Response, ApiError> {
    let rec = find(app, caller, id).await?;
    let view = View::new(app, req.headers(), req.uri());
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&view.asset(&rec)).expect("json")))
}

/// The fields `POST /v1/assets` accepts; any other is a 422 naming it.
const CREATE_FIELDS: [&str; 8] = [
    "name",
    "size_bytes",
    "language",
    "metadata",
    "expires_in",
    "max_size_bytes",
    "allowed_types",
    "max_duration_seconds",
];

/// The longest an upload URL may be valid.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn create(
    app: &std::sync::Arc<App>,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let mut body = json_object(body).await?;

    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !CREATE_FIELDS.contains(&k.as_str()))
        .map(|k| {
            FieldError::new(
                k,
                "unknown",
                "unknown field; send name, size_bytes, language, metadata, expires_in, max_size_bytes, \
                 allowed_types or max_duration_seconds",
            )
        })
        .collect();
    let name = match body.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Some(s),
        Some(_) => {
            errors.push(FieldError::new("name", "invalid", "must be a string of 1 to 1024 characters"));
            None
        }
    };
    let size = match body.remove("size_bytes") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if json_u64(&n).is_some() => {
            let v = json_u64(&n).expect("checked");
            if let Some(max) = app.cfg.max_size
                && v > max
            {
                errors.push(FieldError::new(
                    "size_bytes",
                    "too_large",
                    format!("must be at most {max} bytes on this server"),
                ));
            }
            Some(v)
        }
        Some(_) => {
            errors.push(FieldError::new("size_bytes", "invalid", "must be a non-negative integer"));
            None
        }
    };
    let language = match body.remove("language") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if lang::is_iso639_1(&s) => Some(s),
        Some(_) => {
            errors.push(FieldError::new(
                "language",
                "invalid",
                "must be a lowercase two-letter ISO 639-1 code such as \"en\"",
            ));
            None
        }
    };
    let metadata = metadata_field(&mut body, &mut errors);
    let ttl = match body.remove("expires_in") {
        None | Some(Value::Null) => app.cfg.upload_url_ttl,
        Some(Value::Number(n)) if json_u64(&n).is_some_and(|v| v >= 1 && v <= MAX_URL_TTL.as_secs()) => {
            Duration::from_secs(json_u64(&n).expect("checked"))
        }
        Some(_) => {
            errors.push(FieldError::new(
                "expires_in",
                "invalid",
                format!("must be a number of seconds from 1 to {}", MAX_URL_TTL.as_secs()),
            ));
            app.cfg.upload_url_ttl
        }
    };
    let requested = limits_fields(&mut body, &mut errors);
    if let (Some(size), Some(max)) = (size, requested.max_size)
        && size > max
    {
        errors.push(FieldError::new(
            "size_bytes",
            "too_large",
            format!("is more than max_size_bytes ({max})"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    // The same upload a tus POST makes, so a tus client can go on with PATCH
    // and see the name and language in its Upload-Metadata; the asset keeps
    // the metadata exactly as sent.
    let mut tus_metadata = metadata.clone();
    if let Some(l) = &language {
        tus_metadata.entry("language".into()).or_insert_with(|| l.clone());
    }
    if let Some(n) = &name {
        tus_metadata.entry("filename".into()).or_insert_with(|| n.clone());
    }
    let header = tus_metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",");
    let new = crate::uploads::NewUpload {
        length: size,
        metadata: (!header.is_empty()).then_some(header),
        asset: Some(AssetInfo::new(name, language, metadata)),
        limits: requested,
        url_ttl_secs: Some(ttl.as_secs()),
        ..Default::default()
    };
    let mut rec = crate::uploads::create(app, caller, new).await?;
    let id = rec.id;
    app.meta.flush().await?;
    if rec.is_complete() {
        // A zero-byte asset is complete at once.
        let _lock = app.locks.lock(id).await?;
        crate::uploads::on_complete(app, &rec).await;
        rec = app.meta.get(id).await?.unwrap_or(rec);
    }

    let view = View::new(app, &parts.headers, &parts.uri);
    let mut resp = json_response(StatusCode::CREATED, serde_json::to_vec(&view.asset(&rec)).expect("json"));
    set(resp.headers_mut(), LOCATION, format!("{}{}{}", view.origin, app.cfg.base_path, id));
    Ok(resp)
}

/// The `metadata` field of a request body: an object of strings with
/// tus-compatible keys, bounded like `Upload-Metadata` (`POST /v1/assets`
/// and `POST /v1/upload-tokens` take the same).
pub(super) fn metadata_field(
    body: &mut serde_json::Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    match body.remove("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            use crate::protocol::{MAX_METADATA_BYTES, MAX_METADATA_PAIRS};
            let bytes: usize = map.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
            if map.len() > MAX_METADATA_PAIRS {
                errors.push(FieldError::new(
                    "metadata",
                    "too_many",
                    format!("has {} keys; at most {MAX_METADATA_PAIRS} are accepted", map.len()),
                ));
            } else if bytes > MAX_METADATA_BYTES {
                errors.push(FieldError::new(
                    "metadata",
                    "too_large",
                    format!(
                        "keys and values add up to {bytes} bytes; at most {MAX_METADATA_BYTES} are accepted"
                    ),
                ));
            }
            for (k, v) in map {
                let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b',');
                match v {
                    Value::String(s) if key_ok => {
                        metadata.insert(k, s);
                    }
                    _ => errors.push(FieldError::new(
                        &format!("metadata.{k}"),
                        "invalid",
                        "keys are printable ASCII without spaces or commas; values are strings",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("metadata", "invalid", "must be an object of strings")),
    }
    metadata
}

/// `max_size_bytes`, `allowed_types` and `max_duration_seconds` of a request
/// body (upload URLs and upload tokens take the same fields).
pub(super) fn limits_fields(
    body: &mut serde_json::Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> crate::limits::UploadLimits {
    let mut positive = |field: &str| match body.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if json_u64(&n).is_some() => json_u64(&n),
        Some(_) => {
            errors.push(FieldError::new(field, "invalid", "must be a non-negative integer"));
            None
        }
    };
    let max_size = positive("max_size_bytes");
    let max_duration = positive("max_duration_seconds");
    let allowed_types = match body.remove("allowed_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut types = Vec::new();
            for item in &items {
                match item.as_str().and_then(AssetType::parse) {
                    Some(t) if !types.contains(&t) => types.push(t),
                    Some(_) => {}
                    None => errors.push(FieldError::new(
                        "allowed_types",
                        "invalid",
                        format!(
                            "{item} is not an asset type; use audio, video, image, document, archive or other"
                        ),
                    )),
                }
            }
            Some(types)
        }
        Some(_) => {
            errors.push(FieldError::new(
                "allowed_types",
                "invalid",
                "must be an array of asset types such as [\"image\", \"video\"]",
            ));
            None
        }
    };
    crate::limits::UploadLimits { max_size, allowed_types, max_duration }
}

/// A request body that must be a JSON object (empty counts as `{}`).
pub(super) async fn json_object(body: Incoming) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = match Limited::new(body, MAX_JSON_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the JSON body is limited to {MAX_JSON_BODY} bytes"),
            ));
        }
    };
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "the body must be a JSON object",
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not valid JSON: {e}"),
                ));
            }
        }
    };

    Ok(body)
}

pub async fn list(
    app: &std::sync::Arc<App>,
    caller: &Caller,
    req: &Request<Incoming>,
) -> Result<Response, ApiError> {
    let mut state = None;
    let mut kind = None;
    let mut limit = 20usize;
    let mut cursor = None;
    let mut errors = Vec::new();
    for (k, v) in query_pairs(req.uri().query().unwrap_or("")) {
        match k.as_str() {
            "state" => match AssetState::parse(&v) {
                Some(s) => state = Some(s),
                None => errors.push(FieldError::new(
                    "state",
                    "invalid",
                    "must be one of pending_upload, processing, ready, failed",
                )),
            },
            "type" => match AssetType::parse(&v) {
                Some(t) => kind = Some(t),
                None => errors.push(FieldError::new(
                    "type",
                    "invalid",
                    "must be one of audio, video, image, document, archive, other",
                )),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", "invalid", "must be an integer from 1 to 100")),
            },
            "cursor" => match Uuid::try_parse(&v) {
                Ok(c) => cursor = Some(c),
                Err(_) => errors.push(FieldError::new(
                    "cursor",
                    "invalid",
                    "must be a next_cursor from a previous page",
                )),
            },
            _ => errors.push(FieldError::new(&k, "unknown", "unknown query parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    // Reading and rendering a page is up to a few MiB of work: off the
    // request threads, so a list never stalls uploads and HEADs.
    let (app, project) = (app.clone(), caller.project_id);
    let origin = View::new(&app, req.headers(), req.uri()).origin;
    let page = app.meta.list_assets(project, cursor, limit, state, kind).await?;
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let view = View { app: &app, origin };
        let data: Vec<Value> = page.assets.iter().map(|r| view.asset(r)).collect();
        Ok(serde_json::to_vec(&json!({ "data": data, "next_cursor": page.next })).expect("json"))
    })
    .await
    .map_err(|e| crate::ports::StoreError::Io(std::io::Error::other(e.to_string())))??;
    Ok(json_response(StatusCode::OK, body))
}

pub async fn delete(app: &App, caller: &Caller, id: Uuid) -> Result<Response, ApiError> {
    // Only the owner may interrupt an upload in flight (as a tus DELETE does).
    find(app, caller, id).await?;
    let _lock = app.locks.lock(id).await?;
    find(app, caller, id).await?;
    crate::uploads::remove(app, id, crate::record::GoneReason::Terminated).await?;
    let mut resp = http::Response::new(crate::http::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// The signed download. No key needed: the signature is the credential.
pub async fn content(app: &App, id: Uuid, req: &Request<Incoming>) -> Result<Response, ApiError> {
    let mut expires = None;
    let mut signature = None;
    for (k, v) in query_pairs(req.uri().query().unwrap_or("")) {
        match k.as_str() {
            "expires" => expires = v.parse::<u64>().ok(),
            "signature" => signature = Some(v),
            _ => {}
        }
    }
    let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "invalid_signature", m);
    let (Some(expires), Some(signature)) = (expires, signature) else {
        return Err(forbidden("this download URL is incomplete; get a fresh download_url from the asset"));
    };
    if !app.signer.verify(id, expires, &signature) {
        return Err(forbidden(
            "this download URL's signature is not valid; get a fresh download_url from the asset",
        ));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    if expires < now {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "url_expired",
            "this download URL has expired; get a fresh download_url from the asset",
        ));
    }
    let rec = match app.meta.get(id).await? {
        Some(r) if r.asset.is_some() => r,
        _ => return Err(ApiError::not_found()),
    };
    let a = rec.asset.as_ref().expect("checked");
    if a.state != AssetState::Ready {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "asset_not_ready",
            format!("the asset is {}; it can be downloaded once ready", a.state.as_str()),
        ));
    }
    let content_type = a
        .sniffed
        .as_ref()
        .map(|s| s.content_type.clone())
        .unwrap_or_else(|| "application/octet-stream".into());
    let d = Download {
        bytes: &app.bytes,
        loc: crate::ports::bytes::Loc::of(&rec),
        len: rec.offset.0,
        etag: rec.sha256.finalize_hex(),
        content_type,
        filename: a.name.clone(),
    };
    download::serve(req.method(), req.headers(), d).await.map_err(|e| crate::ports::StoreError::Io(e).into())
}

pub fn types() -> Response {
    let mut by_type: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for t in AssetType::ALL {
        by_type.entry(t.as_str()).or_default();
    }
    for (t, ext, ct) in sniff::recognised() {
        by_type.entry(t.as_str()).or_default().push(json!({ "extension": ext, "content_type": ct }));
    }
    let data: Vec<Value> = AssetType::ALL
        .iter()
        .map(|t| json!({ "type": t.as_str(), "formats": by_type[t.as_str()] }))
        .collect();
    json_response(StatusCode::OK, serde_json::to_vec(&json!({ "data": data })).expect("json"))
}

/// A JSON number that is a non-negative integer tus can store (at most
/// i64::MAX). `813.0` counts, as JSON Schema's `integer` says; an integral
/// float is taken only where it is exact (below 2^53).
pub(super) fn json_u64(n: &serde_json::Number) -> Option<u64> {
    let v = match n.as_u64() {
        Some(v) => v,
        None => {
            let f = n.as_f64()?;
            if !(f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0) {
                return None;
            }
            f as u64
        }
    };
    (v <= i64::MAX as u64).then_some(v)
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn query_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}
