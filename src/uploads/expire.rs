//! The expiration extension's sweeper: unfinished uploads untouched for
//! `--expire-after` are removed with their bytes; their URLs answer 410.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::ports::StoreError;
use crate::record::{Concat, GoneReason, Timestamp};

/// Tombstones (410 instead of 404) are kept this long.
const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn run(app: Arc<App>) {
    let period = (app.cfg.expire_after / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = app.shutdown.cancelled() => return,
        }
        match sweep_once(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "removed expired unfinished uploads"),
            Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
        }
    }
}

/// Held by the node sweeping: nodes sharing a database sweep one at a time.
const SWEEPER: uuid::Uuid = uuid::Uuid::from_u128(0x7475_736b_7377_6565_7065_7200_0000_0001);

/// One pass; returns how many uploads were removed.
pub async fn sweep_once(app: &Arc<App>) -> Result<usize, StoreError> {
    // Another node is sweeping: this one waits for its next turn.
    let Some(_turn) = app.locks.try_lock(SWEEPER).await else { return Ok(0) };
    let now = Timestamp::now();
    let expire_after = app.cfg.expire_after;
    let candidates = app.meta.take_expired(now, expire_after).await?;

    let mut removed = 0;
    for id in candidates {
        match expire_one(app, id, expire_after).await {
            Ok(gone) => removed += usize::from(gone),
            Err(e) => {
                // Taken from the queue already: filed again as due, so the
                // next pass retries it (and the rest of this pass goes on).
                tracing::error!(upload = %id, error = %e, "expiring an upload failed; retried next pass");
                let due = Timestamp(now.0.saturating_sub(expire_after.as_millis() as u64));
                app.meta.expire_later(due, id).await;
            }
        }
    }
    let before = Timestamp(now.0.saturating_sub(TOMBSTONE_TTL.as_millis() as u64));
    app.meta.prune_tombstones(before).await?;
    Ok(removed)
}

/// Removes `id` if it is still due and nobody works on it; true if removed.
async fn expire_one(
    app: &Arc<App>,
    id: uuid::Uuid,
    expire_after: std::time::Duration,
) -> Result<bool, StoreError> {
    // An upload someone is working on right now is not expired yet:
    // filed again, it is looked at in the next pass.
    let Some(_lock) = app.locks.try_lock(id).await else {
        if let Some(rec) = app.meta.get(id).await? {
            app.meta.expire_later(rec.updated_at, id).await;
        }
        return Ok(false);
    };
    let Some(rec) = app.meta.get(id).await? else { return Ok(false) };
    // A final upload waiting for its parts lives as long as they do: it
    // completes when the last one does, however long that takes.
    if let Concat::Final { parts, assembled: false, .. } = &rec.concat
        && any_exists(app, parts).await?
    {
        app.meta.expire_later(rec.updated_at, id).await;
        return Ok(false);
    }
    // Still due (else it was touched meanwhile and filed anew by `put`).
    if rec.expires_at(expire_after).is_some_and(|at| at <= Timestamp::now()) {
        crate::uploads::remove(app, id, GoneReason::Expired).await?;
        return Ok(true);
    }
    Ok(false)
}

async fn any_exists(app: &App, ids: &[uuid::Uuid]) -> Result<bool, StoreError> {
    for id in ids {
        if app.meta.get(*id).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
