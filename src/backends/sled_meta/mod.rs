//! The metadata port's embedded backend: upload records, tombstones and
//! indexes in sled (`ports::meta` dispatches here; the bytes are another
//! port's).
//!
//! The two are kept consistent by one rule: bytes are written and made
//! durable *before* the offset that counts them is stored. A crash can
//! therefore leave more bytes than the recorded offset (an uncommitted tail,
//! cut off by the next append) but never a recorded offset beyond the bytes
//! stored.

pub(crate) mod codec;
mod flusher;
mod index;
pub(crate) mod placement;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use crate::asset::{AssetState, AssetType};
use crate::usage::{Share, UsageFigures};
use placement::{
    InFlight, KIND_PARTIAL, KIND_UNKNOWN, Placement, PlacementView, group, kind_code, state_group,
};

use crate::record::{Concat, GoneReason, Offset, Owner, Timestamp, Tombstone, UploadRecord, UploadStatus};

#[derive(Debug)]
pub enum SledError {
    Db(sled::Error),
    Io(io::Error),
    Corrupt(String),
}

impl std::fmt::Display for SledError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SledError::Db(e) => write!(f, "metadata database: {e}"),
            SledError::Io(e) => write!(f, "file storage: {e}"),
            SledError::Corrupt(e) => write!(f, "corrupt record: {e}"),
        }
    }
}

impl std::error::Error for SledError {}

impl From<sled::Error> for SledError {
    fn from(e: sled::Error) -> Self {
        SledError::Db(e)
    }
}

impl From<TransactionError<SledError>> for SledError {
    fn from(e: TransactionError<SledError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => SledError::Db(e),
        }
    }
}

impl From<io::Error> for SledError {
    fn from(e: io::Error) -> Self {
        SledError::Io(e)
    }
}

pub type Result<T, E = SledError> = std::result::Result<T, E>;

/// Most index entries one list request reads without finding a match
/// (entries whose record moved on: left by a crash, skipped).
pub const LIST_SCAN: usize = 2000;
/// About the most record bytes one list page returns (records are up to
/// ~40 KiB with the largest metadata allowed).
pub const LIST_PAGE_BYTES: usize = 1 << 20;

pub struct SledMeta {
    db: sled::Db,
    flusher: flusher::Flusher,
    uploads: sled::Tree,
    gone: sled::Tree,
    /// Every upload by group (in flight, or its asset's state), project,
    /// type and id: lists, start-up and the processing queue read only what
    /// they need (`index`).
    by_state: sled::Tree,
    /// Per project: the bytes and assets of its uploads no longer in flight
    /// (`u64` bytes ++ `u64` assets, big-endian), moved in the transaction
    /// that moves a record between in flight and settled. Start-up adds the
    /// in-flight records it reads anyway, instead of reading every record.
    settled: sled::Tree,
    /// `schema` → the layout version of this directory's trees.
    info: sled::Tree,
    /// Uploads made per upload token (big-endian u64), for `max_uploads`.
    token_uses: sled::Tree,
    /// Final uploads waiting for partial uploads to finish (concatenation-unfinished).
    waiting_finals: sled::Tree,
    /// `part id ++ final id` for every waiting final: a completing part
    /// looks up its own finals, not every project's.
    finals_by_part: sled::Tree,
    /// Ids of unfinished uploads by the second of their last touch
    /// (`updated_at`), so the expiry sweeper reads only uploads old enough
    /// to be due: scanning every record pulled the whole tree into memory
    /// (104 MiB RSS after 200k POSTs). `put` adds the id under its second; an
    /// upload touched again also sits under older seconds until the sweeper
    /// takes those and finds its record newer. In memory, rebuilt by
    /// `resume` at start: a sled tree for it cost 7-10 % of POST/s (one
    /// more insert per request). A second's ids in a `Vec`: 16 bytes an
    /// upload, against ~50 in a `BTreeSet` of (time, id).
    touched: Mutex<BTreeMap<u64, Vec<Uuid>>>,
    /// In-flight entries without bytes found at start-up, not yet matched
    /// with their record (`forget_unrecorded`).
    unverified: Mutex<HashMap<Uuid, [u8; index::KEY_LEN]>>,
    data_dir: PathBuf,
    /// Held (flock) for the life of the store: one server per data directory.
    _dir_lock: fs::File,
}

/// Takes `DATA_DIR/tusk.lock` exclusively. Two servers on one directory
/// would each believe they own every upload; sled's own lock would stop the
/// second too, but with "could not acquire lock on .../db: WouldBlock".
fn lock_data_dir(data_dir: &Path) -> Result<fs::File> {
    use std::os::fd::AsRawFd;
    let file =
        fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join("tusk.lock"))?;
    // SAFETY: flock on a descriptor we own; the lock goes with the descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Err(SledError::Io(io::Error::new(
                e.kind(),
                format!(
                    "{} is in use by another process (is another tusk serving this data directory?)",
                    data_dir.display()
                ),
            )));
        }
        return Err(e.into());
    }
    Ok(file)
}

/// Opens sled under `DATA_DIR/tusk.lock`, which is already ours. sled's own
/// lock can then be held only by a store this process is still letting go
/// of (its I/O threads drop their handles a moment after the store), or by
/// something that is not tusk: wait a little for the first, then say so.
fn open_db(data_dir: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let opened = sled::Config::new()
            .path(data_dir.join("meta.sled"))
            // Durability comes from explicit flushes before each acknowledgement;
            // the periodic flush only bounds the work left for shutdown.
            .flush_every_ms(Some(1000))
            // sled's default cache is 1 GiB; records are small and hot ones
            // few, and the memory goal is tens of MiB for the whole server.
            // sled counts each page at its serialized size rounded up to a
            // power of two. HEAD of 500 uploads spread over a million records
            // touches one record leaf each (≤ 4 KiB in the vendored sled):
            // 4 MiB held them only some of the time (78–95 % of fresh HEAD/s),
            // 8 MiB does (100 %), and RSS stays under 64 MiB after a pass of
            // list pages (benches/RESULTS.md).
            .cache_capacity(8 << 20)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

impl SledMeta {
    pub fn open(data_dir: &Path) -> Result<SledMeta> {
        fs::create_dir_all(data_dir)?;
        // A directory made before (or by hand, or under another umask) is
        // closed to other local users too.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
        }
        let dir_lock = lock_data_dir(data_dir)?;
        let db = open_db(data_dir)?;
        let store = SledMeta {
            flusher: flusher::Flusher::start(db.clone()),
            uploads: db.open_tree("uploads")?,
            gone: db.open_tree("gone")?,
            waiting_finals: db.open_tree("waiting_finals")?,
            finals_by_part: db.open_tree("finals_by_part")?,
            by_state: db.open_tree("by_state")?,
            settled: db.open_tree("settled")?,
            info: db.open_tree("info")?,
            token_uses: db.open_tree("token_uses")?,
            touched: Mutex::default(),
            unverified: Mutex::default(),
            db,
            data_dir: data_dir.to_path_buf(),
            _dir_lock: dir_lock,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a directory written by an older tusk to [`SCHEMA`]: version 1
    /// had no `by_state` index and no `settled` counters (lists and start-up
    /// read every record), version 2 no values in the index's in-flight
    /// entries, version 3 one counter per project. Built once, from one
    /// pass over the records. Version 4 stored records as JSON: they stay
    /// readable (`codec`), so 4 → 5 only records the version, which keeps an
    /// older tusk, which cannot read MessagePack, from opening the directory.
    fn migrate(&self) -> Result<()> {
        let version =
            self.info.get(b"schema")?.and_then(|v| v.as_ref().try_into().ok()).map(u32::from_be_bytes);
        match version {
            Some(SCHEMA) => return Ok(()),
            Some(4) => {
                self.info.insert(b"schema", &SCHEMA.to_be_bytes())?;
                return self.flush_blocking();
            }
            Some(v) if v > SCHEMA => {
                return Err(SledError::Corrupt(format!(
                    "this data directory was written by a newer tusk (layout {v}; this one knows up to {SCHEMA})"
                )));
            }
            _ => {}
        }
        self.by_state.clear()?;
        self.settled.clear()?;
        let mut counted: HashMap<[u8; 17], (u64, u64)> = HashMap::new();
        let mut n = 0usize;
        for item in self.uploads.iter() {
            let (_, v) = item?;
            let rec = decode(&v)?;
            let p = rec.placement();
            if let Some(k) = index::key(&p, rec.project_id, rec.id) {
                self.by_state.insert(k, index::value(&p))?;
            }
            let c = counted.entry(settled_key(rec.project_id, rec.id)).or_default();
            c.0 += p.settled.bytes;
            c.1 += u64::from(p.settled.asset);
            n += 1;
        }
        for (key, (bytes, assets)) in counted {
            self.settled.insert(key, encode_settled(bytes, assets).to_vec())?;
        }
        let _ = self.db.drop_tree("project_assets");
        self.info.insert(b"schema", &SCHEMA.to_be_bytes())?;
        self.flush_blocking()?;
        if n > 0 {
            tracing::info!(uploads = n, "indexed the metadata of an older tusk (once)");
        }
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl SledMeta {
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn get(&self, id: Uuid) -> Result<Option<UploadRecord>> {
        match self.uploads.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// What HEAD needs of an upload, decoded without the rest of its record.
    pub fn status(&self, id: Uuid) -> Result<Option<UploadStatus>> {
        match self.uploads.get(id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The project owning an upload, if it exists: checked before its lock is
    /// taken, since taking it interrupts whoever holds it.
    pub fn owner(&self, id: Uuid) -> Result<Option<Owner>> {
        match self.uploads.get(id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode::<Owner>(&v)?)),
            None => Ok(None),
        }
    }

    /// Counts one upload made with an upload token allowing `max`; false
    /// (nothing counted) once all are used. Durable with the next flush,
    /// which the creation's answer waits for.
    pub fn take_token_use(&self, token_id: &str, max: u64) -> Result<bool> {
        let mut taken = false;
        self.token_uses.fetch_and_update(token_id.as_bytes(), |old| {
            let used = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            taken = used < max;
            Some(if taken { (used + 1).to_be_bytes().to_vec() } else { used.to_be_bytes().to_vec() })
        })?;
        Ok(taken)
    }

    /// How many uploads a token has made.
    pub fn token_uses(&self, token_id: &str) -> Result<u64> {
        Ok(self
            .token_uses
            .get(token_id.as_bytes())?
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Stores the record in memory; durable after the next `flush`. Most
    /// writes (a PATCH's checkpoints and commit) leave its [`Placement`] as
    /// it was and cost one insert; a write that moves it (sniffed, complete,
    /// processed) moves its index key and its project's settled usage in one
    /// transaction with it.
    pub fn put(&self, rec: &UploadRecord) -> Result<()> {
        let bytes = codec::encode(rec)?;
        let new = rec.placement();
        let old = match self.uploads.get(rec.id.as_bytes())? {
            Some(v) => Some(placement_of(&v)?),
            None => None,
        };
        match old {
            Some(old) if old == new => {
                self.uploads.insert(rec.id.as_bytes(), bytes)?;
            }
            // Bytes appended: only the in-flight entry's offset grows. No
            // transaction (one per commit cost 13 % more server CPU with 64
            // uploads at once); the entry is written first, so after a crash
            // it never counts less than its record (at worst bytes synced
            // but not acknowledged).
            Some(old)
                if old.settled == new.settled
                    && old.group == new.group
                    && old.kind == new.kind
                    && grows(old, new) =>
            {
                if let Some(k) = index::key(&new, rec.project_id, rec.id) {
                    self.by_state.insert(k, index::value(&new))?;
                }
                self.uploads.insert(rec.id.as_bytes(), bytes)?;
            }
            // A key that moves (sniffed, a state reached), an offset wound
            // back, or usage that settles: one transaction, so no crash
            // leaves an entry that disagrees with its record.
            _ => self.put_moved(rec, bytes, new)?,
        }
        if !rec.is_complete() {
            self.touch(rec.updated_at, rec.id);
        }
        Ok(())
    }

    /// Stores a record made just now (no earlier version): its index key
    /// first, then the record, without a transaction (one more insert per
    /// creation). A crash between the two leaves only a key without a
    /// record, which start-up removes.
    pub fn insert_new(&self, rec: &UploadRecord) -> Result<()> {
        let new = rec.placement();
        if new.settled != Share::default() {
            // Created complete (an empty upload): its usage moves too.
            return self.put(rec);
        }
        let bytes = codec::encode(rec)?;
        if let Some(k) = index::key(&new, rec.project_id, rec.id) {
            self.by_state.insert(k, index::value(&new))?;
        }
        self.uploads.insert(rec.id.as_bytes(), bytes)?;
        if !rec.is_complete() {
            self.touch(rec.updated_at, rec.id);
        }
        Ok(())
    }

    fn put_moved(&self, rec: &UploadRecord, bytes: Vec<u8>, new: Placement) -> Result<()> {
        let (id, project) = (rec.id, rec.project_id);
        (&self.uploads, &self.by_state, &self.settled).transaction(|(uploads, by_state, settled)| {
            let old = match uploads.insert(id.as_bytes(), bytes.as_slice())? {
                Some(v) => Some(placement_of(&v).map_err(ConflictableTransactionError::Abort)?),
                None => None,
            };
            if old == Some(new) {
                return Ok(());
            }
            let old_key = old.as_ref().and_then(|p| index::key(p, project, id));
            let new_key = index::key(&new, project, id);
            if old_key != new_key
                && let Some(k) = old_key
            {
                by_state.remove(&k[..])?;
            }
            if let Some(k) = new_key
                && (old_key != new_key || old.map(|p| p.entry) != Some(new.entry))
            {
                by_state.insert(&k[..], index::value(&new))?;
            }
            settle(settled, project, id, old.map(|p| p.settled).unwrap_or_default(), new.settled)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Files `id` in the expiry index under the second of `at`.
    pub fn touch(&self, at: Timestamp, id: Uuid) {
        let mut touched = self.touched.lock().expect("touched index");
        let ids = touched.entry(at.0 / 1000).or_default();
        // Checkpoints and chunk after chunk touch the same upload in a row.
        if ids.last() != Some(&id) {
            ids.push(id);
        }
    }

    /// Takes out of the expiry index every id filed under a second that
    /// began before `cutoff` (uploads last touched before it or within its
    /// second, and stale entries of uploads touched since), each once. The
    /// sweeper reads each record and `touch`es again those not due yet, so
    /// an upload is removed within a sweep period of its expiry rather than
    /// up to a second later.
    pub fn take_touched_before(&self, cutoff: Timestamp) -> Vec<Uuid> {
        let mut touched = self.touched.lock().expect("touched index");
        let later = touched.split_off(&(cutoff.0 / 1000 + 1));
        let due = std::mem::replace(&mut *touched, later);
        drop(touched);
        let mut ids: Vec<Uuid> = due.into_values().flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Takes the queued ids due at `now` and returns those whose records
    /// say they expired: a finished or removed one is dropped, one touched
    /// since is filed again under its last change (start-up files uploads
    /// under their creation).
    pub fn take_expired(&self, now: Timestamp, expire_after: std::time::Duration) -> Result<Vec<Uuid>> {
        let cutoff = Timestamp(now.0.saturating_sub(expire_after.as_millis() as u64));
        let mut due = Vec::new();
        for id in self.take_touched_before(cutoff) {
            self.forget_unrecorded(id)?;
            let Some(rec) = self.get(id)? else { continue };
            match rec.expires_at(expire_after) {
                Some(at) if at <= now => due.push(id),
                Some(_) => self.touch(rec.updated_at, id),
                None => {}
            }
        }
        Ok(due)
    }

    /// As a crash between a creation's two writes leaves it: the index
    /// entry without the record (for the conformance suite).
    #[cfg(test)]
    pub(crate) fn leave_entry_without_record(&self, rec: &UploadRecord) {
        let placement = rec.placement();
        let key = index::key(&placement, rec.project_id, rec.id).expect("an indexed record");
        self.by_state.insert(key, index::value(&placement)).unwrap();
    }

    /// Makes every earlier `put` durable. Concurrent callers share flushes.
    pub async fn flush(&self) -> Result<()> {
        self.flusher.flush().await.map_err(|e| SledError::Io(io::Error::other(e)))
    }

    pub fn flush_blocking(&self) -> Result<()> {
        self.flusher.flush_blocking().map_err(|e| SledError::Io(io::Error::other(e)))
    }

    pub fn tombstone(&self, id: Uuid) -> Result<Option<Tombstone>> {
        match self.gone.get(id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Forgets the upload's state and remembers why, so later requests get
    /// 410 rather than 404. The caller holds the upload's lock, flushes, and
    /// only then deletes the bytes (`remove_file`): a crash in between leaves
    /// an orphan file, never a record whose bytes are gone.
    pub fn remove(&self, id: Uuid, reason: GoneReason) -> Result<Option<UploadRecord>> {
        let removed = (&self.uploads, &self.gone, &self.by_state, &self.settled).transaction(
            |(uploads, gone, by_state, settled)| {
                let removed = match uploads.remove(id.as_bytes())? {
                    Some(v) => Some(decode(&v).map_err(ConflictableTransactionError::Abort)?),
                    None => None,
                };
                // Nothing to remove leaves the tombstone as it was: a second
                // removal must not turn its owner's 410 into a 404.
                if let Some(rec) = &removed {
                    let stone = Tombstone { reason, at: Timestamp::now(), project_id: Some(rec.project_id) };
                    gone.insert(
                        id.as_bytes(),
                        codec::encode(&stone).map_err(ConflictableTransactionError::Abort)?,
                    )?;
                    let p = rec.placement();
                    if let Some(k) = index::key(&p, rec.project_id, id) {
                        by_state.remove(&k[..])?;
                    }
                    settle(settled, rec.project_id, id, p.settled, Share::default())?;
                }
                Ok(removed)
            },
        )?;
        if let Some(rec) = &removed {
            self.remove_waiting_final(rec)?;
        }
        Ok(removed)
    }

    /// Whether a record for `id` exists.
    pub fn contains(&self, id: Uuid) -> Result<bool> {
        Ok(self.uploads.contains_key(id.as_bytes())?)
    }

    /// Forgets tombstones older than `before`.
    pub fn prune_tombstones(&self, before: Timestamp) -> Result<usize> {
        let mut n = 0;
        for item in self.gone.iter() {
            let (k, v) = item?;
            if let Ok(stone) = codec::decode::<Tombstone>(&v)
                && stone.at < before
            {
                self.gone.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every record, in id order: for tools and tests, never the server's
    /// own paths (those read the index).
    pub fn records(&self) -> impl Iterator<Item = Result<UploadRecord>> + '_ {
        self.uploads.iter().map(|item| {
            let (_, v) = item?;
            decode(&v)
        })
    }

    /// A project's assets, newest first, older than `cursor`, in `state`
    /// and of `kind` if given. Returns the page and the cursor of the next one.
    ///
    /// Costs what it returns: only index entries under the asked state and
    /// type are read (`index`). At most about `LIST_PAGE_BYTES` are returned,
    /// and at most `LIST_SCAN` stale entries skipped, so a page can be short
    /// with a cursor to go on from.
    pub fn list_assets(
        &self,
        project: Uuid,
        cursor: Option<Uuid>,
        limit: usize,
        state: Option<AssetState>,
        kind: Option<AssetType>,
    ) -> Result<(Vec<UploadRecord>, Option<Uuid>)> {
        let groups: Vec<u8> = match state {
            Some(s) => vec![state_group(s)],
            None => AssetState::ALL.iter().map(|s| state_group(*s)).collect(),
        };
        let kinds: Vec<u8> = match kind {
            Some(k) => vec![kind_code(k)],
            None => AssetType::ALL.iter().map(|k| kind_code(*k)).chain([KIND_UNKNOWN]).collect(),
        };
        let mut page = Vec::new();
        let mut bytes = 0;
        // The next page starts after the last asset returned, or after the
        // last entry read when the skip budget ran out before the page filled.
        let (mut last_read, mut last_kept) = (None, None);
        let mut skipped = 0;
        for item in index::Newest::new(&self.by_state, project, &groups, &kinds, cursor) {
            let full = page.len() == limit || bytes >= LIST_PAGE_BYTES;
            if skipped == LIST_SCAN {
                return Ok((page, if full { last_kept } else { last_read }));
            }
            let (id, key) = item?;
            let Some(raw) = self.uploads.get(id.as_bytes())? else {
                skipped += 1;
                last_read = Some(id);
                continue;
            };
            let rec = decode(&raw)?;
            let listed = rec.asset.as_ref().is_some_and(|a| {
                state.is_none_or(|s| a.state == s)
                    && kind.is_none_or(|k| a.sniffed.as_ref().is_some_and(|x| x.kind == k))
            });
            if !listed || index::key(&rec.placement(), project, id).as_ref().map(|k| &k[..]) != Some(&key[..])
            {
                skipped += 1;
                last_read = Some(id);
                continue;
            }
            if full {
                // Another match exists: the page gets a cursor.
                return Ok((page, last_kept));
            }
            bytes += raw.len();
            page.push(rec);
            (last_read, last_kept) = (Some(id), Some(id));
        }
        Ok((page, None))
    }

    /// Files a final upload as waiting for its parts (idempotent).
    pub fn add_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        let Concat::Final { parts, .. } = &rec.concat else { return Ok(()) };
        for part in parts {
            self.finals_by_part.insert(index_key(*part, rec.id), &[])?;
        }
        self.waiting_finals.insert(rec.id.as_bytes(), &[])?;
        Ok(())
    }

    pub fn remove_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        let Concat::Final { parts, .. } = &rec.concat else { return Ok(()) };
        for part in parts {
            self.finals_by_part.remove(index_key(*part, rec.id))?;
        }
        self.waiting_finals.remove(rec.id.as_bytes())?;
        Ok(())
    }

    /// The waiting finals that list `part`.
    pub fn finals_waiting_for(&self, part: Uuid) -> Result<Vec<Uuid>> {
        let mut out = Vec::new();
        for item in self.finals_by_part.scan_prefix(part.as_bytes()) {
            let (k, _) = item?;
            out.push(Uuid::from_slice(&k[16..]).map_err(|e| SledError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    pub fn waiting_finals(&self) -> Result<Vec<Uuid>> {
        let mut out = Vec::new();
        for item in self.waiting_finals.iter() {
            let (k, _) = item?;
            if let Ok(b) = <[u8; 16]>::try_from(&k[..]) {
                out.push(Uuid::from_bytes(b));
            }
        }
        Ok(out)
    }

    /// The in-flight index entries of every project: (key, id, project, is
    /// an asset, what start-up needs). Reads no record.
    fn in_flight(&self, mut each: impl FnMut(&[u8], Uuid, Uuid, bool, InFlight) -> Result<()>) -> Result<()> {
        for item in self.by_state.scan_prefix([group::IN_FLIGHT]) {
            let (key, value) = item?;
            let (Some(id), Ok(project), Some(entry)) =
                (index::id_of(&key), Uuid::from_slice(&key[1..17]), InFlight::decode(&value))
            else {
                continue;
            };
            each(&key, id, project, key[17] != KIND_PARTIAL, entry)?;
        }
        Ok(())
    }

    /// The sweeper took `id`: if start-up filed it from an entry that may
    /// have lost its record (a crash between a creation's two inserts),
    /// that entry goes unless the record is there.
    pub fn forget_unrecorded(&self, id: Uuid) -> Result<()> {
        let key = self.unverified.lock().expect("unverified entries").remove(&id);
        if let Some(key) = key
            && !self.uploads.contains_key(id.as_bytes())?
        {
            self.by_state.remove(key)?;
        }
        Ok(())
    }

    /// Every project's usage: the settled counters plus the uploads in
    /// flight, from their index entries.
    pub fn usage_totals(&self) -> Result<HashMap<Uuid, UsageFigures>> {
        let mut totals = self.settled_totals()?;
        self.in_flight(|_, _, project, asset, e| {
            add_share(&mut totals, project, Share { bytes: e.offset.0, asset, in_flight: !e.complete });
            Ok(())
        })?;
        Ok(totals)
    }

    fn settled_totals(&self) -> Result<HashMap<Uuid, UsageFigures>> {
        let mut totals = HashMap::new();
        for item in self.settled.iter() {
            let (k, v) = item?;
            let (Some(Ok(project)), Some((bytes, assets))) =
                (k.get(..16).map(Uuid::from_slice), decode_settled(&v))
            else {
                continue;
            };
            let t: &mut UsageFigures = totals.entry(project).or_default();
            t.bytes_stored += bytes;
            t.assets += assets;
        }
        Ok(totals)
    }

    /// Start-up, from the index alone (no record is read): every unfinished
    /// upload is filed for expiry under its creation time (the sweeper reads
    /// it when that is due and files it again under its last change), those
    /// with bytes are returned for the upload service to check against the
    /// byte store, and each project's usage is counted.
    pub fn resume(&self) -> Result<Resumed> {
        let mut resumed = Resumed { usage: self.settled_totals()?, ..Resumed::default() };
        self.in_flight(|key, id, project, asset, e| {
            if e.offset.0 == 0 && !e.complete {
                // As made by a creation: its record is looked for only when
                // the sweeper reads it (reading each here cost a page of
                // metadata apiece).
                let key: [u8; index::KEY_LEN] = key.try_into().expect("index keys are KEY_LEN bytes");
                self.unverified.lock().expect("unverified entries").insert(id, key);
            }
            let share = if e.complete {
                // Rare (processing starts right after the last byte), and
                // possibly an entry a crash left behind its record: checked.
                let current = self.get(id)?.map(|r| index::key(&r.placement(), project, id));
                if current.flatten().as_ref().map(|k| &k[..]) != Some(key) {
                    self.by_state.remove(key)?;
                    return Ok(());
                }
                resumed.not_started.push(id);
                Share { bytes: e.offset.0, asset, in_flight: false }
            } else {
                self.touch(Timestamp(id.get_timestamp().map_or(0, |t| t.to_unix().0 * 1000)), id);
                if e.offset.0 > 0 {
                    resumed.with_bytes.push((id, e.offset));
                }
                Share { bytes: e.offset.0, asset, in_flight: true }
            };
            add_share(&mut resumed.usage, project, share);
            Ok(())
        })?;
        Ok(resumed)
    }

    /// Assets left `processing` (by a crash or a stop), from the index;
    /// each checked against its record (few), and an entry whose record has
    /// moved on is removed.
    pub fn processing(&self) -> Result<Vec<Uuid>> {
        let mut ids = Vec::new();
        for item in self.by_state.scan_prefix([group::PROCESSING]) {
            let (key, _) = item?;
            let Some(id) = index::id_of(&key) else { continue };
            let current = self.get(id)?.and_then(|r| index::key(&r.placement(), r.project_id, id));
            if current.as_ref().map(|k| &k[..]) == Some(&key[..]) {
                ids.push(id);
            } else {
                self.by_state.remove(&key)?;
            }
        }
        Ok(ids)
    }
}

/// What `SledMeta::resume` found.
#[derive(Debug, Default)]
pub struct Resumed {
    pub usage: HashMap<Uuid, UsageFigures>,
    /// Complete uploads still `pending_upload`: their processing must start.
    pub not_started: Vec<Uuid>,
    /// Unfinished uploads with bytes, at their stored offsets.
    pub with_bytes: Vec<(Uuid, Offset)>,
}

fn index_key(project: Uuid, id: Uuid) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(project.as_bytes());
    k[16..].copy_from_slice(id.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<UploadRecord> {
    codec::decode(v)
}

fn placement_of(v: &[u8]) -> Result<Placement> {
    codec::decode::<PlacementView>(v).map(|p| p.placement())
}

/// The layout version `SledMeta::migrate` brings a data directory to.
const SCHEMA: u32 = 5;

fn encode_settled(bytes: u64, assets: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&bytes.to_be_bytes());
    v[8..].copy_from_slice(&assets.to_be_bytes());
    v
}

fn decode_settled(v: &[u8]) -> Option<(u64, u64)> {
    let bytes = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let assets = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((bytes, assets))
}

/// Moves `project`'s settled counters from `before` to `after`, inside a
/// transaction that also moves the record.
fn settle(
    tree: &TransactionalTree,
    project: Uuid,
    id: Uuid,
    before: Share,
    after: Share,
) -> std::result::Result<(), ConflictableTransactionError<SledError>> {
    if before.bytes == after.bytes && before.asset == after.asset {
        return Ok(());
    }
    let key = settled_key(project, id);
    let (bytes, assets) = tree.get(key)?.and_then(|v| decode_settled(&v)).unwrap_or((0, 0));
    let bytes = (bytes + after.bytes).saturating_sub(before.bytes);
    let assets = (assets + u64::from(after.asset)).saturating_sub(u64::from(before.asset));
    tree.insert(&key[..], encode_settled(bytes, assets).to_vec())?;
    Ok(())
}

/// Counters per project are split in 16 by upload id, so uploads of one
/// project completing at once rarely touch the same key: transactions on
/// one hot key conflicted and retried.
fn settled_key(project: Uuid, id: Uuid) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(project.as_bytes());
    k[16] = id.as_bytes()[15] & 0x0F;
    k
}

/// An in-flight entry only moving forward (a wind-back goes through a transaction).
fn grows(old: Placement, new: Placement) -> bool {
    match (old.entry, new.entry) {
        (Some(o), Some(n)) => n.offset >= o.offset && n.complete == o.complete,
        (o, n) => o == n,
    }
}

/// Adds an upload in flight (the others are in the settled counters).
fn add_share(totals: &mut HashMap<Uuid, UsageFigures>, project: Uuid, share: Share) {
    if !share.in_flight {
        return;
    }
    let t = totals.entry(project).or_default();
    t.bytes_stored += share.bytes;
    t.assets += u64::from(share.asset);
    t.uploads_in_flight += u64::from(share.in_flight);
}

#[cfg(test)]
mod index_tests;
