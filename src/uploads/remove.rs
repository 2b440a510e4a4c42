//! Removing an upload: termination, `DELETE /v1/assets`, the draft's
//! cancellation and expiry all end here.

use uuid::Uuid;

use crate::app::App;
use crate::ports::StoreError;
use crate::ports::bytes::Loc;
use crate::record::GoneReason;
use crate::usage::Share;

/// Removes an upload and its asset (termination, DELETE /v1/assets, the draft's
/// cancellation): bytes gone, URL answering 410, subscribers told. The caller
/// holds the upload's lock and has checked who may do this.
pub async fn remove(app: &App, id: Uuid, reason: GoneReason) -> Result<(), StoreError> {
    let removed = app.meta.remove(id, reason).await?;
    app.meta.flush().await?;
    if let Some(rec) = &removed {
        // Without a record (removed before a crash) the sweeper at start
        // finds the bytes no upload owns.
        app.bytes.delete(Loc::of(rec)).await?;
        app.usage.moved(rec.project_id, rec.share(), Share::default());
        app.events.emit(crate::events::Kind::Deleted, rec);
    }
    Ok(())
}
