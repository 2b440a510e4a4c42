//! HEAD: where does this upload stand?

use http::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::error::TusError;
use super::headers::{self, UPLOAD_CONCAT, UPLOAD_DEFER_LENGTH, UPLOAD_LENGTH, UPLOAD_OFFSET};
use super::{check_owner, concat, expires_header, find_status, visible};
use crate::app::App;
use crate::auth::Caller;
use crate::http::{Response, empty, set};
use crate::ports::meta::StatusRead;
use crate::record::Concat;

pub async fn offset(app: &App, caller: &Caller, id: Uuid, req: &HeaderMap) -> Result<Response, TusError> {
    headers::check_version(req, true)?;
    // Taking the lock stops a PATCH still running for this upload (a client
    // that reconnected), so the offset we report includes what it stored.
    // Where the database says nobody holds it, there is nothing to stop,
    // and nobody to wait behind: one round trip.
    let (rec, _lock) = match app.meta.status_unless_writing(id).await? {
        StatusRead::Settled(found) => (visible(app, caller, id, found.map(|s| (s.owner(), s))).await?, None),
        StatusRead::Writing => {
            check_owner(app, caller, id).await?;
            let lock = app.locks.lock(id).await?;
            (find_status(app, caller, id).await?, Some(lock))
        }
    };
    super::check_not_refused(rec.refused.as_ref())?;

    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match &rec.concat {
        Concat::Final { parts, header, assembled } => {
            set(h, HeaderName::from_static(UPLOAD_CONCAT), header);
            let length = match rec.length {
                Some(n) => Some(n),
                None => concat::total_length(app, parts).await?,
            };
            if let Some(n) = length {
                set(h, HeaderName::from_static(UPLOAD_LENGTH), n);
            }
            // Until the parts are joined, a final upload has no offset to report.
            if *assembled {
                set(h, HeaderName::from_static(UPLOAD_OFFSET), rec.offset);
            }
        }
        other => {
            if matches!(other, Concat::Partial) {
                h.insert(HeaderName::from_static(UPLOAD_CONCAT), HeaderValue::from_static("partial"));
            }
            set(h, HeaderName::from_static(UPLOAD_OFFSET), rec.offset);
            match rec.length {
                Some(n) => set(h, HeaderName::from_static(UPLOAD_LENGTH), n),
                None => {
                    h.insert(HeaderName::from_static(UPLOAD_DEFER_LENGTH), HeaderValue::from_static("1"));
                }
            }
        }
    }
    if let Some(meta) = &rec.metadata
        && !meta.is_empty()
    {
        set(h, HeaderName::from_static(crate::protocol::UPLOAD_METADATA), meta);
    }
    expires_header(rec.expires_at(app.cfg.expire_after), h);
    Ok(resp)
}
