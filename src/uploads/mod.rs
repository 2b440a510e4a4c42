//! The upload service: what every protocol does to an upload, written once.
//!
//! The tus and draft handlers and `POST /v1/assets` parse their own formats
//! and answer in them; creating an upload (limits, the record, the project's
//! usage, the asset index, the `created` event) happens here, so no protocol
//! can forget a step; so does appending a body (limits, quota, the type at
//! the first bytes, the commit and what follows it), with the protocol only
//! checking its own checksum in between. `complete` says what follows the
//! last byte, `concat` joins final uploads, `remove` removes and `expire`
//! sweeps unfinished uploads.

pub mod append;
pub mod complete;
pub mod concat;
pub mod expire;
pub mod process;
pub mod remove;

pub use complete::{after_commit, on_complete, on_upload_complete};
pub use remove::remove;

use std::sync::Arc;

use hyper::body::Incoming;
use uuid::Uuid;

use crate::app::App;
use crate::asset::AssetInfo;
use crate::auth::Caller;
use crate::digest::Algorithm;
use crate::limits::{self, Creation, Refusal, UploadLimits};
use crate::ports::StoreError;
use crate::ports::bytes::{ByteStore, Loc};
use crate::ports::locks::UploadLock;
use crate::ports::meta::MetaStore;
use crate::record::{Concat, Offset, UploadRecord};
use crate::uploads::append::{AppendPlan, BodyEnd, Staged, stage};
use crate::usage::Usage;

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

/// Why the service could not do what was asked; each protocol answers in
/// its format (`From` impls in `tus::error`, `ietf::problem`, `api::error`).
#[derive(Debug)]
pub enum UploadError {
    /// A limit refused it.
    Refused(Refusal),
    Store(StoreError),
    /// The byte store is short of space for it (507).
    StorageFull(String),
    /// Another request holds the upload and did not let go in time.
    Busy,
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Refused(r) => f.write_str(r.message()),
            UploadError::Store(e) => e.fmt(f),
            UploadError::StorageFull(m) => f.write_str(m),
            UploadError::Busy => f.write_str("the upload is locked by another request"),
        }
    }
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
pub async fn create(app: &App, caller: &Caller, new: NewUpload<'_>) -> Result<UploadRecord, UploadError> {
    let creation = Creation {
        length: new.length,
        declared_type: new.declared_type,
        partial: new.concat == Concat::Partial,
        requested: new.limits,
    };
    let admitted = limits::admit(app, caller, &creation)?;
    // Last, so a creation refused by anything else costs the token no use.
    if let Some((token_id, max)) = &admitted.token_use
        && !app.meta.take_token_use(token_id, *max).await?
    {
        return Err(limits::uploads_used_up(*max).into());
    }
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
    app.meta.insert_new(&rec).await?;
    app.usage.created(rec.project_id, rec.asset.is_some(), true);
    app.events.emit(crate::events::Kind::Created, &rec);
    Ok(rec)
}

/// The upload as its file really is before new bytes go after it: bytes
/// removed from under the server are noticed and the offset wound back
/// (`wind_back`), and the project's usage follows.
///
/// Costs a `stat` on files; re-hashing happens only when bytes are missing.
pub async fn verified(app: &App, rec: UploadRecord) -> Result<UploadRecord, StoreError> {
    if rec.offset.0 == 0 || rec.is_final() || rec.is_complete() || !app.bytes.length_is_offset() {
        return Ok(rec);
    }
    let stored = app.bytes.len(Loc::of(&rec)).await?;
    if stored >= rec.offset.0 {
        return Ok(rec);
    }
    tracing::warn!(upload = %rec.id, offset = rec.offset.0, stored, "upload bytes missing; winding back");
    let before = rec.share();
    let (rec, moved) = on_blocking(&app.bytes, rec, wind_back).await?;
    if moved {
        app.meta.put(&rec).await?;
    }
    app.meta.flush().await?;
    app.usage.moved(rec.project_id, before, rec.share());
    Ok(rec)
}

/// Start-up: the unfinished uploads the metadata names are checked against
/// their bytes (one `stat` each, on one blocking thread), those with fewer
/// stored bytes than their offset wound back, and the usage loaded. Returns
/// the complete uploads whose processing never started.
pub async fn resume(
    meta: &MetaStore,
    bytes: &Arc<ByteStore>,
    usage: &Usage,
) -> Result<Vec<Uuid>, StoreError> {
    let mut found = meta.resume().await?;
    let mut with_bytes = std::mem::take(&mut found.with_bytes);
    if !bytes.length_is_offset() {
        // The records are the truth; nothing to compare them with.
        with_bytes.clear();
    }
    let (short, longer) = {
        let bytes = bytes.clone();
        type Found = (Vec<(Uuid, Offset)>, Vec<(Uuid, u64)>);
        tokio::task::spawn_blocking(move || -> std::io::Result<Found> {
            let (mut short, mut longer) = (Vec::new(), Vec::new());
            for (id, offset) in with_bytes {
                // Files are named by id alone (only a file store's length is an offset).
                let stored = bytes.len_blocking(Loc { project: Uuid::nil(), id })?;
                if stored < offset.0 {
                    short.push((id, offset));
                } else if stored > offset.0 {
                    longer.push((id, stored));
                }
            }
            Ok((short, longer))
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??
    };
    let mut caught_up = 0;
    for (id, stored) in longer {
        let Some(rec) = meta.get(id).await? else { continue };
        let before = rec.offset.0;
        let (rec, moved) = on_blocking(bytes, rec, move |b, r| catch_up(b, r, stored)).await?;
        if moved {
            meta.put(&rec).await?;
            caught_up += 1;
            let figures = found.usage.entry(rec.project_id).or_default();
            figures.bytes_stored += rec.offset.0 - before;
        }
    }
    if caught_up > 0 {
        meta.flush().await?;
        tracing::info!(
            uploads = caught_up,
            "took the offsets of uploads stopped mid-way from their synced files"
        );
    }
    let mut wound = 0;
    for (id, counted) in short {
        let Some(rec) = meta.get(id).await? else { continue };
        let (rec, moved) = on_blocking(bytes, rec, wind_back).await?;
        if moved {
            meta.put(&rec).await?;
            wound += 1;
            // Usage counted the index entry's offset, which a crash can
            // leave ahead of the record's.
            let figures = found.usage.entry(rec.project_id).or_default();
            figures.bytes_stored =
                figures.bytes_stored.saturating_sub(counted.0.saturating_sub(rec.offset.0));
        }
    }
    if wound > 0 {
        meta.flush().await?;
        tracing::warn!(uploads = wound, "wound back uploads whose files were shorter than their offsets");
    }
    usage.load(found.usage);
    Ok(found.not_started)
}

/// Runs `f` (`wind_back` or `catch_up`) on a blocking thread; the record
/// and whether it moved.
async fn on_blocking(
    bytes: &Arc<ByteStore>,
    mut rec: UploadRecord,
    f: impl FnOnce(&ByteStore, &mut UploadRecord) -> Result<bool, StoreError> + Send + 'static,
) -> Result<(UploadRecord, bool), StoreError> {
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || f(&bytes, &mut rec).map(|moved| (rec, moved)))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// An upload whose offset was stored lazily (`UploadRecord::lazy`) and
/// whose file holds `stored` bytes, more than its offset: the offset moves
/// to them, short of completing the upload (a complete upload is only ever
/// made so by a request, which flushes it), and the digest is carried on
/// over the bytes in between; true if it moved. The caller stores the
/// record. Blocking: used at start-up (`resume`).
fn catch_up(bytes: &ByteStore, rec: &mut UploadRecord, stored: u64) -> Result<bool, StoreError> {
    if !rec.lazy || rec.is_final() || rec.is_complete() {
        return Ok(false);
    }
    let mut to = stored.min(rec.length.unwrap_or(u64::MAX));
    if crate::record::complete(&rec.concat, rec.length, Offset(to), rec.awaiting_completion) {
        to -= 1;
    }
    if to <= rec.offset.0 {
        return Ok(false);
    }
    rec.sha256 = bytes.hash_on_blocking(Loc::of(rec), rec.sha256.clone(), to)?;
    rec.offset = Offset(to);
    rec.lazy = false;
    Ok(true)
}

/// With several nodes on one database: every second, each project's usage
/// as the database counts it (every node's uploads) replaces this node's
/// own count, so quotas hold across nodes. A database away keeps the last
/// figures (and this node's changes since) until it is back.
pub async fn share_usage(app: Arc<App>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = app.shutdown.cancelled() => return,
        }
        match app.meta.usage_totals().await {
            Ok(stored) => app.usage.rebase(&stored),
            Err(e) => tracing::debug!(error = %e, "reading the cluster's usage"),
        }
    }
}

/// If an unfinished upload's stored bytes are fewer than its offset (a disk
/// that lost synced data, a file removed by hand), sets the offset to what
/// is really there and re-hashes that prefix, so new bytes never land after
/// a gap; true if it did. The caller stores the record. Blocking: used at
/// start-up (`resume`) and before appends (`verified`).
pub fn wind_back(bytes: &ByteStore, rec: &mut UploadRecord) -> Result<bool, StoreError> {
    if rec.offset.0 == 0 || rec.is_final() || rec.is_complete() {
        return Ok(false);
    }
    let stored = bytes.len_blocking(Loc::of(rec))?;
    if stored >= rec.offset.0 {
        return Ok(false);
    }
    rec.offset = Offset(stored);
    rec.sha256 = bytes.hash_prefix_blocking(Loc::of(rec), stored)?;
    Ok(true)
}

/// How many more bytes `rec` may take now (its declared length, else its
/// size limit), and the limits that apply to it.
pub fn room(app: &App, rec: &UploadRecord) -> (u64, limits::Effective) {
    let limits = limits::for_upload(app, rec);
    let at = rec.offset.0;
    let room = match (rec.length, limits.limits.max_size) {
        (Some(len), _) => len - at,
        (None, Some(max)) => max.saturating_sub(at),
        (None, None) => i64::MAX as u64 - at,
    };
    (room, limits)
}

/// How a protocol wants a body appended.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendOptions {
    /// Also hash the body with this algorithm (a checksum the client sent).
    pub checksum: Option<Algorithm>,
    /// The protocol verifies the body before keeping any of it: no checkpoints.
    pub verify_before_commit: bool,
}

/// A body streamed into an upload and synced, not yet committed: the
/// protocol checks what it must (a checksum) and then commits or discards.
pub struct Append {
    pub staged: Staged,
    limits: limits::Effective,
    start: Offset,
    /// Fires if the upload's lock was lost (`UploadLock::lost`).
    lock_lost: Option<tokio_util::sync::CancellationToken>,
}

/// What a committed append left.
pub struct Appended {
    pub rec: UploadRecord,
    /// How the body ended; anything but `Finished` is the protocol's to answer.
    pub end: BodyEnd,
    /// Bytes this request stored.
    pub received: u64,
    /// Set when the body stopped at the project's quota (the bytes that fit were kept).
    pub refusal: Option<Refusal>,
}

/// Streams `body` into the upload at its offset, at most `room` bytes,
/// counting them against the project's quota and watching the first bytes'
/// type. A type that is not allowed ends it: the upload is refused (its bytes
/// removed, its asset failed) and this answers `Refused(TypeNotAllowed)`.
/// The caller holds the upload's lock.
pub async fn stream(
    app: &App,
    rec: UploadRecord,
    body: Incoming,
    room: u64,
    limits: limits::Effective,
    opts: AppendOptions,
    lock: &UploadLock,
) -> Result<Append, UploadError> {
    let start = rec.offset;
    let plan = AppendPlan {
        limit: room,
        checksum: opts.checksum,
        verify_before_commit: opts.verify_before_commit,
        read_timeout: app.cfg.read_timeout,
        progress: Some(app.events.clone()),
        min_free_space: app.cfg.min_free_space,
        budget: app.usage.budget(rec.project_id, limits.quota),
        sniff: crate::uploads::process::sniff_gate(app, &rec, &limits).await?,
    };
    let mut staged = stage(app.meta.clone(), app.bytes.clone(), rec, body, plan, lock.cancelled()).await?;
    if staged.end == BodyEnd::TypeRefused {
        let prefix = staged.sniffed_prefix.take().unwrap_or_default();
        let rec = staged.discard().await?;
        let sniffed = crate::asset::sniff::sniff(&prefix);
        let why = crate::uploads::process::refuse(app, rec, sniffed, &limits).await?;
        return Err(Refusal::TypeNotAllowed(why).into());
    }
    Ok(Append { staged, limits, start, lock_lost: lock.lost() })
}

impl Append {
    /// Records the bytes as the upload's (durable on return), then checks
    /// the upload's type once enough of it is in.
    pub async fn commit(self, app: &App) -> Result<Appended, UploadError> {
        let Append { staged, limits, start, lock_lost } = self;
        if lock_lost.is_some_and(|t| t.is_cancelled()) {
            // Another node may be writing the upload now: storing this
            // request's offset could count bytes that node overwrote. Left
            // as they are (not cut off, which could cut that node's).
            drop(staged);
            return Err(UploadError::Store(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "this server lost the upload's lock (its database session ended) before storing the bytes",
            ))));
        }
        let end = staged.end.clone();
        let received = staged.received();
        let mut rec = staged.commit().await?;
        if rec.offset > start
            && let Some(why) = crate::uploads::after_commit(app, &mut rec, &limits).await?
        {
            return Err(Refusal::TypeNotAllowed(why).into());
        }
        let refusal = (end == BodyEnd::QuotaReached).then(|| {
            let used = app.usage.project(rec.project_id).bytes();
            Refusal::QuotaExceeded(limits::quota_message(app, &limits, used, None))
        });
        Ok(Appended { rec, end, received, refusal })
    }

    /// Cuts this request's bytes off; the upload stays where it was.
    pub async fn discard(self) -> Result<UploadRecord, StoreError> {
        self.staged.discard().await
    }
}
