//! `/v1/upload-tokens`: create, list, read and revoke upload tokens (`ut_…`),
//! the credential a backend hands to a browser so it can upload into the
//! project without the API key.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::assets::{json_object, json_u64, limits_fields, metadata_field};
use super::error::{ApiError, FieldError};
use super::json_response;
use crate::app::App;
use crate::asset::rfc3339;
use crate::auth::Caller;
use crate::http::Response;
use crate::tokens::{self, MAX_TOKEN_TTL, TokenRecord, TokenSpec};

const FIELDS: [&str; 7] = [
    "expires_in",
    "max_uploads",
    "max_size_bytes",
    "allowed_types",
    "max_duration_seconds",
    "metadata",
    "name",
];

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no upload token with this id exists in your project")
}

/// The token as JSON; `secret` only in the answer that creates it.
async fn view(app: &App, t: &TokenRecord, secret: Option<&str>) -> Value {
    let used = app.meta.token_uses(&t.token_id).await.unwrap_or(0);
    let state = if t.revoked_at.is_some() {
        "revoked"
    } else if t.expired() {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": t.token_id,
        "token": secret,
        "project_id": t.project_id,
        "state": state,
        "created_at": rfc3339(t.created_at),
        "expires_at": rfc3339(t.expires_at),
        "revoked_at": t.revoked_at.map(rfc3339),
        "max_uploads": t.max_uploads,
        "uploads_used": used,
        "max_size_bytes": t.max_size,
        "allowed_types": t.allowed_types.as_ref().map(|v| v.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
        "max_duration_seconds": t.max_duration,
        "metadata": t.metadata,
    })
}

pub async fn create(app: &App, caller: &Caller, req: Request<Incoming>) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let mut body = json_object(body).await?;
    let mut errors: Vec<FieldError> = body
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| {
            FieldError::new(
                k,
                "unknown",
                "unknown field; send expires_in, max_uploads, max_size_bytes, allowed_types, \
                 max_duration_seconds or metadata",
            )
        })
        .collect();
    body.remove("name"); // a label some clients send; not kept
    let ttl = match body.remove("expires_in") {
        None | Some(Value::Null) => app.cfg.upload_url_ttl,
        Some(Value::Number(n)) if json_u64(&n).is_some_and(|v| v >= 1 && v <= MAX_TOKEN_TTL.as_secs()) => {
            Duration::from_secs(json_u64(&n).expect("checked"))
        }
        Some(_) => {
            errors.push(FieldError::new(
                "expires_in",
                "invalid",
                format!("must be a number of seconds from 1 to {}", MAX_TOKEN_TTL.as_secs()),
            ));
            app.cfg.upload_url_ttl
        }
    };
    let max_uploads = match body.remove("max_uploads") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if json_u64(&n).is_some_and(|v| v >= 1) => json_u64(&n),
        Some(_) => {
            errors.push(FieldError::new("max_uploads", "invalid", "must be a positive integer"));
            None
        }
    };
    let limits = limits_fields(&mut body, &mut errors);
    let metadata = metadata_field(&mut body, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let spec = TokenSpec { ttl, max_uploads, limits, metadata };
    let (rec, secret) = tokens::create(&app.docs, &caller.project, caller.project_id, &spec)
        .await
        .map_err(crate::ports::StoreError::Io)?;
    app.tokens.insert(rec.clone());
    let mut out = view(app, &rec, Some(&secret)).await;
    let origin = super::assets::View::new(app, &parts.headers, &parts.uri).origin;
    out["upload_endpoint"] = Value::String(format!("{origin}{}", app.cfg.base_path));
    let mut resp = json_response(StatusCode::CREATED, serde_json::to_vec(&out).expect("json"));
    crate::http::set(
        resp.headers_mut(),
        http::header::LOCATION,
        format!("/v1/upload-tokens/{}", rec.token_id),
    );
    Ok(resp)
}

pub async fn list(app: &App, caller: &Caller) -> Result<Response, ApiError> {
    let mut data: Vec<Value> = Vec::new();
    for t in app.tokens.of_project(caller.project_id).iter() {
        data.push(view(app, t, None).await);
    }
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&json!({ "data": data })).expect("json")))
}

pub async fn get(app: &App, caller: &Caller, id: &str) -> Result<Response, ApiError> {
    let t = app.tokens.get(caller.project_id, id).filter(|t| t.revoked_at.is_none()).ok_or_else(not_found)?;
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&view(app, &t, None).await).expect("json")))
}

pub async fn revoke(app: &App, caller: &Caller, id: &str) -> Result<Response, ApiError> {
    if app.tokens.get(caller.project_id, id).is_none_or(|t| t.revoked_at.is_some()) {
        return Err(not_found());
    }
    let rec = tokens::revoke(&app.docs, id, Some(caller.project_id))
        .await
        .map_err(crate::ports::StoreError::Io)?
        .ok_or_else(not_found)?;
    app.tokens.insert(rec);
    let mut resp = http::Response::new(crate::http::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}
