//! Where request bodies become upload bytes.
//!
//! The connection's task copies each body frame once into page-aligned
//! [`Block`]s (see `crate::blocks`) and gives the frame straight back to hyper.
//! Full blocks go, shared and not copied again, to two threads: one feeds the
//! upload's running SHA-256 (and the request checksum, if any), the other
//! writes them to the upload's file with `O_DIRECT`, joining queued blocks
//! into larger writes. The socket, the hash and the disk thus overlap, and
//! memory per upload is a few blocks whatever the size of the body.
//!
//! Bytes are first *staged*: written past the committed offset. `commit`
//! syncs them and only then stores the new offset (flushing the metadata
//! only where `store_offset` says); `discard` cuts them off (a checksum
//! mismatch). Long unverified bodies are checkpointed while they
//! stream so a crash or a dead client loses little.

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::blocks::{ALIGN, BLOCK_SIZE, Block, Blocks};
use crate::digest::{Algorithm, ChunkHasher, Sha256Stream};
use crate::ports::StoreError;
use crate::ports::bytes::{ByteStore, Loc, Sink};
use crate::ports::events::EventBus;
use crate::ports::meta::MetaStore;
use crate::record::{Offset, Timestamp, UploadRecord};

type Result<T> = std::result::Result<T, StoreError>;
use crate::usage::Budget;

/// Sync and record progress at least this often while a long body streams.
const CHECKPOINT_BYTES: u64 = 64 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// On a store whose syncs are cheap only at an edge (a bucket's part), a
/// due checkpoint waits for the next edge, but not longer than this: a fast
/// body crosses an edge every few tens of milliseconds, a slow one pays for
/// a tail at most this often instead of every second.
const CHECKPOINT_OFF_EDGE: Duration = Duration::from_secs(10);
/// How often a streaming body checks the file system's free space.
const SPACE_CHECK_BYTES: u64 = 1 << 20;
/// Largest single write the disk thread makes of queued blocks.
const MAX_WRITE: usize = 4 << 20;

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
    pub progress: Option<EventBus>,
    /// Stop (keeping what arrived) when the file system has fewer bytes free (0: never).
    pub min_free_space: u64,
    /// The project's bytes: every byte is counted as it arrives, and the
    /// body stops (keeping what fit) at the project's quota.
    pub budget: Budget,
    /// Refuse the body as soon as the upload's first bytes show a type that
    /// is not allowed.
    pub sniff: Option<SniffGate>,
}

/// Watches an upload's first bytes as they arrive.
pub struct SniffGate {
    /// The upload's bytes before this request's.
    pub prefix: Vec<u8>,
    /// How many leading bytes decide: the sniff window, or the whole upload if shorter.
    pub want: usize,
    /// True if these leading bytes must be refused.
    pub refuse: RefuseFn,
}

/// Decides on an upload's leading bytes: true to refuse them.
pub type RefuseFn = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

impl SniffGate {
    /// Takes the next bytes; `Some(refused)` once enough have arrived to decide.
    fn feed(&mut self, data: &[u8]) -> Option<bool> {
        let need = self.want.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&data[..need.min(data.len())]);
        (self.prefix.len() >= self.want).then(|| (self.refuse)(&self.prefix))
    }
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
    /// The file system fell below the free space kept in reserve; what
    /// arrived before was kept.
    ReserveReached { free: u64 },
    /// The project's quota is full; the bytes that fit were kept.
    QuotaReached,
    /// The first bytes are of a type that is not allowed ([`SniffGate`]);
    /// `Staged::sniffed_prefix` holds them.
    TypeRefused,
    /// Writing to disk failed.
    StorageFailed(StorageFailure),
}

/// Why bytes could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFailure {
    pub message: String,
    /// The file system or a quota is full: the client can retry once space
    /// is freed (507 rather than 500).
    pub full: bool,
    /// The store is away for now (object storage unreachable): 503.
    pub unavailable: bool,
}

impl From<io::Error> for StorageFailure {
    fn from(e: io::Error) -> Self {
        let full = matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded);
        StorageFailure { message: e.to_string(), full, unavailable: crate::ports::unavailable(&e) }
    }
}

/// Bytes written past the committed offset, waiting for `commit` or `discard`.
pub struct Staged {
    meta: MetaStore,
    bytes: Arc<ByteStore>,
    /// The record as last committed (checkpoints move it forward).
    record: UploadRecord,
    /// Offset where this request started writing.
    start: u64,
    /// Bytes written by this request, from `start`.
    written: u64,
    sha256_after: Sha256Stream,
    checksum: Option<(Algorithm, Vec<u8>)>,
    sink: Option<Sink>,
    pub end: BodyEnd,
    pub trailers: Option<HeaderMap>,
    /// The upload's leading bytes as the sniff gate saw them.
    pub sniffed_prefix: Option<Vec<u8>>,
    budget: Budget,
}

/// Stores a new offset whose bytes are synced already. One that completes
/// the upload is flushed at once (processing starts from it). Any other
/// rides on the data file's sync: the record is only put, and becomes
/// durable with the next flush of the store (any request's, or the
/// background flusher's); if the process dies first, start-up takes the
/// synced file's length (`uploads::resume`), which the `lazy` flag allows.
/// The first such store of an upload is flushed, so that the flag itself is
/// durable. On a disk whose syncs are slow this halves what every PATCH
/// waits for after its last byte. A store whose length is not the offset's
/// truth (a bucket) gets every offset flushed.
async fn store_offset(meta: &MetaStore, bytes: &ByteStore, record: &mut UploadRecord) -> Result<()> {
    let lazy = !record.is_complete() && bytes.length_is_offset();
    let flush = !(lazy && record.lazy);
    record.lazy = lazy;
    meta.put(record).await?;
    if flush {
        meta.flush().await?;
    }
    Ok(())
}

/// Streams `body` into the upload's file from its committed offset.
pub async fn stage<B>(
    meta: MetaStore,
    bytes: Arc<ByteStore>,
    mut record: UploadRecord,
    body: B,
    plan: AppendPlan,
    cancel: &CancellationToken,
) -> Result<Staged>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let checkpoints = !plan.verify_before_commit;
    if plan.verify_before_commit && record.lazy {
        // Bytes that may yet be discarded go past the offset: the stored
        // record must say exactly where the kept bytes end first, or a crash
        // before the discard would let start-up take them.
        record.lazy = false;
        meta.put(&record).await?;
        meta.flush().await?;
    }
    let mut budget = plan.budget;
    let mut gate = plan.sniff.filter(|g| g.want > g.prefix.len());
    // A body with a length says where it ends: a store may send what it
    // will surely fill while it arrives (a hint: the body may still stop short).
    let declared_end = body.size_hint().exact().map(|n| record.offset.0 + n.min(plan.limit));
    let mut app = Appender::new(meta, bytes, record, plan.checksum, plan.progress);
    app.declared_end = declared_end;
    let mut body = pin!(body);
    let mut received = 0u64;
    let mut next_space_check = 0u64;
    let mut end = BodyEnd::Finished;
    let mut trailers = None;
    let align = app.bytes.sync_alignment();
    loop {
        // What the last checkpoint stored is no longer only streaming.
        budget.recorded(app.recorded);
        // A slow body still gets recorded (and shows progress) every second,
        // or at the next edge where a sync is cheap.
        let due = (checkpoints && app.unrecorded()).then(|| {
            let every = if app.edge_wanted { CHECKPOINT_OFF_EDGE } else { CHECKPOINT_EVERY };
            every.saturating_sub(app.last_checkpoint.elapsed())
        });
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => { end = BodyEnd::Interrupted; break; }
            _ = sleep_opt(due) => {
                if app.wait_for_edge(align) {
                    continue;
                }
                if let Err(e) = app.checkpoint().await {
                    end = BodyEnd::StorageFailed(e.into());
                    break;
                }
                continue;
            }
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
            Ok(data) => {
                let room = plan.limit - received;
                let over = data.len() as u64 > room;
                let data = if over { &data[..room as usize] } else { &data[..] };
                // Free space is checked before the first byte and then every
                // SPACE_CHECK_BYTES: an fstatvfs is about a microsecond.
                if received >= next_space_check {
                    next_space_check = received + SPACE_CHECK_BYTES;
                    if let Some(free) = app.bytes.short_of_space(plan.min_free_space) {
                        end = BodyEnd::ReserveReached { free };
                        break;
                    }
                }
                let granted = budget.take(data.len() as u64) as usize;
                let quota_full = granted < data.len();
                let data = &data[..granted];
                received += data.len() as u64;
                if let Err(e) = app.push_at_edges(data, align).await {
                    end = BodyEnd::StorageFailed(e.into());
                    break;
                }
                if let Some(g) = &mut gate
                    && let Some(refused) = g.feed(data)
                {
                    if refused {
                        end = BodyEnd::TypeRefused;
                        break;
                    }
                    gate = None;
                }
                if over {
                    end = BodyEnd::OverLimit;
                    break;
                }
                if quota_full {
                    end = BodyEnd::QuotaReached;
                    break;
                }
                if checkpoints
                    && (app.written - app.recorded >= CHECKPOINT_BYTES
                        || app.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
                    && !app.wait_for_edge(align)
                    && let Err(e) = app.checkpoint().await
                {
                    end = BodyEnd::StorageFailed(e.into());
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

    let end_refused = end == BodyEnd::TypeRefused;
    let mut done = app.finish().await;
    let written = match done.error.take() {
        None => done.written,
        Some(e) => {
            // Nothing past the last checkpoint is known to be on disk. What
            // did get written past it is cut off, so a full disk gets its
            // space back and the file never runs past its offset.
            if let Some(sink) = done.sink.take() {
                let offset = done.record.offset.0;
                done.sink = tokio::task::spawn_blocking(move || {
                    let mut sink = sink;
                    let _ = sink.truncate(offset);
                    sink
                })
                .await
                .ok();
            }
            end = BodyEnd::StorageFailed(e.into());
            done.record.offset.0 - done.start
        }
    };
    Ok(Staged {
        meta: done.meta,
        bytes: done.bytes,
        record: done.record,
        start: done.start,
        written,
        sha256_after: done.sha256,
        checksum: done.checksum.map(|h| (plan.checksum.expect("hasher implies algorithm"), h.finalize())),
        sink: done.sink,
        end,
        trailers,
        sniffed_prefix: match (end_refused, gate) {
            (true, Some(g)) => Some(g.prefix),
            _ => None,
        },
        budget,
    })
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The async side of one append: fills blocks and feeds the pipeline.
struct Appender {
    meta: MetaStore,
    bytes: Arc<ByteStore>,
    /// The record as last committed (checkpoints move it forward).
    record: UploadRecord,
    start: u64,
    /// Bytes of this request handed to the pipeline or sitting in `current`.
    written: u64,
    /// Bytes of this request recorded by the last checkpoint.
    recorded: u64,
    last_checkpoint: Instant,
    checksum: Option<Algorithm>,
    progress: Option<EventBus>,
    /// Where the body says it ends, if it has a length.
    declared_end: Option<u64>,
    /// A checkpoint is due and waits for the next sync edge.
    edge_wanted: bool,
    blocks: Blocks,
    /// The block being filled.
    current: Option<Block>,
    /// Where the next block starts once `current` was sent full.
    next_offset: u64,
    pipeline: Option<Pipeline>,
}

struct AppendDone {
    meta: MetaStore,
    bytes: Arc<ByteStore>,
    record: UploadRecord,
    start: u64,
    written: u64,
    sha256: Sha256Stream,
    checksum: Option<ChunkHasher>,
    sink: Option<Sink>,
    error: Option<io::Error>,
}

impl Appender {
    fn new(
        meta: MetaStore,
        bytes: Arc<ByteStore>,
        record: UploadRecord,
        checksum: Option<Algorithm>,
        progress: Option<EventBus>,
    ) -> Appender {
        let start = record.offset.0;
        Appender {
            meta,
            bytes,
            record,
            start,
            written: 0,
            recorded: 0,
            last_checkpoint: Instant::now(),
            checksum,
            progress,
            declared_end: None,
            edge_wanted: false,
            blocks: Blocks::default(),
            current: None,
            next_offset: 0,
            pipeline: None,
        }
    }

    fn unrecorded(&self) -> bool {
        self.written > self.recorded
    }

    /// A checkpoint is due: true if it is to wait for the next edge of
    /// `align` (the bytes are not at one, and it has not waited too long).
    fn wait_for_edge(&mut self, align: Option<u64>) -> bool {
        let Some(align) = align else { return false };
        let at_edge = (self.start + self.written).is_multiple_of(align);
        self.edge_wanted = !at_edge && self.last_checkpoint.elapsed() < CHECKPOINT_OFF_EDGE;
        self.edge_wanted
    }

    /// Pushes `data`; a checkpoint waiting for an edge is taken exactly there.
    async fn push_at_edges(&mut self, mut data: &[u8], align: Option<u64>) -> io::Result<()> {
        if let (true, Some(align)) = (self.edge_wanted, align) {
            let to_edge = (align - (self.start + self.written) % align) as usize;
            if to_edge <= data.len() {
                self.push(&data[..to_edge]).await?;
                data = &data[to_edge..];
                self.checkpoint().await?;
            }
        }
        self.push(data).await
    }

    async fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let block = match &mut self.current {
                Some(b) => b,
                None => {
                    let b = match &self.pipeline {
                        None => self.start_pipeline().await?,
                        Some(_) => self.blocks.next(self.next_offset).await?,
                    };
                    self.current.insert(b)
                }
            };
            let n = block.fill(data);
            data = &data[n..];
            self.written += n as u64;
            if block.is_full() {
                let block = self.current.take().expect("current block");
                self.next_offset = block.offset() + BLOCK_SIZE as u64;
                self.send(block)?;
            }
        }
        Ok(())
    }

    /// Opens the file and starts the threads; returns the first block,
    /// which starts at the page of the committed offset.
    async fn start_pipeline(&mut self) -> io::Result<Block> {
        let (bytes, id, start, end) =
            (self.bytes.clone(), Loc::of(&self.record), self.start, self.declared_end);
        let checksum = self.checksum.map(Algorithm::hasher);
        let sha256 = self.record.sha256.clone();
        if start % ALIGN == 0 && !bytes.open_may_wait() {
            // No partial page to read first: the disk thread opens the file
            // while the first block fills, off the request's path.
            let first = self.blocks.next(start).await?;
            let open = Box::new(move || bytes.open_append_blocking(id, start, end).map(|(sink, _)| sink));
            self.pipeline = Some(Pipeline::start(open, sha256, checksum));
            return Ok(first);
        }
        let (file, head) = tokio::task::spawn_blocking(move || bytes.open_append_blocking(id, start, end))
            .await
            .map_err(io::Error::other)??;
        let first = self.blocks.first(start, &head).await?;
        self.pipeline = Some(Pipeline::start(Box::new(move || Ok(file)), sha256, checksum));
        Ok(first)
    }

    fn send(&self, block: Block) -> io::Result<()> {
        let pipeline = self.pipeline.as_ref().expect("a block implies a pipeline");
        pipeline.send(block).map_err(|()| io::Error::other("the disk writer stopped"))
    }

    /// Sends the partly filled block, if it has new bytes. With `carry`, its
    /// last partial page becomes the start of the next block.
    async fn send_partial(&mut self, carry: bool) -> io::Result<()> {
        let Some(block) = self.current.take() else { return Ok(()) };
        if block.unhashed().is_empty() {
            self.current = Some(block);
            return Ok(());
        }
        // Copied out before the block is sent: waiting for a new block while
        // holding this one could wait forever when the shared budget is spent.
        let aligned = block.aligned_len();
        let mut tail = [0u8; ALIGN as usize];
        let tail = {
            let rest = &block.data()[aligned..];
            tail[..rest.len()].copy_from_slice(rest);
            &tail[..rest.len()]
        };
        let end = block.offset() + block.len() as u64;
        self.send(block)?;
        if carry && !tail.is_empty() {
            self.current = Some(self.blocks.first(end, tail).await?);
        } else {
            self.next_offset = end;
        }
        Ok(())
    }

    /// Syncs what was written, then records it as the upload's offset.
    async fn checkpoint(&mut self) -> io::Result<()> {
        self.edge_wanted = false;
        if !self.unrecorded() {
            self.last_checkpoint = Instant::now();
            return Ok(());
        }
        self.send_partial(true).await?;
        let pipeline = self.pipeline.as_ref().expect("bytes imply a pipeline");
        let sha256 = pipeline.sync().await?;
        self.record.offset = Offset(self.start + self.written);
        self.record.sha256 = sha256;
        self.record.updated_at = Timestamp::now();
        store_offset(&self.meta, &self.bytes, &mut self.record)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.recorded = self.written;
        self.last_checkpoint = Instant::now();
        if let Some(events) = &self.progress {
            events.progress(&self.record);
        }
        Ok(())
    }

    /// Writes what is left, syncs it (while the hash catches up), stops the
    /// threads and hands back what they hold.
    async fn finish(mut self) -> AppendDone {
        let mut error = self.send_partial(false).await.err();
        self.current = None;
        let sync = self.unrecorded();
        let (sha256, checksum, sink) = match self.pipeline.take() {
            Some(p) => {
                let (sink, disk_error, sha256, checksum) = p.finish(sync).await;
                // The disk thread's own error (a failed open, a full disk)
                // says more than the "stopped" that sending to it got.
                error = disk_error.or(error);
                (sha256, checksum, sink)
            }
            None => (self.record.sha256.clone(), None, None),
        };
        AppendDone {
            meta: self.meta,
            bytes: self.bytes,
            record: self.record,
            start: self.start,
            written: self.written,
            sha256,
            // A request with a planned checksum but no bytes still gets a digest (of nothing).
            checksum: checksum.or_else(|| self.checksum.map(Algorithm::hasher)),
            sink,
            error,
        }
    }
}

enum DiskMsg {
    Block(Arc<Block>),
    /// fdatasync everything written before this message.
    Sync(oneshot::Sender<io::Result<()>>),
}

enum HashMsg {
    Block(Arc<Block>),
    /// The SHA-256 state after every block before this message.
    Snapshot(oneshot::Sender<Sha256Stream>),
}

/// The disk thread and the hash thread of one append.
struct Pipeline {
    disk: sync_mpsc::Sender<DiskMsg>,
    hash: sync_mpsc::Sender<HashMsg>,
    disk_done: oneshot::Receiver<(Option<Sink>, Option<io::Error>)>,
    hash_done: oneshot::Receiver<(Sha256Stream, Option<ChunkHasher>)>,
}

/// Opens the upload's file for the disk thread.
type OpenSink = Box<dyn FnOnce() -> io::Result<Sink> + Send>;

/// Runs `f` on a new thread and hands its result to the returned receiver.
/// Not tokio's blocking pool: these threads live as long as a request body,
/// and with many slow uploads they could take every pool thread from the
/// short jobs (syncs, file opens) that finish requests. Not kept for reuse
/// either: a pool of idle threads saved small PATCHes nothing measurable
/// and cost 8 MiB PATCHes 11 % (benches/RESULTS.md, issue 15), as woken
/// threads lost the spread over the cores a new thread gets.
fn spawn_stage<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.into()).stack_size(256 << 10).spawn(move || {
        let _ = tx.send(f());
    });
    if let Err(e) = spawned {
        // The receiver reports a stopped thread; the request fails with a storage error.
        tracing::error!(error = %e, "could not start an upload thread");
    }
    rx
}

impl Pipeline {
    fn start(open: OpenSink, sha256: Sha256Stream, checksum: Option<ChunkHasher>) -> Pipeline {
        // Unbounded channels: the blocks themselves are the bound (`Blocks`).
        let (disk, disk_rx) = sync_mpsc::channel();
        let (hash, hash_rx) = sync_mpsc::channel();
        Pipeline {
            disk,
            hash,
            disk_done: spawn_stage("tusk-disk", move || match open() {
                Ok(file) => disk_loop(file, disk_rx),
                Err(e) => (None, Some(e)),
            }),
            hash_done: spawn_stage("tusk-hash", move || hash_loop(hash_rx, sha256, checksum)),
        }
    }

    fn send(&self, block: Block) -> std::result::Result<(), ()> {
        let block = Arc::new(block);
        self.hash.send(HashMsg::Block(block.clone())).map_err(drop)?;
        self.disk.send(DiskMsg::Block(block)).map_err(drop)
    }

    /// Waits until everything sent is on disk and hashed; returns the hash state.
    async fn sync(&self) -> io::Result<Sha256Stream> {
        let stopped = || io::Error::other("the disk writer stopped");
        let (synced_tx, synced) = oneshot::channel();
        let (hashed_tx, hashed) = oneshot::channel();
        self.disk.send(DiskMsg::Sync(synced_tx)).map_err(|_| stopped())?;
        self.hash.send(HashMsg::Snapshot(hashed_tx)).map_err(|_| stopped())?;
        synced.await.map_err(|_| stopped())??;
        hashed.await.map_err(|_| io::Error::other("the hashing thread stopped"))
    }

    /// Stops the threads once they are done; with `sync`, the disk thread
    /// syncs the file last, so the sync overlaps the hash's last blocks.
    async fn finish(
        self,
        sync: bool,
    ) -> (Option<Sink>, Option<io::Error>, Sha256Stream, Option<ChunkHasher>) {
        let Pipeline { disk, hash, disk_done, hash_done } = self;
        let synced = sync.then(|| {
            let (tx, rx) = oneshot::channel();
            let _ = disk.send(DiskMsg::Sync(tx));
            rx
        });
        drop((disk, hash));
        let (file, mut error) = match disk_done.await {
            Ok((sink, error)) => (sink, error),
            Err(_) => (None, Some(io::Error::other("the disk thread stopped"))),
        };
        if let Some(synced) = synced
            && error.is_none()
        {
            error = match synced.await {
                Ok(result) => result.err(),
                Err(_) => Some(io::Error::other("the disk thread stopped before syncing")),
            };
        }
        match hash_done.await {
            Ok((sha256, checksum)) => (file, error, sha256, checksum),
            Err(_) => {
                (None, Some(io::Error::other("the hashing thread stopped")), Sha256Stream::default(), None)
            }
        }
    }
}

/// Writes blocks in order; joins the ones already queued into one write.
/// Stops at the first error (dropping the queue, which frees its blocks).
fn disk_loop(mut file: Sink, rx: sync_mpsc::Receiver<DiskMsg>) -> (Option<Sink>, Option<io::Error>) {
    let mut run: Vec<Arc<Block>> = Vec::with_capacity(MAX_WRITE / BLOCK_SIZE);
    let mut held = None;
    loop {
        let msg = match held.take() {
            Some(msg) => msg,
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => return (Some(file), None),
            },
        };
        match msg {
            DiskMsg::Sync(reply) => {
                let _ = reply.send(file.sync());
            }
            DiskMsg::Block(block) => {
                run.push(block);
                while let Some(last) = run.last()
                    && last.is_full()
                    && run.len() * BLOCK_SIZE < MAX_WRITE
                {
                    match rx.try_recv() {
                        Ok(DiskMsg::Block(next)) if next.offset() == last.offset() + BLOCK_SIZE as u64 => {
                            run.push(next)
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = file.write_run(&run);
                run.clear();
                if let Err(e) = result {
                    return (Some(file), Some(e));
                }
            }
        }
    }
}

fn hash_loop(
    rx: sync_mpsc::Receiver<HashMsg>,
    mut sha256: Sha256Stream,
    mut checksum: Option<ChunkHasher>,
) -> (Sha256Stream, Option<ChunkHasher>) {
    for msg in rx {
        match msg {
            HashMsg::Block(block) => {
                let data = block.unhashed();
                sha256.update(data);
                if let Some(h) = &mut checksum {
                    h.update(data);
                }
            }
            HashMsg::Snapshot(reply) => {
                let _ = reply.send(sha256.clone());
            }
        }
    }
    (sha256, checksum)
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
        Ok(self.bytes.digest(Loc::of(&self.record), self.start, self.written, algorithm).await?)
    }

    /// Records the new offset and digest state; `stage` already synced the bytes.
    pub async fn commit(mut self) -> Result<UploadRecord> {
        let end = self.start + self.written;
        if self.record.offset.0 == end {
            return Ok(self.record.clone()); // nothing new, or the last checkpoint covered it
        }
        let mut record = self.record.clone();
        record.offset = Offset(end);
        record.sha256 = self.sha256_after.clone();
        record.updated_at = Timestamp::now();
        store_offset(&self.meta, &self.bytes, &mut record).await?;
        self.record = record;
        Ok(self.record.clone())
    }

    /// Cuts the staged bytes off; the committed offset does not move.
    pub async fn discard(mut self) -> Result<UploadRecord> {
        if let Some(mut sink) = self.sink.take() {
            let offset = self.record.offset.0;
            tokio::task::spawn_blocking(move || sink.truncate(offset))
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))??;
        }
        Ok(self.record.clone())
    }
}

impl Drop for Staged {
    /// The project's usage keeps what this request committed and gives
    /// back the rest it counted.
    fn drop(&mut self) {
        self.budget.settle(self.record.offset.0.saturating_sub(self.start));
    }
}
