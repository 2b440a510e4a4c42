//! The byte store port: where upload bytes live, whatever holds them.
//!
//! Everything above this port (the upload service, downloads, sniffing,
//! probing, concatenation) names an upload by id and a byte range, never a
//! path. What a backend can do beyond the core (append at an offset with a
//! durable end, read a range, length, concatenate, delete) is an optional
//! capability the caller asks for and copes without: free space (local disks
//! have a reserve to keep; object storage has none), a local path (probing
//! reads containers with seeks), reading bytes before the upload is complete
//! (object storage cannot read the parts of an unfinished multipart upload),
//! and offsets that may lag the stored length (files, whose synced length is
//! the truth at start; in a bucket the record is).
//!
//! Enum dispatch rather than a trait object: the calls are async, and
//! `async fn` in a trait is not object-safe without boxing every future; an
//! enum keeps `App` concrete, costs one `match` per call, and makes adding a
//! backend a compile error at every place that must learn about it.
//! Blocking file work runs on tokio's blocking pool here, so callers only
//! `.await`.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use crate::backends::files::{FileSink, Files};
use crate::backends::s3::store::{S3Sink, S3Store};
use crate::blocks::Block;
use crate::digest::{Algorithm, Sha256Stream};
use crate::record::UploadRecord;

/// A stream of stored bytes (a download's body).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub enum ByteStore {
    Files(Arc<Files>),
    S3(Arc<S3Store>),
}

/// What probing reads through.
pub trait ReadSeek: io::Read + io::Seek + Send {}
impl<T: io::Read + io::Seek + Send> ReadSeek for T {}

/// Which upload's bytes: object keys name the project as well as the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub project: Uuid,
    pub id: Uuid,
}

impl Loc {
    pub fn of(rec: &UploadRecord) -> Loc {
        Loc { project: rec.project_id, id: rec.id }
    }
}

pub use crate::backends::files::nearly_full;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(e.to_string()))?
}

impl ByteStore {
    /// Bytes stored for the upload (0 if none yet). Blocking: a `stat`, or
    /// calls to the bucket.
    pub fn len_blocking(&self, loc: Loc) -> io::Result<u64> {
        match self {
            ByteStore::Files(f) => f.len(loc.id),
            ByteStore::S3(s) => block(s.len(loc.project, loc.id)),
        }
    }

    /// Whether the upload has stored bytes at all. Blocking.
    pub fn exists_blocking(&self, loc: Loc) -> io::Result<bool> {
        match self {
            ByteStore::Files(f) => f.exists(loc.id),
            ByteStore::S3(s) => block(s.exists(loc.project, loc.id)),
        }
    }

    pub async fn len(&self, loc: Loc) -> io::Result<u64> {
        match self {
            // One stat: cheaper than a trip to the blocking pool.
            ByteStore::Files(f) => f.len(loc.id),
            ByteStore::S3(s) => s.len(loc.project, loc.id).await,
        }
    }

    /// Capability: the stored length is the durable truth about an upload's
    /// offset (a file's synced length), so an offset may be recorded lazily
    /// and start-up may take it from the store. False for a bucket, whose
    /// tails may hold bytes past what was committed.
    pub fn length_is_offset(&self) -> bool {
        matches!(self, ByteStore::Files(_))
    }

    /// Capability: bytes of an unfinished upload can be read back (beyond
    /// its first [`crate::asset::SNIFF_BYTES`], which every store can).
    pub fn reads_unfinished(&self) -> bool {
        matches!(self, ByteStore::Files(_))
    }

    /// `len` bytes from `start`, as a stream.
    pub async fn read(&self, loc: Loc, start: u64, len: u64) -> io::Result<ByteStream> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        match self {
            ByteStore::Files(f) => {
                let mut file = tokio::fs::File::open(f.path(loc.id)).await?;
                file.seek(io::SeekFrom::Start(start)).await?;
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10)))
            }
            ByteStore::S3(s) => s.read(loc.project, loc.id, start, len).await,
        }
    }

    /// The first `len` bytes (an upload shorter than that is an error).
    pub async fn read_prefix(&self, loc: Loc, len: usize) -> io::Result<Vec<u8>> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.read_prefix(loc.id, len)).await
            }
            ByteStore::S3(s) => s.read_prefix(loc.project, loc.id, len).await,
        }
    }

    /// SHA-256 state of the first `len` bytes (recovery). Blocking.
    pub fn hash_prefix_blocking(&self, loc: Loc, len: u64) -> io::Result<Sha256Stream> {
        self.hash_on_blocking(loc, Sha256Stream::default(), len)
    }

    /// `sha256` (the state after the upload's first `sha256.len()` bytes)
    /// carried on to `len` bytes, reading only the bytes in between. Blocking.
    pub fn hash_on_blocking(&self, loc: Loc, mut sha256: Sha256Stream, len: u64) -> io::Result<Sha256Stream> {
        let from = sha256.len();
        let count = len.saturating_sub(from);
        match self {
            ByteStore::Files(f) => f.read_range(loc.id, from, count, |b| sha256.update(b))?,
            ByteStore::S3(s) => block(s.read_range(loc.project, loc.id, from, count, |b| sha256.update(b)))?,
        }
        Ok(sha256)
    }

    /// Digest of `len` bytes from `start` (a checksum named after the body).
    pub async fn digest(&self, loc: Loc, start: u64, len: u64, algorithm: Algorithm) -> io::Result<Vec<u8>> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || {
                    let mut h = algorithm.hasher();
                    f.read_range(loc.id, start, len, |b| h.update(b))?;
                    Ok(h.finalize())
                })
                .await
            }
            ByteStore::S3(s) => {
                let mut h = algorithm.hasher();
                s.read_range(loc.project, loc.id, start, len, |b| h.update(b)).await?;
                Ok(h.finalize())
            }
        }
    }

    /// Removes the upload's bytes (nothing stored is not an error).
    pub async fn delete(&self, loc: Loc) -> io::Result<()> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.delete(loc.id)).await
            }
            ByteStore::S3(s) => s.delete(loc.project, loc.id).await,
        }
    }

    /// The upload's `len` bytes are all there: makes them one readable whole
    /// with their type and digest (object storage joins the parts here; a
    /// file is whole already). Safe to repeat.
    pub async fn finish(&self, loc: Loc, len: u64, content_type: &str, sha256_hex: &str) -> io::Result<()> {
        match self {
            ByteStore::Files(_) => Ok(()),
            ByteStore::S3(s) => s.finish(loc.project, loc.id, len, content_type, sha256_hex).await,
        }
    }

    /// Stores the concatenation of `parts` (of `final_loc`'s project, each
    /// finished: [`ByteStore::finish`]) as
    /// `final_loc`'s bytes (durable on return) and returns its SHA-256
    /// state; `StorageFull` if it would leave less than `reserve` free.
    pub async fn concatenate(
        &self,
        final_loc: Loc,
        parts: Vec<(Uuid, u64)>,
        reserve: u64,
    ) -> io::Result<Sha256Stream> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.concatenate(final_loc.id, &parts, reserve)).await
            }
            ByteStore::S3(s) => s.concatenate(final_loc.project, final_loc.id, &parts).await,
        }
    }

    /// Opens the upload for appending at `start`: anything stored past
    /// `start` is cut off or ignored. `declared_end` is the offset the body
    /// says it will reach (its length, when it has one): a hint, never a
    /// promise (a body may end early). Returns the sink and the bytes of
    /// `start`'s page before it (the block pipeline rewrites whole pages).
    /// Blocking, never on a runtime thread.
    pub fn open_append_blocking(
        &self,
        loc: Loc,
        start: u64,
        declared_end: Option<u64>,
    ) -> io::Result<(Sink, Vec<u8>)> {
        match self {
            ByteStore::Files(f) => f.open_append(loc.id, start).map(|(s, head)| (Sink::File(s), head)),
            ByteStore::S3(s) => {
                s.open_append(loc.project, loc.id, start, declared_end).map(|(s, head)| (Sink::S3(s), head))
            }
        }
    }

    /// Capability: a sync away from a multiple of this many bytes costs a
    /// copy of the bytes since the last one (a bucket stores the part so
    /// far as its tail), so checkpoints wait for such an edge a while.
    pub fn sync_alignment(&self) -> Option<u64> {
        match self {
            ByteStore::Files(_) => None,
            ByteStore::S3(s) => Some(s.part_size()),
        }
    }

    /// Capability: opening an append may wait (for a bucket's buffer
    /// budget), so the body is read only once it is open: uploads that wait
    /// hold none of the pipeline's blocks, which the others need.
    pub fn open_may_wait(&self) -> bool {
        matches!(self, ByteStore::S3(_))
    }

    /// Capability: free space, for stores that can run out of it.
    pub fn free_space(&self) -> Option<io::Result<u64>> {
        match self {
            ByteStore::Files(f) => Some(f.free_space()),
            ByteStore::S3(_) => None,
        }
    }

    /// `Some(free bytes)` when fewer than `reserve` bytes are free; `None`
    /// when there is room, when `reserve` is 0, when the store has no such
    /// limit, or when the check fails (the write itself will then tell).
    pub fn short_of_space(&self, reserve: u64) -> Option<u64> {
        match self {
            ByteStore::Files(f) => f.short_of_space(reserve),
            ByteStore::S3(_) => None,
        }
    }

    /// Capability: a local file holding the upload's bytes (probing seeks in it).
    pub fn local_path(&self, loc: Loc) -> Option<PathBuf> {
        match self {
            ByteStore::Files(f) => Some(f.path(loc.id)),
            ByteStore::S3(_) => None,
        }
    }

    /// A seekable reader of a finished upload's `len` bytes (probing).
    /// Blocking, never on a runtime thread.
    pub fn reader_blocking(&self, loc: Loc, len: u64) -> io::Result<Box<dyn ReadSeek>> {
        match self {
            ByteStore::Files(f) => Ok(Box::new(std::fs::File::open(f.path(loc.id))?)),
            ByteStore::S3(s) => Ok(Box::new(s.reader(loc.project, loc.id, len))),
        }
    }

    /// Capability: the object behind a finished upload, for a presigned GET
    /// valid `ttl` that the client follows itself.
    pub fn presigned_get(&self, loc: Loc, ttl: std::time::Duration, disposition: &str) -> Option<String> {
        match self {
            ByteStore::Files(_) => None,
            ByteStore::S3(s) => {
                Some(s.client().presign_get(&s.key(loc.project, loc.id), ttl, Some(disposition)))
            }
        }
    }

    /// Removes bytes no upload owns, left by a crash between a removal's
    /// commit and the deletion of its bytes; only of ids older than
    /// `before_ms` (newer ones are this run's). Blocking; reads every name.
    pub fn remove_orphans_blocking(
        &self,
        before_ms: u64,
        known: impl Fn(Uuid) -> io::Result<bool>,
    ) -> io::Result<usize> {
        match self {
            ByteStore::Files(f) => f.remove_orphans(before_ms, known),
            ByteStore::S3(s) => s.remove_orphans(before_ms, known),
        }
    }
}

/// Waits for a bucket call from a blocking thread (never a runtime thread).
fn block<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::runtime::Handle::current().block_on(f)
}

/// One append's writer, driven by the block pipeline's disk thread.
pub enum Sink {
    File(FileSink),
    S3(S3Sink),
}

impl Sink {
    /// Writes consecutive blocks at their offsets.
    pub fn write_run(&mut self, run: &[Arc<Block>]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_run(run),
            Sink::S3(s) => s.write_run(run),
        }
    }

    /// Makes every byte written so far durable: the durable end is then the
    /// end of the last block written.
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.sync(),
            Sink::S3(s) => s.sync(),
        }
    }

    /// Cuts what was written past `len` off (a discarded or failed append).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        match self {
            Sink::File(f) => f.truncate(len),
            Sink::S3(s) => s.truncate(len),
        }
    }
}
