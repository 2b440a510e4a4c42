//! The byte store port: where upload bytes live, whatever holds them.
//!
//! Everything above this port (the upload service, downloads, sniffing,
//! probing, concatenation) names an upload by id and a byte range, never a
//! path. What a backend can do beyond the core (append at an offset with a
//! durable end, read a range, length, concatenate, delete) is an optional
//! capability the caller asks for and copes without: free space (local disks
//! have a reserve to keep; object storage has none), a local path (probing
//! reads containers with seeks; a later issue gives object storage ranged
//! readers).
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
use crate::blocks::Block;
use crate::digest::{Algorithm, Sha256Stream};

/// A stream of stored bytes (a download's body).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub enum ByteStore {
    Files(Arc<Files>),
}

pub use crate::backends::files::nearly_full;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(e.to_string()))?
}

impl ByteStore {
    /// Bytes stored for `id` (0 if none yet). Blocking: a `stat`.
    pub fn len_blocking(&self, id: Uuid) -> io::Result<u64> {
        match self {
            ByteStore::Files(f) => f.len(id),
        }
    }

    /// Whether `id` has stored bytes at all. Blocking.
    pub fn exists_blocking(&self, id: Uuid) -> io::Result<bool> {
        match self {
            ByteStore::Files(f) => f.exists(id),
        }
    }

    pub async fn len(&self, id: Uuid) -> io::Result<u64> {
        match self {
            // One stat: cheaper than a trip to the blocking pool.
            ByteStore::Files(f) => f.len(id),
        }
    }

    /// `len` bytes from `start`, as a stream.
    pub async fn read(&self, id: Uuid, start: u64, len: u64) -> io::Result<ByteStream> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        match self {
            ByteStore::Files(f) => {
                let mut file = tokio::fs::File::open(f.path(id)).await?;
                file.seek(io::SeekFrom::Start(start)).await?;
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10)))
            }
        }
    }

    /// The first `len` bytes (an upload shorter than that is an error).
    pub async fn read_prefix(&self, id: Uuid, len: usize) -> io::Result<Vec<u8>> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.read_prefix(id, len)).await
            }
        }
    }

    /// SHA-256 state of the first `len` bytes (recovery). Blocking.
    pub fn hash_prefix_blocking(&self, id: Uuid, len: u64) -> io::Result<Sha256Stream> {
        self.hash_on_blocking(id, Sha256Stream::default(), len)
    }

    /// `sha256` (the state after the upload's first `sha256.len()` bytes)
    /// carried on to `len` bytes, reading only the bytes in between. Blocking.
    pub fn hash_on_blocking(&self, id: Uuid, mut sha256: Sha256Stream, len: u64) -> io::Result<Sha256Stream> {
        let from = sha256.len();
        match self {
            ByteStore::Files(f) => f.read_range(id, from, len.saturating_sub(from), |b| sha256.update(b))?,
        }
        Ok(sha256)
    }

    /// Digest of `len` bytes from `start` (a checksum named after the body).
    pub async fn digest(&self, id: Uuid, start: u64, len: u64, algorithm: Algorithm) -> io::Result<Vec<u8>> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || {
                    let mut h = algorithm.hasher();
                    f.read_range(id, start, len, |b| h.update(b))?;
                    Ok(h.finalize())
                })
                .await
            }
        }
    }

    /// Removes `id`'s bytes (nothing stored is not an error).
    pub async fn delete(&self, id: Uuid) -> io::Result<()> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.delete(id)).await
            }
        }
    }

    /// Stores the concatenation of `parts` as `final_id`'s bytes (durable on
    /// return) and returns its SHA-256 state; `StorageFull` if it would leave
    /// less than `reserve` free.
    pub async fn concatenate(
        &self,
        final_id: Uuid,
        parts: Vec<(Uuid, u64)>,
        reserve: u64,
    ) -> io::Result<Sha256Stream> {
        match self {
            ByteStore::Files(f) => {
                let f = f.clone();
                blocking(move || f.concatenate(final_id, &parts, reserve)).await
            }
        }
    }

    /// Opens `id` for appending at `start`: anything stored past `start` is
    /// cut off. Returns the sink and the bytes of `start`'s page before it
    /// (the block pipeline rewrites whole pages). Blocking.
    pub fn open_append_blocking(&self, id: Uuid, start: u64) -> io::Result<(Sink, Vec<u8>)> {
        match self {
            ByteStore::Files(f) => f.open_append(id, start).map(|(s, head)| (Sink::File(s), head)),
        }
    }

    /// Capability: free space, for stores that can run out of it.
    pub fn free_space(&self) -> Option<io::Result<u64>> {
        match self {
            ByteStore::Files(f) => Some(f.free_space()),
        }
    }

    /// `Some(free bytes)` when fewer than `reserve` bytes are free; `None`
    /// when there is room, when `reserve` is 0, when the store has no such
    /// limit, or when the check fails (the write itself will then tell).
    pub fn short_of_space(&self, reserve: u64) -> Option<u64> {
        match self {
            ByteStore::Files(f) => f.short_of_space(reserve),
        }
    }

    /// Capability: a local file holding `id`'s bytes (probing seeks in it).
    pub fn local_path(&self, id: Uuid) -> Option<PathBuf> {
        match self {
            ByteStore::Files(f) => Some(f.path(id)),
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
        }
    }
}

/// One append's writer, driven by the block pipeline's disk thread.
pub enum Sink {
    File(FileSink),
}

impl Sink {
    /// Writes consecutive blocks at their offsets.
    pub fn write_run(&mut self, run: &[Arc<Block>]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_run(run),
        }
    }

    /// Makes every byte written so far durable: the durable end is then the
    /// end of the last block written.
    pub fn sync(&self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.sync(),
        }
    }

    /// Cuts what was written past `len` off (a discarded or failed append).
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            Sink::File(f) => f.truncate(len),
        }
    }
}
