//! The metadata port: upload records, tombstones, the indexes lists and
//! start-up read, token use counts and the expiry queue, durable once
//! `flush` returns.
//!
//! Every call is `async` although sled answers from memory: a database
//! backend answers over a socket, and the callers (the upload service, the
//! protocol handlers, processing) are written once for both. Enum dispatch,
//! as for the byte store (`ports::bytes` says why).
//!
//! The one rule the port keeps with the byte store: an offset is stored
//! only after the bytes it counts are durable, so a stored offset never
//! exceeds the stored bytes (start-up winds back a disk that lost some).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::StoreError;
use crate::asset::{AssetState, AssetType};
use crate::backends::pg_meta::PgMeta;
use crate::backends::sled_meta::{SledError, SledMeta};
use crate::record::{GoneReason, Offset, Owner, Tombstone, UploadRecord, UploadStatus};
use crate::time::Timestamp;
use crate::usage::UsageFigures;

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone)]
pub enum MetaStore {
    Sled(Arc<SledMeta>),
    Postgres(Arc<PgMeta>),
}

/// What start-up finds in the metadata, before the byte store is asked.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Each project's usage, counting unfinished uploads at their stored offsets.
    pub usage: HashMap<Uuid, UsageFigures>,
    /// Complete uploads still `pending_upload`: their processing must start.
    pub not_started: Vec<Uuid>,
    /// Unfinished uploads with bytes (id, offset): each is checked against
    /// the byte store, and wound back if fewer bytes are stored.
    pub with_bytes: Vec<(Uuid, Offset)>,
}

/// What `status_unless_writing` found.
pub enum StatusRead {
    /// Nobody is writing: the status (or nothing, for no such upload).
    Settled(Option<UploadStatus>),
    /// A request holds the upload (or the lock must be taken to know).
    Writing,
}

/// One page of `list_assets`: newest first, and where the next starts.
pub struct AssetPage {
    pub assets: Vec<UploadRecord>,
    pub next: Option<Uuid>,
}

impl MetaStore {
    pub async fn get(&self, id: Uuid) -> Result<Option<UploadRecord>> {
        match self {
            MetaStore::Sled(s) => Ok(s.get(id)?),
            MetaStore::Postgres(p) => Ok(p.get(id).await?),
        }
    }

    /// What HEAD needs of an upload, decoded without the rest of its record.
    pub async fn status(&self, id: Uuid) -> Result<Option<UploadStatus>> {
        match self {
            MetaStore::Sled(s) => Ok(s.status(id)?),
            MetaStore::Postgres(p) => Ok(p.status(id).await?),
        }
    }

    /// What HEAD needs, read only if no request holds the upload right now
    /// (then what is stored is all that was acknowledged, and a reader need
    /// not take the lock nor queue behind other readers); `Writing` if one
    /// holds it, or where the lock is not the database's to answer (sled:
    /// the in-process lock costs nothing, so it is taken).
    pub async fn status_unless_writing(&self, id: Uuid) -> Result<StatusRead> {
        match self {
            MetaStore::Sled(_) => Ok(StatusRead::Writing),
            MetaStore::Postgres(p) => Ok(match p.status_unless_locked(id).await? {
                Some(found) => StatusRead::Settled(found),
                None => StatusRead::Writing,
            }),
        }
    }

    /// The project owning an upload, if it exists: checked before its lock is
    /// taken, since taking it interrupts whoever holds it.
    pub async fn owner(&self, id: Uuid) -> Result<Option<Owner>> {
        match self {
            MetaStore::Sled(s) => Ok(s.owner(id)?),
            MetaStore::Postgres(p) => Ok(p.owner(id).await?),
        }
    }

    /// Counts one upload made with an upload token allowing `max`; false
    /// (nothing counted) once all are used. Durable with the next flush.
    pub async fn take_token_use(&self, token_id: &str, max: u64) -> Result<bool> {
        match self {
            MetaStore::Sled(s) => Ok(s.take_token_use(token_id, max)?),
            MetaStore::Postgres(p) => Ok(p.take_token_use(token_id, max).await?),
        }
    }

    /// How many uploads a token has made.
    pub async fn token_uses(&self, token_id: &str) -> Result<u64> {
        match self {
            MetaStore::Sled(s) => Ok(s.token_uses(token_id)?),
            MetaStore::Postgres(p) => Ok(p.token_uses(token_id).await?),
        }
    }

    /// Stores a record made by a creation (durable with the next flush).
    pub async fn insert_new(&self, rec: &UploadRecord) -> Result<()> {
        match self {
            MetaStore::Sled(s) => Ok(s.insert_new(rec)?),
            MetaStore::Postgres(p) => Ok(p.put(rec).await?),
        }
    }

    /// Stores a changed record, moving its index entries and its project's
    /// settled usage with it (durable with the next flush).
    pub async fn put(&self, rec: &UploadRecord) -> Result<()> {
        match self {
            MetaStore::Sled(s) => Ok(s.put(rec)?),
            MetaStore::Postgres(p) => Ok(p.put(rec).await?),
        }
    }

    /// Makes every earlier write durable. Concurrent callers share flushes.
    pub async fn flush(&self) -> Result<()> {
        match self {
            MetaStore::Sled(s) => Ok(s.flush().await?),
            MetaStore::Postgres(p) => Ok(p.flush().await?),
        }
    }

    /// Unfinished uploads whose last change is `expire_after` before `now`
    /// (refused ones never expire), each taken from the expiry queue: the
    /// sweeper removes them, or files back with `expire_later` one it
    /// cannot remove yet.
    pub async fn take_expired(&self, now: Timestamp, expire_after: Duration) -> Result<Vec<Uuid>> {
        match self {
            MetaStore::Sled(s) => {
                // Reads the records the queue names as due: off the request threads.
                off_thread(s, move |s| s.take_expired(now, expire_after)).await
            }
            MetaStore::Postgres(p) => Ok(p.take_expired(now, expire_after).await?),
        }
    }

    /// Files `id` for expiry again, as last changed at `at`.
    pub async fn expire_later(&self, at: Timestamp, id: Uuid) {
        match self {
            MetaStore::Sled(s) => s.touch(at, id),
            MetaStore::Postgres(p) => p.expire_later(at, id).await,
        }
    }

    /// Whether a record for `id` exists.
    pub async fn contains(&self, id: Uuid) -> Result<bool> {
        match self {
            MetaStore::Sled(s) => Ok(s.contains(id)?),
            MetaStore::Postgres(p) => Ok(p.contains(id).await?),
        }
    }

    pub async fn tombstone(&self, id: Uuid) -> Result<Option<Tombstone>> {
        match self {
            MetaStore::Sled(s) => Ok(s.tombstone(id)?),
            MetaStore::Postgres(p) => Ok(p.tombstone(id).await?),
        }
    }

    /// Removes a record, leaving a tombstone (410 rather than 404), and
    /// returns it. The caller flushes before it deletes the bytes.
    pub async fn remove(&self, id: Uuid, reason: GoneReason) -> Result<Option<UploadRecord>> {
        match self {
            MetaStore::Sled(s) => Ok(s.remove(id, reason)?),
            MetaStore::Postgres(p) => Ok(p.remove(id, reason).await?),
        }
    }

    /// Forgets tombstones older than `before`.
    pub async fn prune_tombstones(&self, before: Timestamp) -> Result<usize> {
        match self {
            MetaStore::Sled(s) => {
                // Reads every tombstone: off the request threads.
                off_thread(s, move |s| s.prune_tombstones(before)).await
            }
            MetaStore::Postgres(p) => Ok(p.prune_tombstones(before).await?),
        }
    }

    /// A project's assets newest first, after `cursor`, filtered by state
    /// and type; costs what the page returns, not what is stored.
    pub async fn list_assets(
        &self,
        project: Uuid,
        cursor: Option<Uuid>,
        limit: usize,
        state: Option<AssetState>,
        kind: Option<AssetType>,
    ) -> Result<AssetPage> {
        match self {
            MetaStore::Sled(s) => {
                // Up to a MiB of records read: off the request threads, so
                // a list never stalls uploads and HEADs.
                let (assets, next) =
                    off_thread(s, move |s| s.list_assets(project, cursor, limit, state, kind)).await?;
                Ok(AssetPage { assets, next })
            }
            MetaStore::Postgres(p) => {
                let (assets, next) = p.list_assets(project, cursor, limit, state, kind).await?;
                Ok(AssetPage { assets, next })
            }
        }
    }

    /// Files a final upload as waiting for its parts (idempotent).
    pub async fn add_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        match self {
            MetaStore::Sled(s) => Ok(s.add_waiting_final(rec)?),
            MetaStore::Postgres(p) => Ok(p.add_waiting_final(rec).await?),
        }
    }

    pub async fn remove_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        match self {
            MetaStore::Sled(s) => Ok(s.remove_waiting_final(rec)?),
            MetaStore::Postgres(p) => Ok(p.remove_waiting_final(rec).await?),
        }
    }

    /// The waiting finals that list `part`.
    pub async fn finals_waiting_for(&self, part: Uuid) -> Result<Vec<Uuid>> {
        match self {
            MetaStore::Sled(s) => Ok(s.finals_waiting_for(part)?),
            MetaStore::Postgres(p) => Ok(p.finals_waiting_for(part).await?),
        }
    }

    /// Every waiting final (start-up retries their assembly).
    pub async fn waiting_finals(&self) -> Result<Vec<Uuid>> {
        match self {
            MetaStore::Sled(s) => Ok(s.waiting_finals()?),
            MetaStore::Postgres(p) => Ok(p.waiting_finals().await?),
        }
    }

    /// Start-up, from the indexes: usage, the processing that never
    /// started, the unfinished uploads to check against their bytes (and
    /// every unfinished upload filed for expiry).
    pub async fn resume(&self) -> Result<Resumed> {
        match self {
            MetaStore::Sled(s) => {
                let r = off_thread(s, |s| s.resume()).await?;
                Ok(Resumed { usage: r.usage, not_started: r.not_started, with_bytes: r.with_bytes })
            }
            MetaStore::Postgres(p) => {
                let r = p.resume().await?;
                Ok(Resumed { usage: r.usage, not_started: r.not_started, with_bytes: r.with_bytes })
            }
        }
    }

    /// Every project's usage as stored (unfinished uploads at their offsets).
    pub async fn usage_totals(&self) -> Result<HashMap<Uuid, UsageFigures>> {
        match self {
            MetaStore::Sled(s) => off_thread(s, |s| s.usage_totals()).await,
            MetaStore::Postgres(p) => Ok(p.usage_totals().await?),
        }
    }

    /// Assets left `processing` by a crash or a stop.
    pub async fn processing(&self) -> Result<Vec<Uuid>> {
        match self {
            MetaStore::Sled(s) => off_thread(s, |s| s.processing()).await,
            MetaStore::Postgres(p) => Ok(p.processing().await?),
        }
    }
}

/// Runs a sled call that reads many records on the blocking pool, so it
/// never stalls the request threads.
async fn off_thread<T: Send + 'static>(
    s: &Arc<SledMeta>,
    f: impl FnOnce(&SledMeta) -> std::result::Result<T, SledError> + Send + 'static,
) -> Result<T> {
    let s = s.clone();
    Ok(tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| StoreError::Metadata(e.to_string()))??)
}
