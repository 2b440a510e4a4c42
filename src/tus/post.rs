//! POST: creation, creation-with-upload and creation-defer-length. Final
//! concatenations are handed to `concat`.

use std::sync::Arc;

use http::header::{HeaderName, LOCATION};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::error::TusError;
use super::headers::{self, ConcatRequest, DeclaredLength};
use super::patch::append_body;
use super::{concat, expires_header};
use crate::app::App;
use crate::asset::AssetInfo;
use crate::auth::Caller;
use crate::http::{Response, empty, set};
use crate::protocol::{self, Metadata};
use crate::record::Concat;
use crate::uploads::{self, NewUpload};

pub async fn create(app: &Arc<App>, caller: &Caller, req: Request<Incoming>) -> Result<Response, TusError> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    headers::check_version(h, false)?;
    let concat_req = headers::concat(h)?;
    let metadata = headers::metadata(h)?;
    // Only an offset stream is upload data; any other body is not a chunk (tusd ignores it too).
    let with_body = headers::is_offset_stream(h) && headers::has_body(h);
    if let Some(free) = app.bytes.short_of_space(app.cfg.min_free_space) {
        return Err(TusError::storage_full(format!(
            "{}; no upload was created, try again later",
            crate::ports::bytes::nearly_full(free, app.cfg.min_free_space)
        )));
    }

    if let Some(ConcatRequest::Final { urls, header }) = concat_req {
        return concat::create_final(app, caller, &parts, urls, header, metadata, with_body).await;
    }
    let length = match headers::declared_length(h)? {
        Some(DeclaredLength::Known(n)) => Some(n),
        Some(DeclaredLength::Deferred) => None,
        None => {
            return Err(TusError::bad_request(
                "ERR_INVALID_UPLOAD_LENGTH",
                "send Upload-Length with the size in bytes, or Upload-Defer-Length: 1 if it is not known yet",
            ));
        }
    };
    let role = match concat_req {
        Some(ConcatRequest::Partial) => Concat::Partial,
        _ => Concat::None,
    };

    let asset = match role {
        Concat::Partial => None, // pieces of a concatenation are not assets
        _ => Some(new_asset(metadata.as_ref().map(|m| &m.1))?),
    };
    let new = NewUpload {
        length,
        declared_type: metadata.as_ref().and_then(|m| protocol::declared_type(&m.1)),
        metadata: metadata.as_ref().map(|m| m.0.clone()),
        concat: role,
        asset,
        ..NewUpload::default()
    };
    let rec = uploads::create(app, caller, new).await?;
    let id = rec.id;
    let location = protocol::upload_url(app, h, &parts.uri, id);

    let rec = if with_body {
        // The upload exists now: any answer says where it is.
        let lock =
            app.locks.lock(id).await.map_err(|e| TusError::from(e).with_header(LOCATION, &location))?;
        // An unusable Upload-Checksum refuses the chunk, not the upload (tusd):
        // the upload exists at offset 0 and the answer says where.
        let result = match headers::checksum(h) {
            Ok(checksum) => append_body(app, rec.clone(), body, h, checksum, &lock).await,
            Err(e) => Err(e.with_offset(rec.offset)),
        };
        // The upload exists whatever happened to its first chunk: say where it is.
        app.meta.flush().await?;
        let rec = result.map_err(|e| e.with_header(LOCATION, &location))?;
        if rec.is_complete() {
            crate::uploads::on_complete(app, &rec).await;
        }
        rec
    } else {
        // Every 201 survives a crash right after it.
        app.meta.flush().await?;
        if rec.is_complete() {
            // An empty upload is complete at once; under its lock, so a
            // DELETE arriving meanwhile cannot be undone by processing.
            let _lock = app.locks.lock(id).await?;
            crate::uploads::on_complete(app, &rec).await;
        }
        rec
    };

    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    let rh = resp.headers_mut();
    set(rh, LOCATION, &location);
    set(rh, HeaderName::from_static(headers::UPLOAD_OFFSET), rec.offset);
    expires_header(rec.expires_at(app.cfg.expire_after), rh);
    Ok(resp)
}

/// The asset a tus creation makes (the metadata's name and language).
pub(super) fn new_asset(metadata: Option<&Metadata>) -> Result<AssetInfo, TusError> {
    protocol::new_asset(metadata).map_err(|m| TusError::bad_request("ERR_INVALID_LANGUAGE", m))
}
