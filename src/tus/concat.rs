//! The concatenation extension: final uploads made of partial uploads,
//! including finals declared before their partials finish
//! (`concatenation-unfinished`).

use std::sync::Arc;

use http::header::{HeaderName, LOCATION};
use http::{StatusCode, request::Parts};
use uuid::Uuid;

use super::error::TusError;
use super::headers::{self, UPLOAD_DEFER_LENGTH, UPLOAD_LENGTH};
use super::{expires_header, find};
use crate::app::App;
use crate::auth::Caller;
use crate::http::{Response, empty, set};
use crate::ports::StoreError;
use crate::protocol::{self, Metadata};
use crate::record::Concat;
use crate::uploads::{self, NewUpload};

/// Most parts a final upload may list.
pub const MAX_PARTS: usize = 1000;

pub async fn create_final(
    app: &Arc<App>,
    caller: &Caller,
    parts: &Parts,
    urls: Vec<String>,
    header: String,
    metadata: Option<(String, Metadata)>,
    with_body: bool,
) -> Result<Response, TusError> {
    let h = &parts.headers;
    if with_body {
        return Err(TusError::new(
            StatusCode::FORBIDDEN,
            "ERR_MODIFY_FINAL",
            "a final upload is made of its partial uploads and cannot carry a body",
        ));
    }
    if h.contains_key(UPLOAD_LENGTH) || h.contains_key(UPLOAD_DEFER_LENGTH) {
        return Err(TusError::bad_request(
            "ERR_INVALID_CONCAT",
            "a final upload's length is the sum of its parts; do not send Upload-Length or Upload-Defer-Length",
        ));
    }
    if urls.len() > MAX_PARTS {
        return Err(TusError::bad_request(
            "ERR_INVALID_CONCAT",
            format!("a final upload has at most {MAX_PARTS} parts; this one lists {}", urls.len()),
        ));
    }
    let mut ids = Vec::with_capacity(urls.len());
    let mut seen = std::collections::HashSet::with_capacity(urls.len());
    let mut unknown_length = false;
    for url in &urls {
        let id = headers::id_from_url(url, &app.cfg.base_path).ok_or_else(|| {
            TusError::bad_request(
                "ERR_INVALID_CONCAT",
                format!("{url:?} is not an upload URL of this server"),
            )
        })?;
        // Each part once: a repeated part multiplies the bytes written
        // (3,000 copies of one part made one request write 187 MiB).
        if !seen.insert(id) {
            return Err(TusError::bad_request(
                "ERR_INVALID_CONCAT",
                format!("{url} is listed twice; a final upload uses each partial upload once"),
            ));
        }
        let part = find(app, caller, id).await?;
        if !part.is_partial() {
            return Err(TusError::bad_request(
                "ERR_INVALID_CONCAT",
                format!("{url} is not a partial upload (create it with Upload-Concat: partial)"),
            ));
        }
        unknown_length |= part.length.is_none();
        ids.push(id);
    }
    let length = total_length(app, &ids).await?;
    match (length, app.cfg.max_size) {
        (Some(_), _) => {} // checked with every other limit below
        (None, Some(max)) if unknown_length => {
            return Err(TusError::bad_request(
                "ERR_INVALID_CONCAT",
                format!(
                    "this server limits uploads to {max} bytes, so every partial upload's length must be known \
                     (declared, not deferred) before a final upload lists it"
                ),
            ));
        }
        _ => {}
    }
    if let Some(n) = length {
        uploads::concat::check_room(app, n)?;
    }

    let asset = super::post::new_asset(metadata.as_ref().map(|m| &m.1))?;
    let new = NewUpload {
        length,
        declared_type: metadata.as_ref().and_then(|m| protocol::declared_type(&m.1)),
        metadata: metadata.as_ref().map(|m| m.0.clone()),
        concat: Concat::Final { parts: ids, header, assembled: false },
        asset: Some(asset),
        ..NewUpload::default()
    };
    let mut rec = uploads::create(app, caller, new).await?;
    let id = rec.id;
    let _lock = app.locks.lock(id).await?;
    let assembled = match uploads::concat::assemble(app, &mut rec).await {
        Ok(done) => done,
        Err(e) => {
            // Retried when a part completes or at the next start, so the
            // final never lingers unassembled with nothing to finish it.
            app.meta.add_waiting_final(&rec).await?;
            app.meta.flush().await?;
            return Err(e.into());
        }
    };
    if !assembled {
        app.meta.add_waiting_final(&rec).await?;
    }
    app.meta.flush().await?;
    if assembled {
        uploads::on_upload_complete(app, &rec).await;
    }

    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    let rh = resp.headers_mut();
    set(rh, LOCATION, protocol::upload_url(app, h, &parts.uri, id));
    if assembled {
        set(rh, HeaderName::from_static(headers::UPLOAD_OFFSET), rec.offset);
    }
    expires_header(rec.expires_at(app.cfg.expire_after), rh);
    Ok(resp)
}

/// The sum of the parts' lengths, if every one is known.
pub async fn total_length(app: &App, parts: &[Uuid]) -> Result<Option<u64>, StoreError> {
    let mut total = 0u64;
    for id in parts {
        match app.meta.get(*id).await?.and_then(|p| p.length) {
            Some(n) => total = total.saturating_add(n),
            None => return Ok(None),
        }
    }
    Ok(Some(total))
}
