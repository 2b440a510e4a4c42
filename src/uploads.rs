//! The upload service: what every protocol does to an upload, written once.
//!
//! The tus and draft handlers and `POST /v1/assets` parse their own formats
//! and answer in them; creating an upload (limits, the record, the project's
//! usage, the asset index, the `created` event) happens here, so no protocol
//! can forget a step. (Appending, completing and removing move here next;
//! issue 14.)

use crate::app::App;
use crate::asset::AssetInfo;
use crate::auth::Caller;
use crate::limits::{self, Creation, Refusal, UploadLimits};
use crate::store::{Concat, StoreError, UploadRecord};

/// What a protocol asks for when it creates an upload.
#[derive(Debug, Default)]
pub struct NewUpload<'a> {
    /// Declared length; `None` while deferred.
    pub length: Option<u64>,
    /// `Upload-Metadata` as it is to be answered to tus clients.
    pub metadata: Option<String>,
    pub concat: Concat,
    /// What the bytes are meant to be; `None` for partial uploads.
    pub asset: Option<AssetInfo>,
    /// The client's media type for the file, checked against the allowed types.
    pub declared_type: Option<&'a str>,
    /// Limits the request itself sets (`POST /v1/assets`).
    pub limits: UploadLimits,
    /// IETF draft uploads complete when the client says so.
    pub awaiting_completion: bool,
    /// Lifetime of the signed upload URLs the asset JSON offers.
    pub url_ttl_secs: Option<u64>,
}

/// Why the service could not do what was asked.
#[derive(Debug)]
pub enum UploadError {
    /// A limit refused it; each protocol answers in its format.
    Refused(Refusal),
    Store(StoreError),
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        UploadError::Store(e)
    }
}

impl From<Refusal> for UploadError {
    fn from(r: Refusal) -> Self {
        UploadError::Refused(r)
    }
}

/// Creates an upload for `caller`, checked against every limit first. The
/// record is durable with the next flush, which every caller makes before it
/// answers (after the first chunk, if the request carries one). It counts as
/// in flight until `lifecycle::on_complete`.
pub fn create(app: &App, caller: &Caller, new: NewUpload) -> Result<UploadRecord, UploadError> {
    let creation = Creation {
        length: new.length,
        declared_type: new.declared_type,
        partial: new.concat == Concat::Partial,
        requested: new.limits,
    };
    let admitted = limits::admit(app, caller, &creation)?;
    let mut rec =
        UploadRecord::new(uuid::Uuid::now_v7(), caller.project_id, new.length, new.metadata, new.concat);
    rec.asset = new.asset;
    if let Some(a) = rec.asset.as_mut() {
        // The token's metadata wins over the client's.
        a.metadata.extend(admitted.metadata);
    }
    rec.limits = admitted.limits;
    rec.token_id = admitted.token_id;
    rec.awaiting_completion = new.awaiting_completion;
    rec.url_ttl_secs = new.url_ttl_secs;
    app.store.put(&rec)?;
    if rec.asset.is_some() {
        app.store.index_asset(rec.project_id, rec.id)?;
    }
    app.usage.created(rec.project_id, rec.asset.is_some(), true);
    app.events.emit(crate::events::Kind::Created, &rec);
    Ok(rec)
}
