//! What happens when an upload's last byte is stored.

use std::sync::Arc;

use crate::app::App;
use crate::store::UploadRecord;

/// Called once, right after the commit that completed `rec`.
pub async fn on_complete(app: &Arc<App>, rec: &UploadRecord) {
    if rec.is_partial() {
        // Partial uploads are not assets; they may complete a waiting final.
        crate::tus::on_partial_complete(app).await;
    } else {
        on_upload_complete(app, rec).await;
    }
}

/// A whole upload (not a partial) is complete.
pub async fn on_upload_complete(_app: &Arc<App>, rec: &UploadRecord) {
    tracing::info!(upload = %rec.id, bytes = rec.offset.0, sha256 = %rec.sha256.finalize_hex(), "upload complete");
}
