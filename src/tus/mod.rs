//! tus 1.0.0: core protocol and the creation, creation-with-upload,
//! creation-defer-length, expiration, checksum, checksum-trailer,
//! termination and concatenation extensions. One module per request kind.

mod concat;
mod delete;
pub mod error;
mod get;
mod head;
pub mod headers;
mod patch;
mod post;

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::app::App;
use crate::auth::{Caller, Grant};
use crate::digest::Algorithm;
use crate::http::{Response, empty, set};
use crate::record::{Owner, Timestamp, UploadRecord, UploadStatus};
use error::TusError;
use headers::TUS_VERSION;

pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,expiration,checksum,\
checksum-trailer,termination,concatenation,concatenation-unfinished";
/// Without `checksum-trailer`: a trailer names its algorithm after the
/// body, when a store that cannot read unfinished bytes back (a bucket)
/// has nothing left to hash.
const EXTENSIONS_WITHOUT_TRAILER: &str = "creation,creation-with-upload,creation-defer-length,expiration,\
checksum,termination,concatenation,concatenation-unfinished";

/// What this server's storage lets it offer.
pub fn extensions(app: &App) -> &'static str {
    if app.bytes.reads_unfinished() { EXTENSIONS } else { EXTENSIONS_WITHOUT_TRAILER }
}

/// What the request addresses below the base path.
enum Target {
    Collection,
    Upload(Uuid),
    Invalid,
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response {
    let target = {
        let path = req.uri().path();
        let base = app.cfg.base_path.as_str();
        match path.strip_prefix(base) {
            None | Some("") => Target::Collection,
            // An id that does not parse is a 404, never a path on disk.
            Some(tail) => Uuid::try_parse(tail).map(Target::Upload).unwrap_or(Target::Invalid),
        }
    };
    // tus-js-client's `overridePatchMethod` tunnels PATCH (and DELETE) through
    // POST; honoured on POST only, like tusd, so GETs cannot be turned into writes.
    let mut method = req.method().clone();
    if method == Method::POST
        && let Some(m) = crate::http::header_str(req.headers(), "x-http-method-override")
        && let Ok(m) = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
    {
        method = m;
    }
    let is_head = method == Method::HEAD;
    // `App::route` authenticated the request and left the caller here.
    let caller = req.extensions().get::<Caller>().cloned().expect("authenticated before routing");

    if let Err(e) = check_grant(&caller, &method, &target) {
        let mut resp = e.into_response(is_head);
        resp.headers_mut()
            .insert(HeaderName::from_static("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
        return resp;
    }
    let result = match (&method, target) {
        (&Method::OPTIONS, _) => Ok(options(&app)),
        (_, Target::Invalid) => Err(TusError::not_found()),
        (&Method::POST, Target::Collection) => post::create(&app, &caller, req).await,
        (&Method::HEAD, Target::Upload(id)) => head::offset(&app, &caller, id, req.headers()).await,
        (&Method::PATCH, Target::Upload(id)) => patch::append(&app, &caller, id, req).await,
        (&Method::DELETE, Target::Upload(id)) => delete::terminate(&app, &caller, id, req.headers()).await,
        (&Method::GET, Target::Upload(id)) => get::download(&app, &caller, id, req.headers()).await,
        _ => Err(TusError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ERR_METHOD_NOT_ALLOWED",
            format!("{method} is not allowed here"),
        )),
    };
    let mut resp = result.unwrap_or_else(|e| e.into_response(is_head));
    let h = resp.headers_mut();
    h.insert(HeaderName::from_static("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// OPTIONS: protocol discovery. Never checks `Tus-Resumable` (the spec says so).
pub fn options(app: &App) -> Response {
    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(HeaderName::from_static("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
    h.insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(TUS_VERSION));
    h.insert(HeaderName::from_static("tus-extension"), HeaderValue::from_static(extensions(app)));
    h.insert(
        HeaderName::from_static("tus-checksum-algorithm"),
        HeaderValue::from_static(Algorithm::TUS_LIST),
    );
    if let Some(max) = app.cfg.max_size {
        set(h, HeaderName::from_static("tus-max-size"), max);
    }
    // The IETF draft's discovery, on the same endpoint.
    set(h, HeaderName::from_static("upload-limit"), crate::protocol::upload_limit(app, false));
    h.insert(HeaderName::from_static("accept-patch"), HeaderValue::from_static("application/partial-upload"));
    resp
}

/// Looks an upload up, telling 410 (expired or terminated) from 404. Another
/// project's upload, or one the caller's token or URL is not for, is a 404:
/// ids are not confirmed to outsiders.
async fn find(app: &App, caller: &Caller, id: Uuid) -> Result<UploadRecord, TusError> {
    let rec = app.meta.get(id).await?;
    visible(app, caller, id, rec.map(|r| (r.owner(), r))).await
}

/// As `find`, reading only what HEAD answers from.
async fn find_status(app: &App, caller: &Caller, id: Uuid) -> Result<UploadStatus, TusError> {
    let status = app.meta.status(id).await?;
    visible(app, caller, id, status.map(|s| (s.owner(), s))).await
}

/// As `find`, reading only the owner: called before an upload's lock is
/// taken, because taking it interrupts the request holding it, which only
/// those who may use the upload may cause.
async fn check_owner(app: &App, caller: &Caller, id: Uuid) -> Result<(), TusError> {
    let owner = app.meta.owner(id).await?;
    visible(app, caller, id, owner.map(|o| (o, ()))).await
}

/// The upload if the caller may use it; 404 for anyone else's (removed or
/// not), 410 for one of its own that was removed.
pub(super) async fn visible<T>(
    app: &App,
    caller: &Caller,
    id: Uuid,
    found: Option<(Owner, T)>,
) -> Result<T, TusError> {
    if let Some((owner, found)) = found {
        if !caller.may_use(id, &owner) {
            return Err(TusError::not_found());
        }
        return Ok(found);
    }
    let gone_to_caller = |stone: &crate::record::Tombstone| {
        stone.project_id == Some(caller.project_id)
            && match &caller.grant {
                Grant::Key => true,
                Grant::Upload(u) => *u == id,
                Grant::Token(_) => false, // tombstones do not say which token
            }
    };
    match app.meta.tombstone(id).await? {
        Some(stone) if gone_to_caller(&stone) => Err(TusError::gone(stone.reason)),
        _ => Err(TusError::not_found()),
    }
}

/// An upload whose bytes were refused (a type not allowed) answers every
/// request with why, until it is deleted.
fn check_not_refused(refused: Option<&String>) -> Result<(), TusError> {
    match refused {
        Some(why) => {
            Err(TusError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "ERR_TYPE_NOT_ALLOWED", why.clone()))
        }
        None => Ok(()),
    }
}

/// What a scoped credential may not do here: 403 before anything is read.
fn check_grant(caller: &Caller, method: &Method, target: &Target) -> Result<(), TusError> {
    let forbidden = |m: &str| TusError::new(StatusCode::FORBIDDEN, "ERR_FORBIDDEN", m.to_string());
    match (&caller.grant, method, target) {
        (Grant::Key, _, _) => Ok(()),
        (_, &Method::HEAD | &Method::PATCH | &Method::DELETE, Target::Upload(_)) => Ok(()),
        (Grant::Token(_), &Method::POST, Target::Collection) => Ok(()),
        (Grant::Upload(_), _, _) => {
            Err(forbidden("an upload URL allows only HEAD, PATCH and DELETE of its own upload"))
        }
        (Grant::Token(_), _, _) => Err(forbidden(
            "an upload token allows only creating uploads (POST) and HEAD, PATCH and DELETE of its own uploads",
        )),
    }
}

/// `Upload-Expires` while the upload can still expire (`expires_at` of its record).
fn expires_header(expires_at: Option<Timestamp>, headers: &mut http::HeaderMap) {
    if let Some(at) = expires_at {
        set(headers, HeaderName::from_static(headers::UPLOAD_EXPIRES), at.http_date());
    }
}
