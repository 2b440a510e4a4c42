//! Concatenation: a final upload's bytes are its parts', joined once every
//! part is complete (`concatenation-unfinished` lets a final wait for them).

use std::sync::Arc;

use uuid::Uuid;

use super::UploadError;
use crate::app::App;
use crate::ports::StoreError;
use crate::ports::bytes::Loc;
use crate::record::{Concat, Offset, Timestamp, UploadRecord};

/// Refused unless `bytes` fit with the free-space reserve to spare.
pub fn check_room(app: &App, bytes: u64) -> Result<(), UploadError> {
    let reserve = app.cfg.min_free_space;
    if reserve == 0 {
        return Ok(());
    }
    match app.bytes.free_space() {
        Some(Ok(free)) if free < bytes.saturating_add(reserve) => Err(UploadError::StorageFull(format!(
            "joining the parts needs {bytes} bytes, and the server has {free} free with {reserve} kept in \
             reserve; try again later"
        ))),
        _ => Ok(()),
    }
}

/// Joins the parts if all are complete. The caller holds the final's lock.
pub async fn assemble(app: &App, rec: &mut UploadRecord) -> Result<bool, UploadError> {
    let Concat::Final { parts, assembled, .. } = &rec.concat else { return Ok(false) };
    if *assembled {
        return Ok(true);
    }
    let mut pieces = Vec::with_capacity(parts.len());
    for id in parts {
        match app.meta.get(*id).await? {
            Some(p) if p.is_complete() => {
                // Finished when it completed; again here in case that failed
                // (a bucket away for a moment). One HEAD when it did not.
                super::complete::finish_bytes(app, &p).await?;
                pieces.push((*id, p.offset.0))
            }
            _ => return Ok(false), // unfinished (or removed: the final will expire)
        }
    }
    check_room(app, pieces.iter().map(|p| p.1).sum())?;
    let sha =
        app.bytes.concatenate(Loc::of(rec), pieces, app.cfg.min_free_space).await.map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::StorageFull => {
                    UploadError::StorageFull(format!("{e}; the parts were not joined, try again later"))
                }
                _ => StoreError::Io(e).into(),
            }
        })?;
    let total = sha.len();
    let before = rec.share();
    rec.length = Some(total);
    rec.offset = Offset(total);
    rec.sha256 = sha;
    rec.updated_at = Timestamp::now();
    if let Concat::Final { assembled, .. } = &mut rec.concat {
        *assembled = true;
    }
    app.meta.put(rec).await?;
    app.meta.remove_waiting_final(rec).await?;
    app.usage.moved(rec.project_id, before, rec.share());
    Ok(true)
}

/// The final's lock, waiting out a lock database that is away for up to a
/// minute (nothing else would assemble the final until a restart).
async fn lock_soon(app: &App, id: Uuid) -> Result<crate::ports::locks::UploadLock, UploadError> {
    for _ in 0..60 {
        match app.locks.lock(id).await {
            Ok(lock) => return Ok(lock),
            Err(crate::ports::locks::LockError::Busy) => return Err(UploadError::Busy),
            Err(crate::ports::locks::LockError::Unavailable) => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
        }
    }
    Err(UploadError::Busy)
}

/// A partial upload finished: assemble the finals that list it and are now
/// complete. `None` (at start-up): every waiting final, also filing each in
/// the by-part index again (data directories from before it existed).
pub async fn on_partial_complete(app: &Arc<App>, part: Option<Uuid>) {
    let waiting = match part {
        Some(part) => app.meta.finals_waiting_for(part).await,
        None => app.meta.waiting_finals().await,
    };
    let waiting = match waiting {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "listing waiting final uploads");
            return;
        }
    };
    for id in waiting {
        let result = async {
            let _lock = lock_soon(app, id).await?;
            let Some(mut rec) = app.meta.get(id).await? else {
                return Ok::<_, UploadError>(());
            };
            if assemble(app, &mut rec).await? {
                app.meta.flush().await?;
                super::on_upload_complete(app, &rec).await;
            } else if part.is_none() {
                app.meta.add_waiting_final(&rec).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(final_upload = %id, error = %e, "could not assemble final upload yet");
        }
    }
}
