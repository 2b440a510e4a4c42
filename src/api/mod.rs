//! The `/v1` JSON API: assets, their signed downloads, the type catalogue
//! and the OpenAPI document.

pub mod assets;
pub mod error;
pub mod events;
pub mod upload_tokens;

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::app::App;
use crate::auth;
use crate::http::{Response, full};
use error::ApiError;

pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response {
    route(app, req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Result<Response, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();

    // Public: the signature (or nothing secret) is the credential.
    match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["v1", "assets", id, "content"]) => {
            let id = parse_id(id)?;
            return assets::content(&app, id, &req).await;
        }
        (&Method::GET, ["v1", "openapi.json"]) => return Ok(json_response(StatusCode::OK, OPENAPI.into())),
        (&Method::GET, ["v1", "asset-types"]) => return Ok(assets::types()),
        (_, ["v1", "assets", _, "content"] | ["v1", "openapi.json"] | ["v1", "asset-types"]) => {
            return Ok(method_not_allowed(&method, &path, &segments));
        }
        _ => {}
    }

    let caller = app.authenticate_api(req.headers()).await?;
    match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "assets"]) => assets::create(&app, &caller, req).await,
        (&Method::GET, ["v1", "assets"]) => assets::list(&app, &caller, &req).await,
        (&Method::GET, ["v1", "events"]) => events::stream(&app, &caller, &req),
        (&Method::GET, ["v1", "assets", id]) => {
            let id = parse_id(id)?;
            assets::get(&app, &caller, id, &req).await
        }
        (&Method::DELETE, ["v1", "assets", id]) => {
            let id = parse_id(id)?;
            assets::delete(&app, &caller, id).await
        }
        (&Method::POST, ["v1", "upload-tokens"]) => upload_tokens::create(&app, &caller, req).await,
        (&Method::GET, ["v1", "upload-tokens"]) => upload_tokens::list(&app, &caller).await,
        (&Method::GET, ["v1", "upload-tokens", id]) => upload_tokens::get(&app, &caller, id).await,
        (&Method::DELETE, ["v1", "upload-tokens", id]) => upload_tokens::revoke(&app, &caller, id).await,
        (&Method::GET, ["v1", "project"]) => Ok(project(&app, &caller)),
        (
            _,
            ["v1", "assets"]
            | ["v1", "assets", _]
            | ["v1", "events"]
            | ["v1", "upload-tokens"]
            | ["v1", "upload-tokens", _]
            | ["v1", "project"],
        ) => Ok(method_not_allowed(&method, &path, &segments)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no API endpoint at {path}"))),
    }
}

/// 405 with the `Allow` header RFC 9110 requires.
fn method_not_allowed(method: &Method, path: &str, segments: &[&str]) -> Response {
    let allow = match segments {
        ["v1", "assets"] => "GET, POST",
        ["v1", "assets", _] => "GET, DELETE",
        ["v1", "assets", _, "content"] => "GET, HEAD",
        ["v1", "upload-tokens"] => "GET, POST",
        ["v1", "upload-tokens", _] => "GET, DELETE",
        _ => "GET",
    };
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {path}; use {allow}"),
    )
    .into_response();
    resp.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The caller's project: its policy and what it stores.
fn project(app: &App, caller: &auth::Caller) -> Response {
    let limits = crate::limits::for_project(app, caller.project_id);
    let usage = app.usage.figures(caller.project_id);
    let body = serde_json::json!({
        "id": caller.project_id,
        "name": caller.project,
        "max_size_bytes": limits.limits.max_size,
        "allowed_types": limits.limits.allowed_types.as_ref().map(|v| v.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
        "max_duration_seconds": limits.limits.max_duration,
        "quota_bytes": limits.quota,
        "usage": usage,
    });
    json_response(StatusCode::OK, serde_json::to_vec(&body).expect("json"))
}

/// A malformed id names nothing: 404, like an unknown one.
fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(s).map_err(|_| ApiError::not_found())
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = http::Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
