//! PATCH: append bytes at the upload's offset. The streaming itself lives in
//! `uploads::append`; this module applies the protocol rules around it.

use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use uuid::Uuid;

use super::error::TusError;
use super::headers::{self, UPLOAD_CHECKSUM, UPLOAD_LENGTH};
use super::{check_owner, expires_header, find};
use crate::app::App;
use crate::auth::Caller;
use crate::digest::ExpectedDigest;
use crate::http::{Response, empty, set};
use crate::ports::locks::UploadLock;
use crate::record::UploadRecord;
use crate::uploads::append::BodyEnd;
use crate::uploads::{self, AppendOptions, Appended};

pub async fn append(
    app: &Arc<App>,
    caller: &Caller,
    id: Uuid,
    req: Request<Incoming>,
) -> Result<Response, TusError> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    headers::check_version(h, false)?;
    if !headers::is_offset_stream(h) {
        return Err(TusError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ERR_INVALID_CONTENT_TYPE",
            "PATCH bodies must be sent with Content-Type: application/offset+octet-stream",
        ));
    }
    let offset = headers::upload_offset(h)?;
    let new_length = headers::parse_u64(h, UPLOAD_LENGTH)?;
    let checksum = headers::checksum(h)?;

    check_owner(app, caller, id).await?;
    let lock = app.locks.lock(id).await?;
    let rec = find(app, caller, id).await?;
    super::check_not_refused(rec.refused.as_ref())?;
    // Bytes removed from under the server are noticed before new ones go after them.
    let mut rec = crate::uploads::verified(app, rec).await?;
    if rec.is_final() {
        return Err(TusError::new(
            StatusCode::FORBIDDEN,
            "ERR_MODIFY_FINAL",
            "a final upload is made of its partial uploads and cannot be patched",
        ));
    }
    if offset != rec.offset {
        return Err(TusError::new(
            StatusCode::CONFLICT,
            "ERR_MISMATCHED_OFFSET",
            format!(
                "Upload-Offset {offset} does not match the upload's offset {}; HEAD it and resume from there",
                rec.offset
            ),
        )
        .with_offset(rec.offset));
    }
    let was_complete = rec.is_complete();
    if rec.awaiting_completion {
        // Created with the IETF draft, continued with tus 1.0: tus completes
        // the upload when its length is reached.
        rec.awaiting_completion = false;
        app.meta.put(&rec).await?;
    }
    if let Some(n) = new_length {
        match rec.length {
            None => {
                if n < rec.offset.0 {
                    return Err(TusError::bad_request(
                        "ERR_INVALID_UPLOAD_LENGTH",
                        format!("Upload-Length {n} is smaller than the {} bytes already stored", rec.offset),
                    )
                    .with_offset(rec.offset));
                }
                check_upload_size(app, &rec, n)?;
                rec.length = Some(n);
                app.meta.put(&rec).await?;
                app.meta.flush().await?;
            }
            // tus-js-client re-sends the length it declared on retries.
            Some(l) if l == n => {}
            Some(l) => {
                return Err(TusError::bad_request(
                    "ERR_INVALID_UPLOAD_LENGTH",
                    format!(
                        "Upload-Length {n} differs from the length {l} declared at creation; it cannot change"
                    ),
                )
                .with_offset(rec.offset));
            }
        }
    }

    let rec = append_body(app, rec, body, h, checksum, &lock).await?;
    if !was_complete && rec.is_complete() {
        crate::uploads::on_complete(app, &rec).await;
    }
    drop(lock);

    let mut resp = http::Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    set(resp.headers_mut(), HeaderName::from_static(headers::UPLOAD_OFFSET), rec.offset);
    expires_header(rec.expires_at(app.cfg.expire_after), resp.headers_mut());
    Ok(resp)
}

pub(super) fn check_max_size(app: &App, length: u64) -> Result<(), TusError> {
    match app.cfg.max_size {
        Some(max) if length > max => Err(TusError::too_large(format!(
            "the upload is {length} bytes, more than this server's limit of {max} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A length declared later (creation-defer-length) against every limit of the upload.
fn check_upload_size(app: &App, rec: &UploadRecord, length: u64) -> Result<(), TusError> {
    check_max_size(app, length)?;
    match crate::limits::for_upload(app, rec).limits.max_size {
        Some(max) if length > max => Err(TusError::too_large(format!(
            "the upload is {length} bytes, more than the limit of {max} bytes"
        ))
        .with_offset(rec.offset)),
        _ => Ok(()),
    }
}

/// Streams the request body into the upload (PATCH, and POST with
/// creation-with-upload), verifies a checksum if one was sent, and commits.
/// Errors carry the offset the upload is at afterwards.
pub(super) async fn append_body(
    app: &App,
    rec: UploadRecord,
    body: Incoming,
    h: &HeaderMap,
    checksum: Option<ExpectedDigest>,
    lock: &UploadLock,
) -> Result<UploadRecord, TusError> {
    let offset = rec.offset;
    let (room, limits) = uploads::room(app, &rec);
    if let Some(cl) = crate::protocol::content_length(h)
        && cl > room
    {
        let msg = match rec.length {
            Some(len) => {
                format!("{cl} more bytes at offset {offset} would exceed the upload's length of {len} bytes")
            }
            None => format!("{cl} more bytes at offset {offset} would exceed the upload's size limit"),
        };
        return Err(TusError::too_large(msg).with_offset(offset));
    }
    let trailer_announced = headers::checksum_trailer_announced(h);
    if trailer_announced && checksum.is_none() && !app.bytes.reads_unfinished() {
        return Err(TusError::bad_request(
            "ERR_CHECKSUM_TRAILER_UNSUPPORTED",
            "this server keeps upload bytes in object storage and cannot check a checksum sent as a \
             trailer; send Upload-Checksum as a header instead",
        )
        .with_offset(offset));
    }
    let opts = AppendOptions {
        checksum: checksum.as_ref().map(|c| c.algorithm),
        verify_before_commit: checksum.is_some() || trailer_announced,
    };
    let mut append = uploads::stream(app, rec, body, room, limits, opts, lock).await?;

    // checksum / checksum-trailer: the chunk is kept only if it verifies.
    let staged = &mut append.staged;
    let trailer = staged.trailers.as_ref().and_then(|t| t.get(UPLOAD_CHECKSUM)).cloned();
    let expected = match (checksum, trailer) {
        (Some(c), _) => Some(c),
        (None, Some(v)) => match headers::checksum_value(v.to_str().unwrap_or("")) {
            Ok(c) => Some(c),
            Err(e) => {
                let rec = append.discard().await?;
                return Err(e.with_offset(rec.offset));
            }
        },
        (None, None) if trailer_announced && staged.end == BodyEnd::Finished => {
            let rec = append.discard().await?;
            return Err(TusError::bad_request(
                "ERR_CHECKSUM_TRAILER_MISSING",
                "the request announced an Upload-Checksum trailer but did not send one; the chunk was discarded",
            )
            .with_offset(rec.offset));
        }
        (None, None) => None,
    };
    if let Some(expected) = expected {
        if append.staged.end != BodyEnd::Finished {
            let end = append.staged.end.clone();
            let rec = append.discard().await?;
            return Err(end_error(app, &end, 0, rec.length)
                .with_offset(rec.offset)
                .with_header(HeaderName::from_static("x-tusk-discarded"), "checksum-unverifiable"));
        }
        let digest = append.staged.digest(expected.algorithm).await?;
        if digest != expected.digest {
            let rec = append.discard().await?;
            return Err(TusError::new(
                StatusCode::from_u16(460).expect("460 is a valid status"),
                "ERR_CHECKSUM_MISMATCH",
                "the chunk's checksum does not match Upload-Checksum; it was discarded, resend it",
            )
            .with_offset(rec.offset));
        }
    }

    let Appended { rec, end, received, refusal } = append.commit(app).await?;
    if let Some(r) = refusal {
        return Err(TusError::from(r).with_offset(rec.offset));
    }
    if end == BodyEnd::Finished {
        return Ok(rec);
    }
    Err(end_error(app, &end, received, rec.length).with_offset(rec.offset))
}

/// The answer for a body that did not end normally. Whatever arrived was kept.
fn end_error(app: &App, end: &BodyEnd, received: u64, length: Option<u64>) -> TusError {
    match end {
        BodyEnd::Finished => unreachable!("a finished body is not an error"),
        BodyEnd::OverLimit => TusError::too_large(match length {
            Some(len) => format!(
                "the body runs past the upload's length of {len} bytes; the bytes up to it were stored"
            ),
            None => "the body runs past this server's size limit; the bytes up to it were stored".to_string(),
        }),
        BodyEnd::Broken(e) => TusError::bad_request(
            "ERR_BODY_INCOMPLETE",
            format!(
                "the request body ended early ({e}); {received} bytes were stored, resume from Upload-Offset"
            ),
        ),
        BodyEnd::TimedOut => TusError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ERR_READ_TIMEOUT",
            format!(
                "no data arrived for {:?}; {received} bytes were stored, resume from Upload-Offset",
                app.cfg.read_timeout
            ),
        ),
        BodyEnd::Interrupted if app.shutdown.is_cancelled() => TusError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ERR_SHUTTING_DOWN",
            format!("the server is restarting; {received} bytes were stored, resume from Upload-Offset"),
        ),
        BodyEnd::Interrupted => TusError::bad_request(
            "ERR_UPLOAD_INTERRUPTED",
            "a newer request for this upload took over; this one stopped after storing what it received",
        ),
        BodyEnd::StorageFailed(f) if f.full => {
            tracing::error!(error = %f.message, "storage full: upload bytes not stored");
            TusError::storage_full(format!(
                "the server's storage is full; {received} bytes were kept, resume from Upload-Offset later"
            ))
        }
        BodyEnd::QuotaReached | BodyEnd::TypeRefused => unreachable!("answered by append_body"),
        BodyEnd::ReserveReached { free } => TusError::storage_full(format!(
            "{}; {received} bytes were stored, resume from Upload-Offset later",
            crate::ports::bytes::nearly_full(*free, app.cfg.min_free_space)
        )),
        BodyEnd::StorageFailed(f) if f.unavailable => {
            tracing::error!(error = %f.message, "upload storage unreachable");
            TusError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_STORAGE_UNAVAILABLE",
                format!(
                    "the server's storage is unavailable right now (out of reach, refusing the server, or busy); {received} bytes were kept, resume \
                     from Upload-Offset in a moment"
                ),
            )
        }
        BodyEnd::StorageFailed(f) => {
            tracing::error!(error = %f.message, "writing upload bytes failed");
            TusError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STORAGE",
                format!("the server could not store the bytes; {received} bytes were kept, retry later"),
            )
        }
    }
}
