//! What happens as an upload's bytes arrive and when its last byte is stored.

use std::sync::Arc;

use crate::app::App;
use crate::uploads::process;

use crate::ports::StoreError;
use crate::ports::bytes::Loc;
use crate::record::UploadRecord;
use crate::usage::Share;

/// After every commit of new bytes (the caller holds the upload's lock).
/// `Some(reason)`: the upload's type is not allowed, and it was refused.
pub async fn after_commit(
    app: &App,
    rec: &mut UploadRecord,
    limits: &crate::limits::Effective,
) -> Result<Option<String>, StoreError> {
    if let Some(why) = process::check_type(app, rec, limits).await? {
        return Ok(Some(why));
    }
    app.events.progress(rec);
    Ok(None)
}

/// Makes the upload's bytes one readable whole in the byte store, with the
/// type sniffed so far (a bucket joins its parts here; safe to repeat, and
/// processing repeats it once the type is known).
pub async fn finish_bytes(app: &App, rec: &UploadRecord) -> Result<(), StoreError> {
    let content_type = rec
        .asset
        .as_ref()
        .and_then(|a| a.sniffed.as_ref())
        .map_or("application/octet-stream", |s| s.content_type.as_str());
    app.bytes.finish(Loc::of(rec), rec.offset.0, content_type, &rec.sha256.finalize_hex()).await?;
    Ok(())
}

/// Called once, right after the commit that completed `rec`.
pub async fn on_complete(app: &Arc<App>, rec: &UploadRecord) {
    // Before the answer: the client may GET the upload next. A failure
    // here is repeated by processing, or by the final's assembly.
    if let Err(e) = finish_bytes(app, rec).await {
        tracing::warn!(upload = %rec.id, error = %e, "could not finish the stored bytes yet");
    }
    // No longer in flight (its bytes were counted as they arrived).
    let after = rec.share();
    app.usage.moved(rec.project_id, Share { in_flight: true, ..after }, after);
    if rec.is_partial() {
        // Partial uploads are not assets; they may complete waiting finals,
        // assembled in the background so this answer does not wait for them.
        let (app, part) = (app.clone(), rec.id);
        tokio::spawn(async move { super::concat::on_partial_complete(&app, Some(part)).await });
    } else {
        on_upload_complete(app, rec).await;
    }
}

/// A whole upload (not a partial) is complete: its asset starts processing.
pub async fn on_upload_complete(app: &Arc<App>, rec: &UploadRecord) {
    tracing::info!(upload = %rec.id, bytes = rec.offset.0, "upload complete");
    if let Err(e) = process::start(app, rec).await {
        tracing::error!(upload = %rec.id, error = %e, "could not start processing; retried at next start");
    }
}
