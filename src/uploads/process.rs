//! Sniffing while bytes arrive, and processing once the last byte is stored.

use std::sync::Arc;

use uuid::Uuid;

use crate::app::App;
use crate::asset::probe::{self, ProbeError};
use crate::asset::{AssetState, SNIFF_BYTES, Sniffed, sniff};
use crate::limits::Effective;
use crate::ports::StoreError;
use crate::ports::bytes::Loc;
use crate::record::{Offset, Timestamp, UploadRecord};
use crate::uploads::append::SniffGate;

/// The upload's first `len` bytes (fewer than the sniff window).
async fn read_prefix(app: &App, rec: &UploadRecord, len: usize) -> Result<Vec<u8>, StoreError> {
    Ok(app.bytes.read_prefix(Loc::of(rec), len).await?)
}

/// For a request appending to `rec` while its type is unknown and some type
/// is not allowed: a gate that stops the body as soon as its first 8 KiB (or
/// the whole upload, if shorter) show a refused type, instead of after the
/// last byte.
pub async fn sniff_gate(
    app: &App,
    rec: &UploadRecord,
    limits: &Effective,
) -> Result<Option<SniffGate>, StoreError> {
    let unsniffed = rec.asset.as_ref().is_some_and(|a| a.sniffed.is_none());
    if !unsniffed || limits.limits.allowed_types.is_none() || rec.offset.0 >= SNIFF_BYTES {
        return Ok(None);
    }
    let want = rec.length.unwrap_or(SNIFF_BYTES).min(SNIFF_BYTES) as usize;
    if want == 0 {
        return Ok(None);
    }
    let prefix = read_prefix(app, rec, rec.offset.0 as usize).await?;
    let allowed = limits.limits.clone();
    Ok(Some(SniffGate {
        prefix,
        want,
        refuse: Box::new(move |bytes| !allowed.allows(sniff::sniff(bytes).kind)),
    }))
}

/// The message for bytes of a type that is not accepted.
fn not_allowed_message(sniffed: &Sniffed, limits: &Effective) -> String {
    format!(
        "these bytes are {} ({}), which is not accepted here (accepted: {}); the upload was stopped and \
         its bytes removed",
        sniffed.kind.as_str(),
        sniffed.content_type,
        limits.limits.types_list()
    )
}

/// Refuses an upload whose bytes are of a type that is not allowed: its
/// bytes are removed, its asset ends `failed` with `type_not_allowed` saying
/// what was sniffed, and every later tus request on it is answered with the
/// reason. Returns that reason. The caller holds the upload's lock.
pub async fn refuse(
    app: &App,
    mut rec: UploadRecord,
    sniffed: Sniffed,
    limits: &Effective,
) -> Result<String, StoreError> {
    let why = not_allowed_message(&sniffed, limits);
    let before = rec.share();
    if let Some(asset) = rec.asset.as_mut() {
        asset.sniffed = Some(sniffed);
        let _ = asset.fail("type_not_allowed", why.clone());
    }
    rec.refused = Some(why.clone());
    rec.offset = Offset(0);
    rec.sha256 = Default::default();
    rec.lazy = false;
    rec.updated_at = Timestamp::now();
    app.meta.put(&rec).await?;
    app.meta.flush().await?;
    app.bytes.delete(Loc::of(&rec)).await?;
    app.usage.moved(rec.project_id, before, rec.share());
    tracing::info!(upload = %rec.id, reason = %why, "upload refused");
    app.events.emit(crate::events::Kind::Failed, &rec);
    Ok(why)
}

/// After new bytes were committed: sniffs once enough are in, and refuses
/// the upload if its type is not allowed (`Some(reason)`).
pub async fn check_type(
    app: &App,
    rec: &mut UploadRecord,
    limits: &Effective,
) -> Result<Option<String>, StoreError> {
    sniff_if_due(app, rec).await?;
    let sniffed = rec.asset.as_ref().and_then(|a| a.sniffed.clone());
    match sniffed {
        Some(s) if rec.refused.is_none() && !limits.limits.allows(s.kind) => {
            let why = refuse(app, rec.clone(), s, limits).await?;
            if let Some(r) = app.meta.get(rec.id).await? {
                *rec = r;
            }
            Ok(Some(why))
        }
        _ => Ok(None),
    }
}

/// Sniffs the asset's type once enough bytes are stored: one read of the
/// first 8 KiB, once per upload. The caller holds the upload's lock.
pub async fn sniff_if_due(app: &App, rec: &mut UploadRecord) -> Result<(), StoreError> {
    let due = rec.asset.as_ref().is_some_and(|a| a.sniffed.is_none())
        && (rec.offset.0 >= SNIFF_BYTES || rec.is_complete());
    if !due {
        return Ok(());
    }
    let prefix = read_prefix(app, rec, rec.offset.0.min(SNIFF_BYTES) as usize).await?;
    if let Some(asset) = rec.asset.as_mut() {
        asset.sniffed = Some(sniff::sniff(&prefix));
    }
    app.meta.put(rec).await?;
    Ok(())
}

/// The upload just completed: move the asset to `processing` and measure it
/// in the background. The caller holds the upload's lock.
pub async fn start(app: &Arc<App>, rec: &UploadRecord) -> Result<(), StoreError> {
    let Some(mut rec) = app.meta.get(rec.id).await? else { return Ok(()) };
    if rec.asset.as_ref().is_none_or(|a| a.state != AssetState::PendingUpload) {
        return Ok(());
    }
    let limits = crate::limits::for_upload(app, &rec);
    if check_type(app, &mut rec, &limits).await?.is_some() {
        return Ok(()); // refused: failed, nothing to process
    }
    if let Some(asset) = rec.asset.as_mut()
        && asset.transition(AssetState::Processing).is_ok()
    {
        app.meta.put(&rec).await?;
        app.meta.flush().await?;
        app.events.emit(crate::events::Kind::Processing, &rec);
        tokio::spawn(run(app.clone(), rec.id));
    }
    Ok(())
}

/// Probes the media off the async runtime, then records `ready` or `failed`.
/// A byte store that is away (a bucket unreachable or refusing tusk) is
/// waited for, as long as it takes, with its probe slot given back
/// meanwhile: the asset's bytes are safe, and it must not end `failed` (or
/// stay `processing` until a restart) for the store's outage.
///
/// The asset's processing claim is held throughout: among nodes sharing a
/// database one processes it, and if that node dies (its database session
/// and the claim with it), another's `watch_unclaimed` takes it over.
async fn run(app: Arc<App>, id: Uuid) {
    run_claimed(app, id).await;
}

/// [`run`]; false if another request (here or on another node) holds the
/// asset's claim, so nothing was done.
async fn run_claimed(app: Arc<App>, id: Uuid) -> bool {
    const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    let Some(_claim) = app.locks.try_lock(claim(id)).await else { return false };
    let mut wait = std::time::Duration::from_secs(1);
    while let Err(e) = attempt(&app, id).await {
        tracing::warn!(asset = %id, error = %e, "storage away; processing the asset again in {wait:?}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
    true
}

/// The lock that says a node is processing asset `id` (beside the upload's
/// own lock, which requests take): the id with its bits flipped by a
/// constant, a key no upload has.
fn claim(id: Uuid) -> Uuid {
    Uuid::from_u128(id.as_u128() ^ 0x7072_6f63_6573_7369_6e67_0000_0000_0000)
}

/// How often a node on a shared database looks for processing nobody holds.
const UNCLAIMED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a node waits before processing again an asset it processed
/// and that is still `processing` (its result could not be recorded).
const RETRY_AT_MOST: std::time::Duration = std::time::Duration::from_secs(600);

/// With several nodes: takes over the processing of assets whose claim is
/// held by nobody (its node died mid-way), every few seconds, until shutdown.
/// One this node processed and that stayed `processing` is tried again
/// after a doubling wait, not every few seconds.
pub async fn watch_unclaimed(app: Arc<App>) {
    use std::collections::{HashMap, HashSet};
    use std::time::Instant;
    let backoff: Arc<std::sync::Mutex<HashMap<Uuid, (Instant, std::time::Duration)>>> = Arc::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(UNCLAIMED_EVERY) => {}
            _ = app.shutdown.cancelled() => return,
        }
        let todo = match app.meta.processing().await {
            Ok(todo) => todo,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for processing left by another node");
                continue;
            }
        };
        let listed: HashSet<Uuid> = todo.iter().copied().collect();
        backoff.lock().expect("backoff").retain(|id, _| listed.contains(id));
        let now = Instant::now();
        for id in todo {
            if backoff.lock().expect("backoff").get(&id).is_some_and(|(next, _)| now < *next) {
                continue;
            }
            let (app, backoff) = (app.clone(), backoff.clone());
            tokio::spawn(async move {
                // Returns at once where the claim is held, here or elsewhere.
                if run_claimed(app, id).await {
                    let mut b = backoff.lock().expect("backoff");
                    let entry = b.entry(id).or_insert((Instant::now(), UNCLAIMED_EVERY));
                    entry.1 = (entry.1 * 2).min(RETRY_AT_MOST);
                    entry.0 = Instant::now() + entry.1;
                }
            });
        }
    }
}

/// One try at [`run`]'s work. `Err` only for a byte store that is away;
/// every other failure is recorded or logged here.
async fn attempt(app: &Arc<App>, id: Uuid) -> Result<(), StoreError> {
    // Probing reads whole files; a few at a time keeps the disk for uploads.
    let _permit = app.probe_slots.acquire().await.expect("semaphore never closes");
    let Ok(Some(rec)) = app.meta.get(id).await else { return Ok(()) };
    // Finished meanwhile (by another node, from a list read a moment ago).
    if rec.asset.as_ref().is_none_or(|a| a.state != AssetState::Processing) {
        return Ok(());
    }
    let Some(sniffed) = rec.asset.as_ref().and_then(|a| a.sniffed.clone()) else { return Ok(()) };
    // The bytes made whole with their type first (a bucket's parts joined).
    match super::complete::finish_bytes(app, &rec).await {
        Ok(()) => {}
        Err(e) if e.is_unavailable() => return Err(e),
        Err(e) => {
            tracing::error!(asset = %id, error = %e, "could not finish the stored bytes; retried at next start");
            return Ok(());
        }
    }

    let limits = crate::limits::for_upload(app, &rec);
    let outcome = match &limits.limits.allowed_types {
        // The policy changed after the type was checked at the first bytes.
        Some(_) if !limits.limits.allows(sniffed.kind) => Err(ProbeError {
            code: "type_not_allowed",
            message: format!(
                "these bytes are {} ({}), which is not accepted here (accepted: {})",
                sniffed.kind.as_str(),
                sniffed.content_type,
                limits.limits.types_list()
            ),
        }),
        _ if !probe::reads(&sniffed) => Ok(probe::Probe::default()),
        _ => {
            let (bytes, loc, len, s) = (app.bytes.clone(), Loc::of(&rec), rec.offset.0, sniffed.clone());
            tokio::task::spawn_blocking(move || {
                let reader = bytes.reader_blocking(loc, len).map_err(|e| ProbeError {
                    code: "processing_failed",
                    message: format!("cannot read the stored bytes: {e}"),
                })?;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    probe::probe_reader(reader, len, &s)
                }))
                .unwrap_or_else(|_| {
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
    // A probe that could not read is the store's failure, not the media's,
    // if the store is away now: tried again rather than recorded.
    if outcome.as_ref().is_err_and(|e| e.code != "type_not_allowed")
        && let Err(e) = app.bytes.len(Loc::of(&rec)).await
        && crate::ports::unavailable(&e)
    {
        return Err(StoreError::Io(e));
    }

    // A lock database away is waited for like a byte store (`run`).
    let lock = match app.locks.lock(id).await {
        Ok(lock) => lock,
        Err(crate::ports::locks::LockError::Unavailable) => {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the lock database cannot be reached",
            )));
        }
        Err(crate::ports::locks::LockError::Busy) => {
            tracing::warn!(asset = %id, "the asset stayed locked; its processing is tried again later");
            return Ok(());
        }
    };
    let result = async {
        let _lock = lock;
        let Some(mut rec) = app.meta.get(id).await? else { return Ok(()) }; // deleted meanwhile
        let Some(asset) = rec.asset.as_mut() else { return Ok(()) };
        if asset.state != AssetState::Processing {
            return Ok(());
        }
        let too_long = outcome.as_ref().ok().and_then(|p| {
            let secs: f64 = p.duration_seconds.as_deref()?.parse().ok()?;
            let max = limits.limits.max_duration?;
            (secs > max as f64)
                .then(|| format!("the media lasts {secs} seconds, more than the limit of {max} seconds"))
        });
        match &outcome {
            Ok(p) => {
                asset.duration_seconds = p.duration_seconds.clone();
                asset.width = p.width;
                asset.height = p.height;
                match &too_long {
                    Some(why) => {
                        let _ = asset.fail("duration_exceeded", why.clone());
                    }
                    None => {
                        let _ = asset.transition(AssetState::Ready);
                    }
                }
            }
            Err(e) => {
                let _ = asset.fail(e.code, e.message.clone());
            }
        }
        app.meta.put(&rec).await?;
        app.meta.flush().await?;
        let kind = if outcome.is_ok() && too_long.is_none() {
            crate::events::Kind::Ready
        } else {
            crate::events::Kind::Failed
        };
        app.events.emit(kind, &rec);
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(asset = %id, error = %e, "recording processing result failed; retried at next start");
    }
    Ok(())
}

/// The lock to start a complete upload's processing at start-up: waited for
/// in one process (a HEAD may hold it a moment); with several nodes only if
/// free, since another node may be completing it right now (and starts it).
async fn lock_to_start(app: &App, id: Uuid) -> Option<crate::ports::locks::UploadLock> {
    if app.locks.is_shared() { app.locks.try_lock(id).await } else { app.locks.lock(id).await.ok() }
}

/// At start-up: finish what a restart interrupted.
///
/// `not_started`: complete uploads still `pending_upload` (`uploads::resume`).
pub async fn resume_all(app: &Arc<App>, not_started: Vec<Uuid>) {
    let processing = match app.meta.processing().await {
        Ok(todo) => todo,
        Err(e) => return tracing::error!(error = %e, "could not read what processing must resume"),
    };
    let todo =
        processing.into_iter().map(|id| (id, true)).chain(not_started.into_iter().map(|id| (id, false)));
    for (id, processing) in todo {
        if processing {
            tokio::spawn(run(app.clone(), id));
        } else if let Some(lock) = lock_to_start(app, id).await
            && let Ok(Some(rec)) = app.meta.get(id).await
        {
            if let Err(e) = start(app, &rec).await {
                tracing::error!(asset = %id, error = %e, "could not resume processing");
            }
            drop(lock);
        }
    }
}
