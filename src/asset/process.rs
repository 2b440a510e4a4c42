//! Sniffing while bytes arrive, and processing once the last byte is stored.

use std::sync::Arc;

use uuid::Uuid;

use super::probe::{self, ProbeError};
use super::{AssetState, SNIFF_BYTES, sniff};
use crate::app::App;
use crate::store::{StoreError, UploadRecord};

/// Sniffs the asset's type once enough bytes are stored: one read of the
/// first 8 KiB, once per upload. The caller holds the upload's lock.
pub async fn sniff_if_due(app: &App, rec: &mut UploadRecord) -> Result<(), StoreError> {
    let due = rec.asset.as_ref().is_some_and(|a| a.sniffed.is_none())
        && (rec.offset.0 >= SNIFF_BYTES || rec.is_complete());
    if !due {
        return Ok(());
    }
    let path = app.store.file_path(rec.id);
    let len = rec.offset.0.min(SNIFF_BYTES) as usize;
    let prefix = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut buf = vec![0u8; len];
        if len > 0 {
            // An empty upload may have no file.
            std::fs::File::open(path)?.read_exact(&mut buf)?;
        }
        Ok(buf)
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
    if let Some(asset) = rec.asset.as_mut() {
        asset.sniffed = Some(sniff::sniff(&prefix));
    }
    app.store.put(rec)?;
    Ok(())
}

/// The upload just completed: move the asset to `processing` and measure it
/// in the background. The caller holds the upload's lock.
pub async fn start(app: &Arc<App>, rec: &UploadRecord) -> Result<(), StoreError> {
    let Some(mut rec) = app.store.get(rec.id)? else { return Ok(()) };
    if rec.asset.as_ref().is_none_or(|a| a.state != AssetState::PendingUpload) {
        return Ok(());
    }
    sniff_if_due(app, &mut rec).await?;
    if let Some(asset) = rec.asset.as_mut()
        && asset.transition(AssetState::Processing).is_ok()
    {
        app.store.put(&rec)?;
        app.store.flush().await?;
        app.events.emit(crate::events::Kind::Processing, &rec);
        tokio::spawn(run(app.clone(), rec.id));
    }
    Ok(())
}

/// Probes the media off the async runtime, then records `ready` or `failed`.
async fn run(app: Arc<App>, id: Uuid) {
    // Probing reads whole files; a few at a time keeps the disk for uploads.
    let _permit = app.probe_slots.acquire().await.expect("semaphore never closes");
    let Ok(Some(rec)) = app.store.get(id) else { return };
    let Some(sniffed) = rec.asset.as_ref().and_then(|a| a.sniffed.clone()) else { return };

    let outcome = match &app.cfg.allowed_types {
        Some(allowed) if !allowed.contains(&sniffed.kind) => Err(ProbeError {
            code: "type_not_allowed",
            message: format!(
                "this server accepts only {} uploads; these bytes are {} ({})",
                allowed.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
                sniffed.kind.as_str(),
                sniffed.content_type
            ),
        }),
        _ => {
            let path = app.store.file_path(id);
            let s = sniffed.clone();
            tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(|| probe::probe(&path, &s)).unwrap_or_else(|_| {
                    Err(ProbeError {
                        code: "media_unreadable",
                        message: "the media could not be parsed".into(),
                    })
                })
            })
            .await
            .unwrap_or_else(|e| Err(ProbeError { code: "processing_failed", message: e.to_string() }))
        }
    };

    let result = async {
        let _lock = app.locks.lock(id).await.map_err(|_| StoreError::Corrupt("lock timeout".into()))?;
        let Some(mut rec) = app.store.get(id)? else { return Ok(()) }; // deleted meanwhile
        let Some(asset) = rec.asset.as_mut() else { return Ok(()) };
        if asset.state != AssetState::Processing {
            return Ok(());
        }
        match &outcome {
            Ok(p) => {
                asset.duration_seconds = p.duration_seconds.clone();
                asset.width = p.width;
                asset.height = p.height;
                let _ = asset.transition(AssetState::Ready);
            }
            Err(e) => {
                let _ = asset.fail(e.code, e.message.clone());
            }
        }
        app.store.put(&rec)?;
        app.store.flush().await?;
        let kind = if outcome.is_ok() { crate::events::Kind::Ready } else { crate::events::Kind::Failed };
        app.events.emit(kind, &rec);
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(asset = %id, error = %e, "recording processing result failed; retried at next start");
    }
}

/// At start-up: finish what a restart interrupted.
pub async fn resume_all(app: &Arc<App>) {
    let store = app.store.clone();
    let todo = tokio::task::spawn_blocking(move || {
        store
            .records()
            .filter_map(Result::ok)
            .filter_map(|r| {
                let state = r.asset.as_ref()?.state;
                match state {
                    AssetState::Processing => Some((r.id, true)),
                    AssetState::PendingUpload if r.is_complete() => Some((r.id, false)),
                    _ => None,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (id, processing) in todo {
        if processing {
            tokio::spawn(run(app.clone(), id));
        } else if let Ok(lock) = app.locks.lock(id).await
            && let Ok(Some(rec)) = app.store.get(id)
        {
            if let Err(e) = start(app, &rec).await {
                tracing::error!(asset = %id, error = %e, "could not resume processing");
            }
            drop(lock);
        }
    }
}
