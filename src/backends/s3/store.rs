//! Upload bytes in an S3 bucket, behind the byte store port.
//!
//! Each upload is one object, `{prefix}{project}/{id}`, written as one
//! multipart upload. Bytes collect in a buffer of one part (all parts but
//! the last the same size, as Cloudflare R2 requires); a full buffer goes
//! up as the next part. A sync (the end of a PATCH, a checkpoint) stores
//! what is in the buffer as a *tail* object, `{key}.part{n}`, named after
//! the part it will become: the bytes before the 204 are then in the
//! bucket, as tusd keeps its `.part` object. The next append reads the
//! tail back into its buffer and carries on.
//!
//! Why this stays true after `kill -9` at any instant: the offset comes
//! from the metadata record, committed only after the sync; a part or a
//! tail written past it is either overwritten by the next append (parts
//! are numbered by position) or belongs to a later part than any the record
//! names. A tail is always written whole from its part's first byte, so its
//! first `offset - base` bytes are the committed ones even if a crash left
//! more after them.
//!
//! Parts of an unfinished multipart upload cannot be read back, so the
//! upload's first bytes (for sniffing) are also kept as `{key}.head` once
//! the first part goes up; everything else is read after completion, which
//! `finish` makes: the last partial part is copied from its tail on the
//! store's side, the parts joined, and the object given its sniffed
//! `Content-Type` and its sha256 as metadata.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::client::{ByteStream, S3Client, S3Error};
use crate::blocks::{ALIGN, Block};
use crate::digest::Sha256Stream;

/// The upload's first bytes kept readable while its parts are not.
const HEAD_BYTES: usize = 64 << 10;
/// The least a store copies as a part on its own side.
const SMALLEST_COPY: u64 = 5 << 20;
/// The most one CopyObject may copy.
const MAX_COPY: u64 = 5 << 30;

/// How a node uses its bucket.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Put before every key (`uploads/`, or empty).
    pub prefix: String,
    /// Bytes per part (5 MiB at least; a multiple of 4 KiB).
    pub part_size: u64,
    /// Bytes all uploads' part buffers may hold together.
    pub buffer: u64,
}

pub struct S3Store {
    client: S3Client,
    layout: Layout,
    /// Part buffers, counted in KiB: an append waits for a whole part's
    /// worth before it starts, so no append ever holds half of what it needs.
    buffers: Arc<Semaphore>,
    runtime: Handle,
    /// Multipart upload ids by key, so an append does not list them again.
    uploads: Mutex<HashMap<String, String>>,
}

fn refused(e: S3Error) -> io::Error {
    e.into()
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

async fn collect(mut stream: ByteStream, cap: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(cap);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

impl S3Store {
    /// Must be called inside the runtime the store's blocking calls wait on.
    pub fn new(client: S3Client, layout: Layout) -> S3Store {
        let kib = (layout.buffer.max(layout.part_size) >> 10).min(u32::MAX as u64) as usize;
        S3Store {
            client,
            layout,
            buffers: Arc::new(Semaphore::new(kib)),
            runtime: Handle::current(),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &S3Client {
        &self.client
    }

    pub fn part_size(&self) -> u64 {
        self.layout.part_size
    }

    pub fn key(&self, project: Uuid, id: Uuid) -> String {
        format!("{}{}/{}", self.layout.prefix, project, id)
    }

    fn tail_key(key: &str, part: u64) -> String {
        format!("{key}.part{part}")
    }

    fn head_key(key: &str) -> String {
        format!("{key}.head")
    }

    /// The key's multipart upload, started if `create` and there is none.
    async fn upload_id(&self, key: &str, create: bool) -> Result<Option<String>, S3Error> {
        if let Some(id) = self.uploads.lock().expect("upload ids").get(key) {
            return Ok(Some(id.clone()));
        }
        let mut pending: Vec<_> =
            self.client.list_multipart(key).await?.into_iter().filter(|p| p.key == key).collect();
        // Two only if a crash came between starting one and using it: the
        // older is the one parts went to.
        pending.sort_by(|a, b| a.initiated.cmp(&b.initiated));
        let id = match pending.into_iter().next() {
            Some(p) => p.upload_id,
            None if create => self.client.create_multipart(key, &[]).await?,
            None => return Ok(None),
        };
        self.uploads.lock().expect("upload ids").insert(key.to_string(), id.clone());
        Ok(Some(id))
    }

    fn forget(&self, key: &str) {
        self.uploads.lock().expect("upload ids").remove(key);
    }

    /// Bytes durably stored: the object's length once complete, else the
    /// full parts in a row from the first and the tail after them.
    pub async fn len(&self, project: Uuid, id: Uuid) -> io::Result<u64> {
        let key = self.key(project, id);
        if let Some(len) = self.client.head_object(&key).await.map_err(refused)? {
            return Ok(len);
        }
        let ps = self.layout.part_size;
        let mut full = 0u64;
        if let Some(upload) = self.upload_id(&key, false).await.map_err(refused)? {
            for part in self.client.list_parts(&key, &upload).await.map_err(refused)? {
                if u64::from(part.number) != full + 1 || part.size != ps {
                    break;
                }
                full += 1;
            }
        }
        let tail = self.client.head_object(&Self::tail_key(&key, full + 1)).await.map_err(refused)?;
        Ok(full * ps + tail.unwrap_or(0))
    }

    pub async fn exists(&self, project: Uuid, id: Uuid) -> io::Result<bool> {
        let key = self.key(project, id);
        Ok(!self.client.list_objects(&key).await.map_err(refused)?.is_empty()
            || self.upload_id(&key, false).await.map_err(refused)?.is_some())
    }

    /// `len` bytes from `start` of a finished upload.
    pub async fn read(&self, project: Uuid, id: Uuid, start: u64, len: u64) -> io::Result<ByteStream> {
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let key = self.key(project, id);
        self.client.get_object(&key, Some((start, start + len - 1))).await.map_err(|e| {
            match e.is_not_found() {
                // Asked for only once the upload is complete: its parts
                // are still being joined (or will be, once the bucket
                // answers again), so "retry in a moment".
                true => io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "the upload is complete and its object is still being assembled in object storage",
                ),
                false => e.into(),
            }
        })
    }

    /// The first `len` bytes: from the object once complete, else from the
    /// copy of its first bytes or its first tail.
    pub async fn read_prefix(&self, project: Uuid, id: Uuid, len: usize) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(project, id);
        let range = Some((0, len as u64 - 1));
        for candidate in [key.clone(), Self::head_key(&key), Self::tail_key(&key, 1)] {
            match self.client.get_object(&candidate, range).await {
                Ok(stream) => {
                    let bytes = collect(stream, len).await?;
                    if bytes.len() == len {
                        return Ok(bytes);
                    }
                }
                Err(e)
                    if e.is_not_found()
                        || matches!(&e, S3Error::Refused { code, .. } if code == "InvalidRange") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("fewer than {len} bytes are stored")))
    }

    /// Digest input: `len` bytes from `start` of a finished upload, chunk by chunk.
    pub async fn read_range(
        &self,
        project: Uuid,
        id: Uuid,
        start: u64,
        len: u64,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let mut stream = self.read(project, id, start, len).await?;
        let mut seen = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            each(&chunk);
        }
        if seen != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{seen} of {len} bytes read")));
        }
        Ok(())
    }

    /// Aborts the multipart upload and removes every object of the upload.
    pub async fn delete(&self, project: Uuid, id: Uuid) -> io::Result<()> {
        let key = self.key(project, id);
        for pending in self.client.list_multipart(&key).await.map_err(refused)? {
            if pending.key == key {
                self.client.abort(&key, &pending.upload_id).await.map_err(refused)?;
            }
        }
        self.forget(&key);
        self.delete_objects_of(&key, true).await
    }

    /// The upload's tails and head copy, and with `object` the object itself.
    async fn delete_objects_of(&self, key: &str, object: bool) -> io::Result<()> {
        for (found, _) in self.client.list_objects(key).await.map_err(refused)? {
            let ours = found == key || found.strip_prefix(key).is_some_and(|rest| rest.starts_with('.'));
            if ours && (object || found != key) {
                self.client.delete_object(&found).await.map_err(refused)?;
            }
        }
        Ok(())
    }

    /// Makes the upload's `len` bytes one object with `content_type` and its
    /// sha256 as metadata, then removes the tails. Safe to repeat: an object
    /// that already carries `sha256` is left as it is.
    pub async fn finish(
        &self,
        project: Uuid,
        id: Uuid,
        len: u64,
        content_type: &str,
        sha256: &str,
    ) -> io::Result<()> {
        let key = self.key(project, id);
        let meta = [("content-type", content_type.to_string()), ("x-amz-meta-sha256", sha256.to_string())];
        // Asked afresh: another node sharing the bucket may have completed
        // the multipart upload this node remembers (its id is then gone).
        self.forget(&key);
        let upload = self.upload_id(&key, false).await.map_err(refused)?;
        if upload.is_none()
            && let Some(headers) = self.client.head_headers(&key).await.map_err(refused)?
        {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
            let stored: u64 = header("content-length").parse().unwrap_or(0);
            if stored != len {
                return Err(corrupt(format!("the object {key} holds {stored} bytes, not {len}")));
            }
            if header("x-amz-meta-sha256") != sha256 || header("content-type") != content_type {
                self.set_metadata(&key, len, &meta).await?;
            }
            return self.delete_objects_of(&key, false).await;
        }
        let ps = self.layout.part_size;
        let (full, rest) = (len / ps, len % ps);
        match upload {
            None if len > 0
                && self.client.head_object(&Self::tail_key(&key, 1)).await.map_err(refused)? == Some(len) =>
            {
                // Never a full part, and the tail holds exactly the upload:
                // copied on the store's side (with the object's metadata)
                // rather than read back and sent again.
                self.client.copy_object(&Self::tail_key(&key, 1), &key, &meta).await.map_err(refused)?;
            }
            None => {
                // Never a full part: the whole upload is its first tail
                // (which a crash may have left longer than the record says).
                let body = if len == 0 {
                    Vec::new()
                } else {
                    let tail = Self::tail_key(&key, 1);
                    let stream = self.client.get_object(&tail, Some((0, len - 1))).await.map_err(refused)?;
                    let bytes = collect(stream, len as usize).await?;
                    if bytes.len() as u64 != len {
                        return Err(corrupt(format!(
                            "the tail {tail} holds {} bytes, not {len}",
                            bytes.len()
                        )));
                    }
                    vec![Bytes::from(bytes)]
                };
                self.client.put_object(&key, body, &meta).await.map_err(refused)?;
            }
            Some(upload) => {
                let parts = self.client.list_parts(&key, &upload).await.map_err(refused)?;
                let mut etags = Vec::new();
                for n in 1..=full {
                    match parts.iter().find(|p| u64::from(p.number) == n) {
                        Some(p) if p.size == ps => etags.push(p.etag.clone()),
                        _ => return Err(corrupt(format!("part {n} of {key} is missing"))),
                    }
                }
                if rest > 0 {
                    let number = full + 1;
                    let tail = Self::tail_key(&key, number);
                    let range = Some((0, rest - 1));
                    // Stores copy parts of 5 MiB and more on their side; a
                    // smaller last part (Garage keeps tiny objects inline and
                    // will not copy them at all) comes through here.
                    let etag = if rest >= SMALLEST_COPY {
                        self.client.upload_part_copy(&key, &upload, number as u16, &tail, range).await
                    } else {
                        let stream = self.client.get_object(&tail, range).await.map_err(refused)?;
                        let bytes = collect(stream, rest as usize).await?;
                        if bytes.len() as u64 != rest {
                            return Err(corrupt(format!(
                                "the tail {tail} holds {} bytes, not {rest}",
                                bytes.len()
                            )));
                        }
                        self.client
                            .upload_part(&key, &upload, number as u16, vec![Bytes::from(bytes)], rest)
                            .await
                    };
                    etags.push(etag.map_err(refused)?);
                }
                self.client.complete(&key, &upload, &etags).await.map_err(refused)?;
                self.forget(&key);
                self.set_metadata(&key, len, &meta).await?;
            }
        }
        self.delete_objects_of(&key, false).await
    }

    /// Gives a complete object new metadata by copying it onto itself (in
    /// pieces of whole parts past what one copy may take).
    async fn set_metadata(&self, key: &str, len: u64, meta: &[(&str, String)]) -> io::Result<()> {
        if len <= MAX_COPY {
            return self.client.copy_object(key, key, meta).await.map_err(refused);
        }
        let ps = self.layout.part_size;
        let piece = (MAX_COPY / ps) * ps;
        let upload = self.client.create_multipart(key, meta).await.map_err(refused)?;
        let mut etags = Vec::new();
        let mut at = 0u64;
        while at < len {
            let last = (at + piece).min(len) - 1;
            let n = etags.len() as u16 + 1;
            etags.push(
                self.client
                    .upload_part_copy(key, &upload, n, key, Some((at, last)))
                    .await
                    .map_err(refused)?,
            );
            at = last + 1;
        }
        self.client.complete(key, &upload, &etags).await.map_err(refused)
    }

    /// Opens the upload for appending at `start` (which the record says is
    /// durable); `declared_end` is where the body says it will end (parts it
    /// fills then stream). Blocking: waits for a part's buffer, then reads the tail.
    pub fn open_append(
        self: &Arc<Self>,
        project: Uuid,
        id: Uuid,
        start: u64,
        declared_end: Option<u64>,
    ) -> io::Result<(S3Sink, Vec<u8>)> {
        self.runtime.block_on(async {
            let writer = Writer::open(self.clone(), self.key(project, id), start, declared_end).await?;
            let page = start - start % ALIGN;
            let head = writer.buf.as_slice()[(page - writer.base) as usize..].to_vec();
            Ok((S3Sink { writer }, head))
        })
    }

    /// Joins the parts' objects, in order, into `final_id`'s (durable on
    /// return) and returns the SHA-256 state of the whole. Where the final is
    /// at a part's edge, a part's whole parts are copied on the store's side
    /// (`UploadPartCopy`); the rest goes through the part buffer. Every byte
    /// is read once anyway, for the digest. A part with fewer bytes than its
    /// length leaves nothing behind.
    pub async fn concatenate(
        self: &Arc<Self>,
        project: Uuid,
        final_id: Uuid,
        parts: &[(Uuid, u64)],
    ) -> io::Result<Sha256Stream> {
        let key = self.key(project, final_id);
        let result = async {
            let mut writer = Writer::open(self.clone(), key.clone(), 0, None).await?;
            let mut sha256 = Sha256Stream::default();
            for (part, len) in parts {
                if *len == 0 {
                    continue;
                }
                let source = self.key(project, *part);
                let ps = self.layout.part_size;
                let copied = if writer.buf.is_empty() { len - len % ps } else { 0 };
                for first in (0..copied).step_by(ps as usize) {
                    writer.copy_part(&source, first).await.map_err(refused)?;
                }
                let mut stream = self.client.get_object(&source, Some((0, len - 1))).await.map_err(|e| {
                    match e.is_not_found() {
                        true => corrupt(format!("the part {part} has no complete object")),
                        false => e.into(),
                    }
                })?;
                let mut seen = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    sha256.update(&chunk);
                    let skip = copied.saturating_sub(seen).min(chunk.len() as u64) as usize;
                    seen += chunk.len() as u64;
                    writer.push(chunk.slice(skip..)).await.map_err(refused)?;
                }
                if seen != *len {
                    return Err(corrupt(format!("the part {part} holds {seen} bytes, not {len}")));
                }
            }
            writer.sync().await.map_err(refused)?;
            Ok(sha256)
        }
        .await;
        if result.is_err() {
            let _ = self.delete(project, final_id).await;
        }
        result
    }

    /// Aborts multipart uploads and removes objects whose upload no record
    /// names, among ids older than `before_ms`. Blocking (`known` may block
    /// on the runtime too, so it is asked between the bucket's calls).
    pub fn remove_orphans(
        &self,
        before_ms: u64,
        known: impl Fn(Uuid) -> io::Result<bool>,
    ) -> io::Result<usize> {
        let prefix = self.layout.prefix.as_str();
        let id_of = |key: &str| -> Option<Uuid> {
            let name = key.strip_prefix(prefix)?.split('/').nth(1)?;
            let id = Uuid::parse_str(name.split('.').next()?).ok()?;
            let (secs, nanos) = id.get_timestamp()?.to_unix();
            (secs * 1000 + u64::from(nanos) / 1_000_000 < before_ms).then_some(id)
        };
        let (pending, objects) = self
            .runtime
            .block_on(async {
                let pending = self.client.list_multipart(prefix).await?;
                let objects = self.client.list_objects(prefix).await?;
                Ok::<_, S3Error>((pending, objects))
            })
            .map_err(refused)?;
        let mut removed = 0;
        for p in pending {
            if let Some(id) = id_of(&p.key)
                && !known(id)?
            {
                self.runtime.block_on(self.client.abort(&p.key, &p.upload_id)).map_err(refused)?;
                self.forget(&p.key);
                removed += 1;
            }
        }
        for (key, _) in objects {
            if let Some(id) = id_of(&key)
                && !known(id)?
            {
                self.runtime.block_on(self.client.delete_object(&key)).map_err(refused)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// One part's bytes in memory of their own (an anonymous mapping): pages
/// cost memory only once written, and all of it goes back to the system
/// when the buffer is dropped. From the heap, a freed 16 MiB buffer raises
/// glibc's mmap threshold and stays in the process: 16 concurrent uploads
/// left the RSS at 330 MiB after they were done.
struct PartBuf {
    ptr: Option<std::ptr::NonNull<u8>>,
    cap: usize,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; access follows `&`/`&mut`.
unsafe impl Send for PartBuf {}
unsafe impl Sync for PartBuf {}

impl PartBuf {
    /// A buffer that holds nothing and maps nothing.
    fn empty() -> PartBuf {
        PartBuf { ptr: None, cap: 0, len: 0 }
    }

    fn new(cap: usize) -> io::Result<PartBuf> {
        // SAFETY: an anonymous private mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(PartBuf { ptr: std::ptr::NonNull::new(ptr.cast()), cap, len: 0 })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_slice(&self) -> &[u8] {
        match self.ptr {
            // SAFETY: `len` bytes of the mapping were written.
            Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len) },
            None => &[],
        }
    }

    fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(self.len + data.len() <= self.cap, "a part buffer overflowed");
        if let Some(p) = self.ptr {
            // SAFETY: in bounds (checked above); the source is another allocation.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr().add(self.len), data.len()) };
            self.len += data.len();
        }
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        if let Some(p) = self.ptr {
            // SAFETY: the mapping this value made, unmapped once.
            unsafe { libc::munmap(p.as_ptr().cast(), self.cap) };
        }
    }
}

/// The first `len` bytes of a shared buffer, as a body that borrows it.
struct Prefix(Arc<PartBuf>, usize);

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        &self.0.as_slice()[..self.1]
    }
}

/// A part going up while it fills: the upload request's body is fed the
/// bytes as they arrive (the pipeline's blocks themselves, not copies).
struct Streaming {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    task: tokio::task::JoinHandle<Result<String, S3Error>>,
}

/// How long a part's body may wait for the store to take the next bytes
/// before the part falls back to the buffer.
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a part's answer may take once its body is complete.
const PART_ANSWER: std::time::Duration = std::time::Duration::from_secs(60);

/// The part being filled, and where it goes.
struct Writer {
    store: Arc<S3Store>,
    key: String,
    /// Upload offset of `buf[0]`: a multiple of the part size.
    base: u64,
    /// The part's bytes so far, whether or not they also stream: what a
    /// sync stores as the tail when the body ends inside the part.
    buf: PartBuf,
    /// `buf` differs from the tail in the bucket.
    dirty: bool,
    /// The budget `buf` is counted in.
    permit: OwnedSemaphorePermit,
    /// Where this append's body says it ends: a part it will fill goes up
    /// as it fills (`streaming`) instead of after.
    declared_end: Option<u64>,
    streaming: Option<Streaming>,
    /// The part's stream failed: the rest of it fills the buffer first.
    stream_failed: bool,
    /// The part sent before `buf`, its answer still to come.
    in_flight: Option<tokio::task::JoinHandle<Result<(), S3Error>>>,
}

impl Writer {
    async fn open(
        store: Arc<S3Store>,
        key: String,
        start: u64,
        declared_end: Option<u64>,
    ) -> io::Result<Writer> {
        let ps = store.layout.part_size;
        // The budget holds at least one part (`S3Store::new`), so this ends.
        let permit =
            store.buffers.clone().acquire_many_owned((ps >> 10) as u32).await.map_err(io::Error::other)?;
        let base = start - start % ps;
        // Mapped, not touched: a small PATCH does not cost a whole part.
        let mut buf = PartBuf::new(ps as usize)?;
        if start > base {
            let tail = S3Store::tail_key(&key, base / ps + 1);
            let want = start - base;
            // Straight into the part buffer: a tail read into a heap vector
            // first (up to a part) would raise glibc's mmap threshold when
            // freed, and every large allocation after it would stay in the
            // heap (50 MiB more RSS after a run of 8 MiB PATCHes).
            let mut stream = store.client.get_object(&tail, Some((0, want - 1))).await.map_err(refused)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let room = (want as usize).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if buf.len() as u64 != want {
                return Err(corrupt(format!(
                    "the tail {tail} holds {} bytes, fewer than the {want} recorded",
                    buf.len()
                )));
            }
        }
        if base > 0 && store.upload_id(&key, false).await.map_err(refused)?.is_none() {
            return Err(corrupt(format!("{key} has {base} bytes recorded but no multipart upload")));
        }
        Ok(Writer {
            store,
            key,
            base,
            buf,
            dirty: false,
            permit,
            declared_end,
            streaming: None,
            stream_failed: false,
            in_flight: None,
        })
    }

    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn number(&self) -> u16 {
        (self.base / self.store.layout.part_size + 1) as u16
    }

    async fn push(&mut self, mut data: Bytes) -> Result<(), S3Error> {
        let ps = self.store.layout.part_size as usize;
        while !data.is_empty() {
            if self.streaming.is_none()
                && !self.stream_failed
                && self.declared_end.is_some_and(|end| end >= self.base + ps as u64)
            {
                self.start_stream().await?;
            }
            let piece = data.split_to((ps - self.buf.len()).min(data.len()));
            self.buf.extend_from_slice(&piece);
            self.dirty = true;
            if let Some(s) = &self.streaming {
                match tokio::time::timeout(STREAM_STALL, s.tx.send(Ok(piece))).await {
                    Ok(Ok(())) => {}
                    // The request ended early or the store stopped reading:
                    // the buffer has every byte, so the part goes up from it.
                    _ => self.stop_stream(),
                }
            }
            if self.buf.len() == ps {
                self.part_full().await?;
            }
        }
        Ok(())
    }

    /// Starts the part's upload with what the buffer holds so far (a tail
    /// read back); the rest follows as it arrives.
    async fn start_stream(&mut self) -> Result<(), S3Error> {
        let ps = self.store.layout.part_size;
        let upload = self.store.upload_id(&self.key, true).await?.expect("created if missing");
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (store, key, number) = (self.store.clone(), self.key.clone(), self.number());
        let task =
            tokio::spawn(
                async move { store.client.upload_part_streamed(&key, &upload, number, rx, ps).await },
            );
        if !self.buf.is_empty() {
            // A copy in a mapping of its own, not the heap (see `Writer::open`).
            let mut copy = PartBuf::new(self.buf.len()).map_err(|e| S3Error::Unreachable(e.to_string()))?;
            copy.extend_from_slice(self.buf.as_slice());
            let _ = tx.send(Ok(Bytes::from_owner(copy))).await;
        }
        self.streaming = Some(Streaming { tx, task });
        Ok(())
    }

    /// Ends the part's stream without completing it: the store keeps none of it.
    fn stop_stream(&mut self) {
        if let Some(s) = self.streaming.take() {
            let _ = s.tx.try_send(Err(io::Error::other("the part is sent again from its buffer")));
            s.task.abort();
            self.stream_failed = true;
        }
    }

    /// The buffer holds a whole part: it is (or goes) up, and the buffer
    /// starts the next one.
    async fn part_full(&mut self) -> Result<(), S3Error> {
        if self.number() == 1 {
            let head = Bytes::copy_from_slice(&self.buf.as_slice()[..HEAD_BYTES.min(self.buf.len())]);
            self.store.client.put_object(&S3Store::head_key(&self.key), vec![head], &[]).await?;
        }
        match self.streaming.take() {
            Some(s) => {
                // Every byte went into the request; the answer is awaited
                // while the next part fills (the buffer is ours again).
                drop(s.tx);
                self.settle().await?;
                self.in_flight = Some(tokio::spawn(async move {
                    match tokio::time::timeout(PART_ANSWER, s.task).await {
                        Ok(Ok(sent)) => sent.map(drop),
                        Ok(Err(e)) => Err(S3Error::Unreachable(format!("a part upload stopped: {e}"))),
                        Err(_) => {
                            Err(S3Error::Unreachable(format!("no answer to a part within {PART_ANSWER:?}")))
                        }
                    }
                }));
                self.buf.truncate(0);
                self.base += self.store.layout.part_size;
                self.dirty = false;
                self.stream_failed = false;
                Ok(())
            }
            None => self.send_part().await,
        }
    }

    /// Waits for the part still going up, if any.
    async fn settle(&mut self) -> Result<(), S3Error> {
        match self.in_flight.take() {
            Some(task) => {
                task.await.map_err(|e| S3Error::Unreachable(format!("a part upload stopped: {e}")))?
            }
            None => Ok(()),
        }
    }

    /// Sends the full buffer as the next part. While it goes up the next
    /// part fills, if the budget has a second part's room to spare (a lone
    /// upload gets the overlap; under load every upload keeps to one part).
    async fn send_part(&mut self) -> Result<(), S3Error> {
        self.settle().await?;
        let ps = self.store.layout.part_size;
        let number = self.number();
        let upload = self.store.upload_id(&self.key, true).await?.expect("created if missing");
        self.stream_failed = false;
        match self.store.buffers.clone().try_acquire_many_owned((ps >> 10) as u32) {
            Ok(spare) => {
                let next = PartBuf::new(ps as usize)
                    .map_err(|e| S3Error::Unreachable(format!("no memory for a part buffer: {e}")))?;
                let part = Bytes::from_owner(std::mem::replace(&mut self.buf, next));
                self.base += ps;
                self.dirty = false;
                let used = std::mem::replace(&mut self.permit, spare);
                let (store, key) = (self.store.clone(), self.key.clone());
                self.in_flight = Some(tokio::spawn(async move {
                    let sent = store.client.upload_part(&key, &upload, number, vec![part], ps).await;
                    drop(used);
                    sent.map(drop)
                }));
                Ok(())
            }
            Err(_) => {
                // Lent to the request and taken back after it, to fill again.
                let shared = Arc::new(std::mem::replace(&mut self.buf, PartBuf::empty()));
                let body = Bytes::from_owner(Prefix(shared.clone(), ps as usize));
                let sent = self.store.client.upload_part(&self.key, &upload, number, vec![body], ps).await;
                self.buf = self.take_back(shared)?;
                sent?;
                self.buf.truncate(0);
                self.base += ps;
                self.dirty = false;
                Ok(())
            }
        }
    }

    /// The buffer back from a request that borrowed it.
    fn take_back(&self, shared: Arc<PartBuf>) -> Result<PartBuf, S3Error> {
        match Arc::try_unwrap(shared) {
            Ok(buf) => Ok(buf),
            Err(shared) => {
                // Still held by the client (it should not be): a copy.
                let mut copy = PartBuf::new(self.store.layout.part_size as usize)
                    .map_err(|e| S3Error::Unreachable(format!("no memory for a part buffer: {e}")))?;
                copy.extend_from_slice(shared.as_slice());
                Ok(copy)
            }
        }
    }

    /// Makes the next part a copy of `source`'s part-sized range from
    /// `first`, on the store's side. Only at a part's edge (empty buffer).
    async fn copy_part(&mut self, source: &str, first: u64) -> Result<(), S3Error> {
        debug_assert!(self.buf.is_empty());
        self.settle().await?;
        let ps = self.store.layout.part_size;
        let number = self.number();
        let client = &self.store.client;
        let upload = self.store.upload_id(&self.key, true).await?.expect("created if missing");
        if number == 1 {
            let head = client.get_object(source, Some((first, first + HEAD_BYTES as u64 - 1))).await?;
            let head = collect(head, HEAD_BYTES).await.map_err(|e| S3Error::Unreachable(e.to_string()))?;
            client.put_object(&S3Store::head_key(&self.key), vec![Bytes::from(head)], &[]).await?;
        }
        client.upload_part_copy(&self.key, &upload, number, source, Some((first, first + ps - 1))).await?;
        self.base += ps;
        Ok(())
    }

    /// Stores the buffer as the tail, unless it is there already. A part
    /// still streaming goes on streaming: it completes only with all its bytes.
    async fn sync(&mut self) -> Result<(), S3Error> {
        self.settle().await?;
        if !self.dirty {
            return Ok(());
        }
        let tail = S3Store::tail_key(&self.key, self.number().into());
        let len = self.buf.len();
        let shared = Arc::new(std::mem::replace(&mut self.buf, PartBuf::empty()));
        let body = Bytes::from_owner(Prefix(shared.clone(), len));
        let result = self.store.client.put_object(&tail, vec![body], &[]).await;
        self.buf = self.take_back(shared)?;
        result?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for Writer {
    /// A part that never filled is abandoned: its request ends short, so
    /// the store keeps nothing of it.
    fn drop(&mut self) {
        if let Some(s) = self.streaming.take() {
            s.task.abort();
        }
    }
}

/// A block's bytes as a request body, without copying them.
struct BlockBytes(Arc<Block>);

impl AsRef<[u8]> for BlockBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.data()
    }
}

/// One append's writer, driven by the upload pipeline's disk thread (its
/// calls block on the runtime).
pub struct S3Sink {
    writer: Writer,
}

impl S3Sink {
    /// Takes consecutive blocks; bytes before the buffer's end (a carried
    /// partial page) are skipped.
    pub fn write_run(&mut self, run: &[Arc<Block>]) -> io::Result<()> {
        let runtime = self.writer.store.runtime.clone();
        runtime.block_on(async {
            for block in run {
                let (offset, data) = (block.offset(), block.data());
                let end = self.writer.end();
                if offset > end {
                    return Err(io::Error::other(format!("a gap in the bytes: {offset} after {end}")));
                }
                let skip = ((end - offset) as usize).min(data.len());
                if skip < data.len() {
                    let bytes = Bytes::from_owner(BlockBytes(block.clone())).slice(skip..);
                    self.writer.push(bytes).await.map_err(refused)?;
                }
            }
            Ok(())
        })
    }

    pub fn sync(&mut self) -> io::Result<()> {
        let runtime = self.writer.store.runtime.clone();
        runtime.block_on(self.writer.sync()).map_err(refused)
    }

    /// Forgets what came after `len`; a tail stored with more is stored
    /// again without it. Bytes of parts already sent are left: the next
    /// append writes those parts again.
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        // A part still going up lands before anything after it: a later
        // append writes its part again, never the other way round.
        let runtime = self.writer.store.runtime.clone();
        let _ = runtime.block_on(self.writer.settle());
        let w = &mut self.writer;
        w.stop_stream();
        w.stream_failed = false;
        // What follows is not what the body declared any more.
        w.declared_end = None;
        if len < w.base {
            w.buf.truncate(0);
            w.dirty = false;
            return Ok(());
        }
        let keep = (len - w.base) as usize;
        if keep < w.buf.len() {
            w.buf.truncate(keep);
            w.dirty = true;
            self.sync()?;
        }
        Ok(())
    }
}

/// A seekable reader over a finished object, fetching a window at a time
/// (probing reads container headers with seeks, never the whole object).
/// Blocking: used on the blocking pool.
pub struct RangeReader {
    store: Arc<S3Store>,
    key: String,
    len: u64,
    pos: u64,
    window: Vec<u8>,
    window_at: u64,
}

/// Bytes fetched per ranged GET while probing.
const WINDOW: u64 = 256 << 10;

impl S3Store {
    pub fn reader(self: &Arc<Self>, project: Uuid, id: Uuid, len: u64) -> RangeReader {
        RangeReader {
            store: self.clone(),
            key: self.key(project, id),
            len,
            pos: 0,
            window: Vec::new(),
            window_at: 0,
        }
    }
}

impl io::Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_at && self.pos < self.window_at + self.window.len() as u64;
        if !in_window {
            let last = (self.pos + WINDOW).min(self.len) - 1;
            let (store, pos) = (&self.store, self.pos);
            self.window = store.runtime.block_on(async {
                let stream = store.client.get_object(&self.key, Some((pos, last))).await.map_err(refused)?;
                collect(stream, (last - pos + 1) as usize).await
            })?;
            self.window_at = self.pos;
            if self.window.is_empty() {
                return Ok(0);
            }
        }
        let from = (self.pos - self.window_at) as usize;
        let n = (self.window.len() - from).min(out.len());
        out[..n].copy_from_slice(&self.window[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for RangeReader {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(p) => p as i128,
            io::SeekFrom::End(d) => self.len as i128 + d as i128,
            io::SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}
