//! The IETF "Resumable Uploads for HTTP" draft (interop versions 5, 6 and 8:
//! drafts -03, -05 and -09..-11), served beside tus 1.0 on the same URLs,
//! storage, locks and assets. A request speaks the draft when it carries
//! `Upload-Draft-Interop-Version`.
//!
//! hyper 1.x cannot send `104 Upload Resumption Supported`, so the upload URL
//! reaches the client in the final response only (the draft makes 104 optional).

mod problem;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, HeaderName, HeaderValue, LOCATION};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::app::App;
use crate::auth::{Caller, Grant};
use crate::digest::Algorithm;
use crate::http::{Response, empty, header_str, media_type, set};
use crate::record::UploadRecord;
use crate::uploads::append::BodyEnd;
use problem::Problem;

pub const INTEROP_HEADER: &str = "upload-draft-interop-version";
const PARTIAL_UPLOAD: &str = "application/partial-upload";

/// The draft versions we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interop {
    /// draft-03 (tus-js-client `ietf-draft-03`)
    V5,
    /// draft-04/-05 (tus-js-client `ietf-draft-05`)
    V6,
    /// drafts -09 to -11
    V8,
}

impl Interop {
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Interop, String>> {
        let raw = headers.get(INTEROP_HEADER)?;
        Some(match raw.to_str().map(str::trim) {
            Ok("5") => Ok(Interop::V5),
            Ok("6") => Ok(Interop::V6),
            Ok("8") => Ok(Interop::V8),
            _ => Err(format!(
                "Upload-Draft-Interop-Version {:?} is not supported; this server speaks 5 (draft-03), \
                 6 (draft-05) and 8 (drafts -09 to -11)",
                String::from_utf8_lossy(raw.as_bytes())
            )),
        })
    }

    fn number(self) -> &'static str {
        match self {
            Interop::V5 => "5",
            Interop::V6 => "6",
            Interop::V8 => "8",
        }
    }

    /// Appends must be `application/partial-upload` from draft-04 on.
    fn requires_partial_upload_type(self) -> bool {
        self != Interop::V5
    }
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response {
    let v = match Interop::from_headers(req.headers()) {
        Some(Ok(v)) => v,
        Some(Err(message)) => {
            return Problem::new(StatusCode::BAD_REQUEST, "unsupported interop version", message)
                .into_response();
        }
        None => unreachable!("routed here because the header is present"),
    };
    let caller = req.extensions().get::<Caller>().cloned().expect("authenticated before routing");
    let path = req.uri().path();
    let target = match path.strip_prefix(app.cfg.base_path.as_str()) {
        None | Some("") => None,
        Some(tail) => match Uuid::try_parse(tail) {
            Ok(id) => Some(id),
            Err(_) => return Problem::not_found().into_response(),
        },
    };
    let method = req.method().clone();
    let allowed = matches!(
        (&caller.grant, &method, target),
        (Grant::Key, _, _)
            | (_, &Method::HEAD | &Method::PATCH | &Method::DELETE, Some(_))
            | (Grant::Token(_), &Method::POST, None)
    );
    if !allowed {
        let mut resp = Problem::from(crate::limits::Refusal::Forbidden(
            "an upload URL allows only HEAD, PATCH and DELETE of its upload; an upload token also creating uploads"
                .into(),
        ))
        .into_response();
        resp.headers_mut()
            .insert(HeaderName::from_static(INTEROP_HEADER), HeaderValue::from_static(v.number()));
        return resp;
    }
    let result = match (&method, target) {
        (&Method::POST, None) => create(&app, &caller, v, req).await,
        (&Method::HEAD, Some(id)) => offset(&app, &caller, v, id, req.headers()).await,
        (&Method::PATCH, Some(id)) => append(&app, &caller, v, id, req).await,
        (&Method::DELETE, Some(id)) => cancel(&app, &caller, v, id, req.headers()).await,
        _ => Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            format!("{method} is not part of the resumable upload protocol here"),
        )),
    };
    let mut resp = result.unwrap_or_else(Problem::into_response);
    if method == Method::HEAD {
        *resp.body_mut() = empty();
    }
    resp.headers_mut().insert(HeaderName::from_static(INTEROP_HEADER), HeaderValue::from_static(v.number()));
    resp
}

/// `Upload-Complete` as a structured boolean (`?1` / `?0`).
pub fn upload_complete(h: &HeaderMap) -> Result<Option<bool>, Problem> {
    match header_str(h, "upload-complete") {
        None => Ok(None),
        Some("?1") => Ok(Some(true)),
        Some("?0") => Ok(Some(false)),
        Some(other) => Err(Problem::bad_request(format!("Upload-Complete must be ?0 or ?1, got {other:?}"))),
    }
}

fn number(h: &HeaderMap, name: &'static str) -> Result<Option<u64>, Problem> {
    crate::protocol::parse_u64(h, name).map_err(Problem::bad_request)
}

/// `Content-Length`, which the draft may take as the upload's length: capped
/// like every tus length (i64), so it cannot declare a length no offset reaches.
fn body_length(h: &HeaderMap) -> Result<Option<u64>, Problem> {
    match crate::protocol::content_length(h) {
        Some(n) if n > i64::MAX as u64 => Err(Problem::bad_request(format!(
            "Content-Length {n} is more than the largest upload length ({} bytes)",
            i64::MAX
        ))),
        other => Ok(other),
    }
}

/// Checked before an upload's lock is taken (and again after): taking it
/// interrupts the request holding it, which only its own project may cause.
async fn check_owner(app: &App, caller: &Caller, id: Uuid) -> Result<(), Problem> {
    match app.meta.owner(id).await? {
        Some(owner) if caller.may_use(id, &owner) => Ok(()),
        _ => Err(Problem::not_found()),
    }
}

async fn find(app: &App, caller: &Caller, id: Uuid) -> Result<UploadRecord, Problem> {
    match app.meta.get(id).await? {
        Some(rec) if caller.may_use(id, &rec.owner()) && !rec.is_final() => match &rec.refused {
            Some(why) => Err(Problem::from(crate::limits::Refusal::TypeNotAllowed(why.clone()))),
            None => Ok(rec),
        },
        _ => Err(Problem::not_found()),
    }
}

/// Headers describing where an upload stands.
fn state_headers(app: &App, v: Interop, rec: &UploadRecord, h: &mut HeaderMap, req: &HeaderMap) {
    set(h, HeaderName::from_static("upload-offset"), rec.offset);
    let complete = if rec.is_complete() { "?1" } else { "?0" };
    h.insert(HeaderName::from_static("upload-complete"), HeaderValue::from_static(complete));
    if let Some(n) = rec.length {
        set(h, HeaderName::from_static("upload-length"), n);
    }
    set(
        h,
        HeaderName::from_static("upload-limit"),
        crate::protocol::upload_limit(app, matches!(v, Interop::V5 | Interop::V6)),
    );
    // RFC 9530: the digest of the whole upload, once there is one.
    if rec.is_complete() && req.contains_key("want-repr-digest") {
        let digest = STANDARD.encode(rec.sha256.finalize());
        set(h, HeaderName::from_static("repr-digest"), format!("sha-256=:{digest}:"));
    }
}

async fn create(
    app: &Arc<App>,
    caller: &Caller,
    v: Interop,
    req: Request<Incoming>,
) -> Result<Response, Problem> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if let Some(free) = app.bytes.short_of_space(app.cfg.min_free_space) {
        return Err(Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage full",
            format!("{}; try again later", crate::ports::bytes::nearly_full(free, app.cfg.min_free_space)),
        ));
    }
    let complete = upload_complete(h)?.ok_or_else(|| {
        Problem::bad_request(
            "creating a resumable upload needs Upload-Complete: ?0 (more to come) or ?1 (this is all)",
        )
    })?;
    let declared = number(h, "upload-length")?;
    let content_length = body_length(h)?;
    let length = match (declared, complete, content_length) {
        (Some(d), true, Some(cl)) if d != cl => {
            return Err(Problem::inconsistent_length(format!(
                "Upload-Length {d} differs from the {cl} bytes of this complete upload"
            )));
        }
        (Some(d), _, _) => Some(d),
        (None, true, Some(cl)) => Some(cl),
        _ => None,
    };
    let digest = content_digest(h)?;
    let metadata = metadata_from_headers(h)?;
    let asset = crate::protocol::new_asset(metadata.as_ref().map(|m| &m.1)).map_err(Problem::bad_request)?;
    // The draft's creation body is the representation: its Content-Type
    // (unless it names the upload protocol) is the file's type.
    let content_type = crate::http::media_type(h).filter(|t| t != PARTIAL_UPLOAD);
    let declared = content_type
        .as_deref()
        .or_else(|| metadata.as_ref().and_then(|m| crate::protocol::declared_type(&m.1)));
    let new = crate::uploads::NewUpload {
        length,
        declared_type: declared,
        metadata: metadata.as_ref().map(|m| m.0.clone()),
        asset: Some(asset),
        awaiting_completion: true,
        ..Default::default()
    };
    let rec = crate::uploads::create(app, caller, new).await?;
    let id = rec.id;
    let location = crate::protocol::upload_url(app, h, &parts.uri, id);

    let lock = app.locks.lock(id).await.map_err(Problem::from_lock)?;
    let result = write(app, rec, body, h, complete, digest, &lock).await;
    app.meta.flush().await?;
    let rec = result.map_err(|p| p.with_header(LOCATION, &location))?;
    if rec.is_complete() {
        crate::uploads::on_complete(app, &rec).await;
    }
    drop(lock);

    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    let rh = resp.headers_mut();
    set(rh, LOCATION, &location);
    state_headers(app, v, &rec, rh, h);
    Ok(resp)
}

async fn offset(
    app: &App,
    caller: &Caller,
    v: Interop,
    id: Uuid,
    h: &HeaderMap,
) -> Result<Response, Problem> {
    if v != Interop::V5
        && ["upload-offset", "upload-complete", "upload-length"].iter().any(|n| h.contains_key(*n))
    {
        return Err(Problem::bad_request(
            "an offset retrieval must not carry Upload-Offset, Upload-Complete or Upload-Length",
        ));
    }
    // Stops an append still running for this upload (the client reconnected).
    check_owner(app, caller, id).await?;
    let _lock = app.locks.lock(id).await.map_err(Problem::from_lock)?;
    let rec = find(app, caller, id).await?;
    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let rh = resp.headers_mut();
    rh.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    state_headers(app, v, &rec, rh, h);
    Ok(resp)
}

async fn append(
    app: &Arc<App>,
    caller: &Caller,
    v: Interop,
    id: Uuid,
    req: Request<Incoming>,
) -> Result<Response, Problem> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if v.requires_partial_upload_type() && media_type(h).as_deref() != Some(PARTIAL_UPLOAD) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            "appends must be sent with Content-Type: application/partial-upload",
        ));
    }
    let offset =
        number(h, "upload-offset")?.ok_or_else(|| Problem::bad_request("missing Upload-Offset header"))?;
    let complete =
        upload_complete(h)?.ok_or_else(|| Problem::bad_request("missing Upload-Complete header"))?;
    let declared = number(h, "upload-length")?;
    let digest = content_digest(h)?;

    check_owner(app, caller, id).await?;
    let lock = app.locks.lock(id).await.map_err(Problem::from_lock)?;
    let rec = find(app, caller, id).await?;
    // Bytes removed from under the server are noticed before new ones go after them.
    let mut rec = crate::uploads::verified(app, rec).await?;
    if rec.is_complete() {
        return Err(Problem::completed(rec.offset.0));
    }
    if offset != rec.offset.0 {
        return Err(Problem::mismatch(rec.offset.0, offset));
    }
    let cl = body_length(h)?;
    let implied = match (complete, cl) {
        (true, Some(cl)) => Some(offset + cl),
        _ => None,
    };
    for candidate in [declared, implied].into_iter().flatten() {
        match rec.length {
            Some(l) if l != candidate => {
                return Err(Problem::inconsistent_length(format!(
                    "the upload's length is {l} bytes; this request implies {candidate}"
                )));
            }
            Some(_) => {}
            None => {
                if candidate < rec.offset.0 {
                    return Err(Problem::inconsistent_length(format!(
                        "length {candidate} is smaller than the {} bytes already stored",
                        rec.offset
                    )));
                }
                rec.length = Some(candidate);
                app.meta.put(&rec).await?;
            }
        }
    }
    let was_complete = rec.is_complete();
    let rec = write(app, rec, body, h, complete, digest, &lock).await?;
    if !was_complete && rec.is_complete() {
        crate::uploads::on_complete(app, &rec).await;
    }
    drop(lock);
    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    state_headers(app, v, &rec, resp.headers_mut(), h);
    Ok(resp)
}

async fn cancel(
    app: &App,
    caller: &Caller,
    v: Interop,
    id: Uuid,
    h: &HeaderMap,
) -> Result<Response, Problem> {
    if v == Interop::V6 && (h.contains_key("upload-offset") || h.contains_key("upload-complete")) {
        return Err(Problem::bad_request("a cancellation must not carry Upload-Offset or Upload-Complete"));
    }
    check_owner(app, caller, id).await?;
    let _lock = app.locks.lock(id).await.map_err(Problem::from_lock)?;
    find(app, caller, id).await?;
    crate::uploads::remove(app, id, crate::record::GoneReason::Terminated).await?;
    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Streams the body in, verifies `Content-Digest`, commits, and applies
/// `Upload-Complete`. Bytes of a cut body are kept; only `?1` with the whole
/// body completes the upload.
async fn write(
    app: &Arc<App>,
    rec: UploadRecord,
    body: Incoming,
    h: &HeaderMap,
    complete: bool,
    digest: Option<(Algorithm, Vec<u8>)>,
    lock: &crate::ports::locks::UploadLock,
) -> Result<UploadRecord, Problem> {
    let start = rec.offset.0;
    let (room, limits) = crate::uploads::room(app, &rec);
    if let Some(cl) = crate::protocol::content_length(h)
        && cl > room
    {
        return Err(Problem::inconsistent_length(format!(
            "{cl} bytes at offset {start} run past the upload's length"
        )));
    }
    let opts = crate::uploads::AppendOptions {
        checksum: digest.as_ref().map(|d| d.0),
        verify_before_commit: digest.is_some(),
    };
    let mut append = crate::uploads::stream(app, rec, body, room, limits, opts, lock).await?;
    if let Some((alg, expected)) = digest {
        if append.staged.end != BodyEnd::Finished {
            append.discard().await?;
            return Err(Problem::bad_request(
                "the body ended before it could be checked against Content-Digest; nothing was stored",
            ));
        }
        if append.staged.digest(alg).await? != expected {
            let rec = append.discard().await?;
            return Err(Problem::digest_mismatch(rec.offset.0));
        }
    }
    let crate::uploads::Appended { mut rec, end, refusal, .. } = append.commit(app).await?;
    if let Some(r) = refusal {
        return Err(Problem::from(r).with_offset(rec.offset.0));
    }
    match end {
        BodyEnd::Finished => {}
        BodyEnd::OverLimit => {
            return Err(Problem::inconsistent_length("the body runs past the upload's length".to_string())
                .with_offset(rec.offset.0));
        }
        BodyEnd::Interrupted if !app.shutdown.is_cancelled() => {
            return Err(
                Problem::bad_request("a newer request for this upload took over").with_offset(rec.offset.0)
            );
        }
        BodyEnd::ReserveReached { free } => {
            return Err(Problem::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage full",
                format!(
                    "{}; {} bytes are stored, resume from there later",
                    crate::ports::bytes::nearly_full(free, app.cfg.min_free_space),
                    rec.offset
                ),
            )
            .with_offset(rec.offset.0));
        }
        BodyEnd::StorageFailed(f) => {
            tracing::error!(error = %f.message, "writing upload bytes failed");
            let (status, title, detail) = if f.full {
                (
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage full",
                    "the server's storage is full; resume later",
                )
            } else if f.unavailable {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage unavailable",
                    "the server's storage is unavailable right now (out of reach, refusing the server, or busy); resume in a moment",
                )
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage failure", "the bytes could not be stored")
            };
            return Err(Problem::new(status, title, detail).with_offset(rec.offset.0));
        }
        _ => {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upload interrupted",
                format!("the body did not arrive whole; {} bytes are stored, resume from there", rec.offset),
            )
            .with_offset(rec.offset.0));
        }
    }
    if complete {
        if rec.length.is_some_and(|l| l != rec.offset.0) {
            return Err(Problem::inconsistent_length(format!(
                "Upload-Complete: ?1 but only {} of {} bytes are stored",
                rec.offset,
                rec.length.unwrap_or_default()
            ))
            .with_offset(rec.offset.0));
        }
        rec.length = Some(rec.offset.0);
        rec.awaiting_completion = false;
        app.meta.put(&rec).await?;
        app.meta.flush().await?;
    }
    Ok(rec)
}

/// `Content-Digest` (RFC 9530): the first sha-256 or sha-512 member.
pub fn content_digest(h: &HeaderMap) -> Result<Option<(Algorithm, Vec<u8>)>, Problem> {
    let Some(raw) = header_str(h, "content-digest") else { return Ok(None) };
    let mut found = None;
    for member in raw.split(',') {
        let Some((name, value)) = member.trim().split_once('=') else { continue };
        let alg = match name.trim() {
            "sha-256" => Algorithm::Sha256,
            "sha-512" => Algorithm::Sha512,
            _ => continue,
        };
        let b64 = value.trim().strip_prefix(':').and_then(|v| v.strip_suffix(':')).ok_or_else(|| {
            Problem::bad_request(format!("Content-Digest {name} must be a byte sequence like :base64:"))
        })?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| Problem::bad_request(format!("Content-Digest {name} is not valid base64")))?;
        if found.is_none() || alg == Algorithm::Sha256 {
            found = Some((alg, bytes));
        }
    }
    Ok(found)
}

/// Metadata for a draft upload: tus `Upload-Metadata` if the client sent it
/// (tus-js-client does), plus `filetype` from `Content-Type` and `filename`
/// from `Content-Disposition`, as tusd maps them.
fn metadata_from_headers(h: &HeaderMap) -> Result<Option<(String, crate::protocol::Metadata)>, Problem> {
    let mut meta = crate::protocol::metadata(h).map_err(Problem::bad_request)?.map(|m| m.1);
    let mut add = |k: &str, v: &str| {
        let m = meta.get_or_insert_with(Default::default);
        if m.get(k).is_none() {
            m.0.push((k.to_string(), v.as_bytes().to_vec()));
        }
    };
    if let Some(ct) = media_type(h)
        && ct != PARTIAL_UPLOAD
        && ct != crate::protocol::OFFSET_STREAM
    {
        add("filetype", &ct);
    }
    if let Some(cd) = header_str(h, CONTENT_DISPOSITION)
        && let Some(name) = disposition_filename(cd)
    {
        add("filename", &name);
    }
    let Some(m) = meta else { return Ok(None) };
    let raw = m.0.iter().map(|(k, v)| format!("{k} {}", STANDARD.encode(v))).collect::<Vec<_>>().join(",");
    // The name from Content-Disposition counts toward the same bound.
    let max = crate::protocol::MAX_METADATA_BYTES;
    if raw.len() > max {
        return Err(Problem::bad_request(format!(
            "the upload's metadata (Upload-Metadata, Content-Type and the Content-Disposition filename) \
             takes {} bytes encoded; this server accepts at most {max}",
            raw.len()
        )));
    }
    Ok(Some((raw, m)))
}

pub fn disposition_filename(cd: &str) -> Option<String> {
    let mut plain = None;
    for param in cd.split(';').skip(1) {
        let Some((k, v)) = param.trim().split_once('=') else { continue };
        match k.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let v = v.trim();
                let encoded = v.strip_prefix("UTF-8''").or_else(|| v.strip_prefix("utf-8''"))?;
                return Some(percent_encoding::percent_decode_str(encoded).decode_utf8_lossy().into_owned());
            }
            "filename" => plain = Some(v.trim().trim_matches('"').to_string()),
            _ => {}
        }
    }
    plain
}
