//! Where request bodies become upload bytes.
//!
//! The async side reads body frames and hands them, without copying, to a
//! blocking writer thread that appends them to the upload's file and feeds
//! the upload's running SHA-256 (and the request checksum, if any). The
//! channel between the two is short, so memory per upload stays bounded
//! whatever the size of the body.
//!
//! Bytes are first *staged*: written past the committed offset. `commit`
//! syncs them and only then stores the new offset; `discard` cuts them off
//! (a checksum mismatch). Long unverified bodies are checkpointed while they
//! stream so a crash or a dead client loses little.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Offset, Result, Store, StoreError, Timestamp, UploadRecord};
use crate::digest::{Algorithm, ChunkHasher, Sha256Stream};
use crate::events::Events;

/// Sync and record progress at least this often while a long body streams.
const CHECKPOINT_BYTES: u64 = 64 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Body frames in flight between the socket and the writer thread.
const PIPELINE_DEPTH: usize = 4;

/// How one request may append.
pub struct AppendPlan {
    /// Most bytes this request may store (declared length or size limit).
    pub limit: u64,
    /// Hash the body with this algorithm while writing (a claimed checksum).
    pub checksum: Option<Algorithm>,
    /// Keep every byte staged until the caller verifies it: no checkpoints.
    pub verify_before_commit: bool,
    pub read_timeout: Duration,
    /// Told about every checkpoint, so a long body shows progress as it streams.
    pub progress: Option<Arc<Events>>,
}

/// Why the body stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// The client sent the whole body.
    Finished,
    /// The body went on past `limit`; everything up to it was kept.
    OverLimit,
    /// The connection broke (client vanished, reset, malformed chunking).
    Broken(String),
    /// Nothing arrived for `read_timeout`.
    TimedOut,
    /// A newer request for the same upload, or shutdown, asked us to stop.
    Interrupted,
    /// Writing to disk failed.
    StorageFailed(String),
}

/// Bytes written past the committed offset, waiting for `commit` or `discard`.
pub struct Staged {
    store: Arc<Store>,
    /// The record as last committed (checkpoints move it forward).
    record: UploadRecord,
    /// Offset where this request started writing.
    start: u64,
    /// Bytes written by this request, from `start`.
    written: u64,
    sha256_after: Sha256Stream,
    checksum: Option<(Algorithm, Vec<u8>)>,
    file: Option<File>,
    pub end: BodyEnd,
    pub trailers: Option<HeaderMap>,
}

/// Streams `body` into the upload's file from its committed offset.
pub async fn stage<B>(
    store: Arc<Store>,
    record: UploadRecord,
    body: B,
    plan: AppendPlan,
    cancel: &CancellationToken,
) -> Result<Staged>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let start = record.offset.0;
    let (tx, rx) = mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let writer = {
        let store = store.clone();
        let record = record.clone();
        let checkpoints = (!plan.verify_before_commit).then(|| plan.progress.clone());
        let checksum = plan.checksum.map(Algorithm::hasher);
        tokio::task::spawn_blocking(move || write_loop(store, record, rx, checksum, checkpoints))
    };

    let mut body = pin!(body);
    let mut received = 0u64;
    let mut end = BodyEnd::Finished;
    let mut trailers = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => { end = BodyEnd::Interrupted; break; }
            next = tokio::time::timeout(plan.read_timeout, body.frame()) => next,
        };
        let frame = match next {
            Err(_) => {
                end = BodyEnd::TimedOut;
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                end = BodyEnd::Broken(e.to_string());
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(mut data) => {
                let room = plan.limit - received;
                let over = data.len() as u64 > room;
                if over {
                    data.truncate(room as usize);
                }
                received += data.len() as u64;
                if !data.is_empty() && tx.send(data).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
                if over {
                    end = BodyEnd::OverLimit;
                    break;
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    drop(tx);

    let done = writer.await.map_err(|e| StoreError::Io(io::Error::other(format!("writer thread: {e}"))))?;
    if let Some(err) = done.error {
        end = BodyEnd::StorageFailed(err.to_string());
    }
    Ok(Staged {
        store,
        record: done.record,
        start,
        written: done.written,
        sha256_after: done.sha256,
        checksum: done.checksum.map(|h| (plan.checksum.expect("hasher implies algorithm"), h.finalize())),
        file: done.file,
        end,
        trailers,
    })
}

struct WriterDone {
    record: UploadRecord,
    written: u64,
    sha256: Sha256Stream,
    checksum: Option<ChunkHasher>,
    file: Option<File>,
    error: Option<io::Error>,
}

fn write_loop(
    store: Arc<Store>,
    record: UploadRecord,
    mut rx: mpsc::Receiver<Bytes>,
    checksum: Option<ChunkHasher>,
    // `None`: no checkpoints (the bytes wait for verification).
    checkpoints: Option<Option<Arc<Events>>>,
) -> WriterDone {
    let runtime = tokio::runtime::Handle::current();
    let mut w = Writer {
        start: record.offset.0,
        hasher: Hasher::Inline(record.sha256.clone(), checksum),
        writeback_from: 0,
        store,
        record,
        written: 0,
        file: None,
        last_checkpoint: (0, Instant::now()),
    };
    let mut error = None;
    loop {
        let data = match rx.try_recv() {
            Ok(data) => data,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                // The client is slower than the disk. If bytes wait for a
                // checkpoint, wait only until one is due, so a slow body
                // still gets recorded (and shows progress) every second.
                let pending = checkpoints.is_some() && w.written > w.last_checkpoint.0;
                if !pending {
                    match rx.blocking_recv() {
                        Some(data) => data,
                        None => break,
                    }
                } else {
                    let due = CHECKPOINT_EVERY.saturating_sub(w.last_checkpoint.1.elapsed());
                    match runtime.block_on(tokio::time::timeout(due, rx.recv())) {
                        Ok(Some(data)) => data,
                        Ok(None) => break,
                        Err(_) => {
                            if let Err(e) = w.checkpoint(checkpoints.as_ref().and_then(Option::as_ref)) {
                                error = Some(e);
                                break;
                            }
                            continue;
                        }
                    }
                }
            }
        };
        if let Err(e) = w.write(&data) {
            error = Some(e);
            break;
        }
        if let Some(progress) = &checkpoints
            && (w.written - w.last_checkpoint.0 >= CHECKPOINT_BYTES
                || w.last_checkpoint.1.elapsed() >= CHECKPOINT_EVERY)
            && let Err(e) = w.checkpoint(progress.as_ref())
        {
            error = Some(e);
            break;
        }
    }
    let (sha256, checksum) = w.hasher.finish();
    WriterDone { record: w.record, written: w.written, sha256, checksum, file: w.file, error }
}

/// The blocking side of one append.
struct Writer {
    store: Arc<Store>,
    record: UploadRecord,
    start: u64,
    written: u64,
    hasher: Hasher,
    file: Option<File>,
    /// Bytes from here on have not been handed to the disk yet.
    writeback_from: u64,
    /// (bytes written, when) at the last checkpoint.
    last_checkpoint: (u64, Instant),
}

impl Writer {
    fn write(&mut self, data: &Bytes) -> io::Result<()> {
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(open_at(&self.store.file_path(self.record.id), self.start)?),
        };
        // A failed write may leave bytes past `written`; the next append cuts them off.
        f.write_all(data)?;
        self.written += data.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_BYTES {
            start_writeback(f, self.start + self.writeback_from, self.written - self.writeback_from);
            self.writeback_from = self.written;
        }
        // Past the first megabyte, hashing moves to its own thread: SHA-256
        // costs more CPU than the write, and the two then overlap.
        if self.written > HASH_THREAD_AFTER
            && let Hasher::Inline(..) = self.hasher
        {
            self.hasher.go_parallel();
        }
        self.hasher.update(data);
        Ok(())
    }

    /// Syncs what was written, then records it as the upload's offset.
    fn checkpoint(&mut self, progress: Option<&Arc<Events>>) -> io::Result<()> {
        let Some(f) = &self.file else { return Ok(()) };
        f.sync_data()?;
        self.record.offset = Offset(self.start + self.written);
        self.record.sha256 = self.hasher.snapshot();
        self.record.updated_at = Timestamp::now();
        let stored = self.store.put(&self.record).and_then(|()| self.store.flush_blocking());
        stored.map_err(|e| io::Error::other(e.to_string()))?;
        self.last_checkpoint = (self.written, Instant::now());
        if let Some(events) = progress {
            events.progress(&self.record);
        }
        Ok(())
    }
}

/// Start writing dirty pages to disk every this many bytes.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// Asks the kernel to start writing a range to disk without waiting for it,
/// so the `fdatasync` before an acknowledgement finds little left to do and
/// the writer does not stall on a gigabyte of dirty pages at the end.
fn start_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; failure only loses the hint.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Bodies smaller than this are hashed on the writer thread.
const HASH_THREAD_AFTER: u64 = 1 << 20;

/// The upload's running SHA-256 (and a request checksum), fed with the same
/// `Bytes` the writer writes: no copy, only a reference count.
// One per writer thread: boxing the inline state would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Hasher {
    Inline(Sha256Stream, Option<ChunkHasher>),
    Thread(
        std::sync::mpsc::SyncSender<HashMsg>,
        std::thread::JoinHandle<(Sha256Stream, Option<ChunkHasher>)>,
    ),
    /// Only for the moment of switching to a thread.
    Gone,
}

enum HashMsg {
    Data(Bytes),
    Snapshot(std::sync::mpsc::SyncSender<Sha256Stream>),
}

impl Hasher {
    fn update(&mut self, data: &Bytes) {
        match self {
            Hasher::Inline(sha, chunk) => {
                sha.update(data);
                if let Some(h) = chunk {
                    h.update(data);
                }
            }
            Hasher::Thread(tx, _) => {
                let _ = tx.send(HashMsg::Data(data.clone()));
            }
            Hasher::Gone => {}
        }
    }

    fn go_parallel(&mut self) {
        let Hasher::Inline(mut sha, mut chunk) = std::mem::replace(self, Hasher::Gone) else { return };
        let (tx, rx) = std::sync::mpsc::sync_channel::<HashMsg>(PIPELINE_DEPTH);
        let handle = std::thread::spawn(move || {
            for msg in rx {
                match msg {
                    HashMsg::Data(d) => {
                        sha.update(&d);
                        if let Some(h) = &mut chunk {
                            h.update(&d);
                        }
                    }
                    HashMsg::Snapshot(reply) => {
                        let _ = reply.send(sha.clone());
                    }
                }
            }
            (sha, chunk)
        });
        *self = Hasher::Thread(tx, handle);
    }

    /// The SHA-256 state after everything written so far.
    fn snapshot(&self) -> Sha256Stream {
        match self {
            Hasher::Inline(sha, _) => sha.clone(),
            Hasher::Thread(tx, _) => {
                let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
                let _ = tx.send(HashMsg::Snapshot(reply_tx));
                reply_rx.recv().expect("hashing thread alive")
            }
            Hasher::Gone => unreachable!("hasher used after it failed"),
        }
    }

    fn finish(self) -> (Sha256Stream, Option<ChunkHasher>) {
        match self {
            Hasher::Inline(sha, chunk) => (sha, chunk),
            Hasher::Thread(tx, handle) => {
                drop(tx);
                handle.join().expect("hashing thread")
            }
            Hasher::Gone => unreachable!("hasher used after it failed"),
        }
    }
}

fn open_at(path: &Path, offset: u64) -> io::Result<File> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    // Drop any tail a crash or a discarded chunk left past the committed offset.
    f.set_len(offset)?;
    f.seek(SeekFrom::Start(offset))?;
    Ok(f)
}

impl Staged {
    /// Bytes this request put on disk (committed by checkpoints or staged).
    pub fn received(&self) -> u64 {
        self.written
    }

    /// Some of this request's bytes were already committed by a checkpoint.
    pub fn checkpointed(&self) -> bool {
        self.record.offset.0 > self.start
    }

    /// The offset this request started at.
    pub fn start(&self) -> Offset {
        Offset(self.start)
    }

    /// Digest of this request's bytes: computed while writing if that
    /// algorithm was planned, else re-read from the file (trailer checksums
    /// name their algorithm only after the body).
    pub async fn digest(&mut self, algorithm: Algorithm) -> Result<Vec<u8>> {
        if let Some((alg, digest)) = &self.checksum
            && *alg == algorithm
        {
            return Ok(digest.clone());
        }
        let path = self.store.file_path(self.record.id);
        let (start, len) = (self.start, self.written);
        let digest = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut h = algorithm.hasher();
            read_range(&path, start, len, |chunk| h.update(chunk))?;
            Ok(h.finalize())
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))??;
        Ok(digest)
    }

    /// Syncs the staged bytes, then records the new offset and digest state.
    pub async fn commit(self) -> Result<UploadRecord> {
        let Staged { store, mut record, start, written, sha256_after, file, .. } = self;
        let end = start + written;
        if record.offset.0 == end {
            return Ok(record); // nothing new, or the last checkpoint covered it
        }
        if let Some(file) = file {
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))??;
        }
        record.offset = Offset(end);
        record.sha256 = sha256_after;
        record.updated_at = Timestamp::now();
        store.put(&record)?;
        store.flush().await?;
        Ok(record)
    }

    /// Cuts the staged bytes off; the committed offset does not move.
    pub async fn discard(self) -> Result<UploadRecord> {
        let Staged { record, file, .. } = self;
        if let Some(file) = file {
            let offset = record.offset.0;
            tokio::task::spawn_blocking(move || file.set_len(offset))
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))??;
        }
        Ok(record)
    }
}

/// SHA-256 of the first `len` bytes of a file (recovery only).
pub fn hash_prefix(path: &Path, len: u64) -> io::Result<Sha256Stream> {
    let mut h = Sha256Stream::default();
    read_range(path, 0, len, |chunk| h.update(chunk))?;
    Ok(h)
}

/// Feeds `len` bytes of a file from `start` to `each`, a megabyte at a time.
fn read_range(path: &Path, start: u64, len: u64, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut reader = f.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n]);
    }
}

/// Writes the concatenation of `parts` (each with its length) into the final
/// upload's file, hashing as it goes, and syncs it. Blocking.
pub fn assemble(
    store: &Store,
    final_id: uuid::Uuid,
    parts: &[(uuid::Uuid, u64)],
) -> io::Result<Sha256Stream> {
    // A final upload has no data file until now, and its shard folder may not exist yet.
    let path = store.file_path(final_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
    let mut h = Sha256Stream::default();
    let mut buf = vec![0u8; 1 << 20];
    for (id, len) in parts {
        let mut reader = store.open_read(*id)?.take(*len);
        let mut copied = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            copied += n as u64;
        }
        if copied != *len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("partial upload {id} has {copied} of its {len} bytes on disk"),
            ));
        }
    }
    out.sync_data()?;
    Ok(h)
}
