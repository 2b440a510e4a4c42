//! Upload bytes as plain files: `DATA_DIR/uploads/ab/c/<id>`, the embedded
//! default behind the byte store port (`ports::bytes`, which imports this).
//!
//! An upload's file is made by its first append, not by its creation: a POST
//! then costs no inode (file creation was a third of its CPU time), and
//! uploads created but never started leave nothing on disk. Every reader
//! takes a missing file as zero bytes.
//!
//! A file may be *longer* than the upload's recorded offset (a tail a crash
//! or a discarded chunk left past the last commit), never shorter unless
//! something outside the server removed bytes; the next append cuts the
//! tail off (`FileSink::open`), and readers read only up to the offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::blocks::{ALIGN, Block};
use crate::digest::Sha256Stream;

/// Without `O_DIRECT`, start writing dirty pages to disk every this many bytes.
const WRITEBACK_BYTES: u64 = 8 << 20;
/// How often concatenation looks at the free space: every this many bytes.
const ASSEMBLY_SPACE_CHECK: u64 = 16 << 20;

pub struct Files {
    dir: PathBuf,
    /// The folder itself, kept open so free space is one `fstatvfs`, with
    /// no path looked up on every request.
    dir_fd: File,
}

impl Files {
    /// Opens (making if needed) `DATA_DIR/uploads` and its 4,096 shard
    /// folders, all made here so making a file is a single `open`.
    pub fn open(data_dir: &Path) -> io::Result<Files> {
        let dir = data_dir.join("uploads");
        fs::create_dir_all(&dir)?;
        for a in 0..256 {
            for b in 0..16 {
                fs::create_dir_all(dir.join(format!("{a:02x}")).join(format!("{b:x}")))?;
            }
        }
        let dir_fd = File::open(&dir)?;
        Ok(Files { dir, dir_fd })
    }

    /// `uploads/ab/c/<id>`, sharded on the random tail of the UUIDv7 (its
    /// head is a timestamp) so millions of uploads spread over 4,096 folders.
    pub fn path(&self, id: Uuid) -> PathBuf {
        let hex = id.simple().to_string();
        self.dir.join(&hex[30..32]).join(&hex[29..30]).join(id.to_string())
    }

    /// Bytes stored for `id` (0 if it has no file yet).
    pub fn len(&self, id: Uuid) -> io::Result<u64> {
        match fs::metadata(self.path(id)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether `id` has a file at all (a final upload gets one when assembled).
    pub fn exists(&self, id: Uuid) -> io::Result<bool> {
        match fs::metadata(self.path(id)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn open_read(&self, id: Uuid) -> io::Result<File> {
        File::open(self.path(id))
    }

    /// Feeds `len` bytes from `start` to `each`, a megabyte at a time.
    pub fn read_range(&self, id: Uuid, start: u64, len: u64, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        if len == 0 {
            return Ok(()); // an upload without bytes may have no file
        }
        let mut f = self.open_read(id)?;
        f.seek(SeekFrom::Start(start))?;
        let mut reader = f.take(len);
        let mut buf = vec![0u8; (1 << 20).min(len as usize)];
        let mut read = 0;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            each(&buf[..n]);
        }
        if read < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload {id} has {} of the {len} bytes asked from {start}", read),
            ));
        }
        Ok(())
    }

    /// The first `len` bytes.
    pub fn read_prefix(&self, id: Uuid, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        self.read_range(id, 0, len as u64, |b| out.extend_from_slice(b))?;
        Ok(out)
    }

    pub fn delete(&self, id: Uuid) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Bytes an unprivileged writer may still use on the folder's file system.
    pub fn free_space(&self) -> io::Result<u64> {
        // SAFETY: fstatvfs writes into the zeroed struct we pass.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatvfs(self.dir_fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Opens `id` for an append at `start` (see [`FileSink::open`]).
    pub fn open_append(&self, id: Uuid, start: u64) -> io::Result<(FileSink, Vec<u8>)> {
        FileSink::open(&self.path(id), start)
    }

    /// Writes the concatenation of `parts` (each with its length) as
    /// `final_id`'s bytes, hashing as it goes, and syncs them. Stops with
    /// `StorageFull` when fewer than `reserve` bytes would be left. On any
    /// error the final has no file again.
    pub fn concatenate(
        &self,
        final_id: Uuid,
        parts: &[(Uuid, u64)],
        reserve: u64,
    ) -> io::Result<Sha256Stream> {
        let path = self.path(final_id);
        let result = self.copy_parts(&path, parts, reserve);
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    fn copy_parts(&self, path: &Path, parts: &[(Uuid, u64)], reserve: u64) -> io::Result<Sha256Stream> {
        let mut out = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        let mut h = Sha256Stream::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut since_check = 0u64;
        for (id, len) in parts {
            if *len == 0 {
                continue; // may have no file
            }
            let mut reader = self.open_read(*id)?.take(*len);
            let mut copied = 0u64;
            loop {
                if since_check >= ASSEMBLY_SPACE_CHECK {
                    since_check = 0;
                    if let Some(free) = self.short_of_space(reserve) {
                        return Err(io::Error::new(io::ErrorKind::StorageFull, nearly_full(free, reserve)));
                    }
                }
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                copied += n as u64;
                since_check += n as u64;
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

    /// `Some(free bytes)` when fewer than `reserve` are free (see `ByteStore::short_of_space`).
    pub fn short_of_space(&self, reserve: u64) -> Option<u64> {
        if reserve == 0 {
            return None;
        }
        self.free_space().ok().filter(|free| *free < reserve)
    }

    /// Deletes files whose upload `known` does not know and whose UUIDv7
    /// names date from before `before`: left by a crash between a removal's
    /// commit and its file's deletion. Newer names belong to uploads of this
    /// run, whose removals delete their own files; other names are left alone.
    pub fn remove_orphans(
        &self,
        before_ms: u64,
        known: impl Fn(Uuid) -> io::Result<bool>,
    ) -> io::Result<usize> {
        let mut removed = 0;
        for shard in fs::read_dir(&self.dir)? {
            for sub in fs::read_dir(shard?.path())? {
                let sub = sub?.path();
                if !sub.is_dir() {
                    continue;
                }
                for file in fs::read_dir(&sub)? {
                    let file = file?;
                    let Some(id) = file.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                        continue;
                    };
                    let Some((secs, nanos)) = id.get_timestamp().map(|t| t.to_unix()) else { continue };
                    if secs * 1000 + u64::from(nanos / 1_000_000) >= before_ms || known(id)? {
                        continue;
                    }
                    // And not touched for a minute, in case the clock stepped back.
                    let fresh = file.metadata()?.modified()?.elapsed().map_or(true, |age| age.as_secs() < 60);
                    if fresh {
                        continue;
                    }
                    match fs::remove_file(file.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// An upload's file, opened for one append.
pub struct FileSink {
    /// For the last partial page of a write, reads and syncs.
    buffered: File,
    /// `O_DIRECT`, if the file system has it (tmpfs before Linux 6.6 does not).
    direct: Option<File>,
    /// Without `O_DIRECT`: bytes from here on were not handed to the disk yet.
    writeback_from: u64,
}

impl FileSink {
    /// Opens the file (making it on the upload's first append), cuts off
    /// anything past `start` (a tail a crash or a discarded chunk left), and
    /// returns the bytes of `start`'s page that come before it: direct
    /// writes rewrite that page whole.
    fn open(path: &Path, start: u64) -> io::Result<(FileSink, Vec<u8>)> {
        let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let buffered = match open() {
            // Shard folders are made at start; one removed since is made again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(path.parent().expect("sharded path has a parent"))?;
                open()?
            }
            other => other?,
        };
        buffered.set_len(start)?;
        let direct = match OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => Some(f),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            Err(e) => return Err(e),
        };
        let page = start - start % ALIGN;
        let mut head = vec![0u8; (start - page) as usize];
        buffered.read_exact_at(&mut head, page)?;
        Ok((FileSink { buffered, direct, writeback_from: start }, head))
    }

    /// Writes consecutive blocks: whole pages directly, a last partial page
    /// through the page cache.
    pub fn write_run(&mut self, run: &[Arc<Block>]) -> io::Result<()> {
        let offset = run[0].offset();
        let last = run.last().expect("a run has blocks");
        let end = last.offset() + last.len() as u64;
        let Some(direct) = &self.direct else {
            let mut slices: Vec<IoSlice> = run.iter().map(|b| IoSlice::new(b.data())).collect();
            write_all_at(&self.buffered, &mut slices, offset)?;
            if end - self.writeback_from >= WRITEBACK_BYTES {
                start_writeback(&self.buffered, self.writeback_from, end - self.writeback_from);
                self.writeback_from = end;
            }
            return Ok(());
        };
        let (whole, tail) = last.data().split_at(last.aligned_len());
        let mut slices: Vec<IoSlice> = run[..run.len() - 1].iter().map(|b| IoSlice::new(b.data())).collect();
        if !whole.is_empty() {
            slices.push(IoSlice::new(whole));
        }
        if !slices.is_empty() {
            match write_all_at(direct, &mut slices, offset) {
                Ok(()) => {}
                // Alignment the device does not accept (logical blocks larger
                // than a page): write this and every later run buffered.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::warn!(error = %e, "O_DIRECT write refused; writing through the page cache");
                    self.direct = None;
                    return self.write_run(run);
                }
                Err(e) => return Err(e),
            }
        }
        if !tail.is_empty() {
            self.buffered.write_all_at(tail, last.offset() + whole.len() as u64)?;
        }
        Ok(())
    }

    /// Makes everything written durable.
    pub fn sync(&self) -> io::Result<()> {
        self.buffered.sync_data()
    }

    /// Cuts the file back to `len` bytes (what was committed).
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }
}

/// `pwritev` until every slice is written (at most `IOV_MAX`, 1024 on Linux, per call).
fn write_all_at(file: &File, mut slices: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    while !slices.is_empty() {
        let count = slices.len().min(1024) as libc::c_int;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the
        // slices outlive the call.
        let n =
            unsafe { libc::pwritev(file.as_raw_fd(), slices.as_ptr().cast(), count, offset as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "the disk took no bytes"));
        }
        offset += n as u64;
        IoSlice::advance_slices(&mut slices, n as usize);
    }
    Ok(())
}

/// Asks the kernel to start writing a range to disk without waiting for it,
/// so the `fdatasync` before an acknowledgement finds little left to do.
fn start_writeback(f: &File, offset: u64, len: u64) {
    // SAFETY: a plain syscall on an open descriptor; failure only loses the hint.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The start of every "short of space" answer (tus and the draft, creation
/// and append): a local disk is the one backend with a reserve to keep.
pub fn nearly_full(free: u64, reserve: u64) -> String {
    format!("the server's storage is nearly full ({free} bytes free, {reserve} kept in reserve)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{BLOCK_SIZE, Blocks};

    /// Sends `data` from `start` through `write_run` as the appender would:
    /// full blocks, then a partial one whose last page the next block carries.
    async fn write_through(file: &mut FileSink, start: u64, head: &[u8], data: &[u8], pause_at: usize) {
        let blocks = Blocks::default();
        let mut block = blocks.first(start, head).await.unwrap();
        for (i, byte) in data.iter().enumerate() {
            if i == pause_at {
                let aligned = block.aligned_len();
                let (end, tail) = (block.offset() + block.len() as u64, block.data()[aligned..].to_vec());
                file.write_run(&[Arc::new(block)]).unwrap();
                block = blocks.first(end, &tail).await.unwrap();
            }
            block.fill(std::slice::from_ref(byte));
            if block.is_full() {
                let next = block.offset() + BLOCK_SIZE as u64;
                file.write_run(&[Arc::new(block)]).unwrap();
                block = blocks.next(next).await.unwrap();
            }
        }
        file.write_run(&[Arc::new(block)]).unwrap();
    }

    /// Both write paths (direct pages plus a buffered tail, and buffered
    /// only, for file systems without `O_DIRECT`) store exactly the bytes.
    #[tokio::test]
    async fn direct_and_buffered_paths_store_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        for direct in [true, false] {
            let path = dir.path().join(format!("f-{direct}"));
            std::fs::write(&path, &data[..5_000]).unwrap();
            // Resume at 5,000 (mid-page), pause mid-page once, then resume again.
            let (mut file, head) = FileSink::open(&path, 5_000).unwrap();
            assert_eq!(head, &data[4096..5_000]);
            if !direct {
                file.direct = None;
            }
            write_through(&mut file, 5_000, &head, &data[5_000..300_001], 100_003).await;
            drop(file);
            let (mut file, head) = FileSink::open(&path, 300_001).unwrap();
            if !direct {
                file.direct = None;
            }
            write_through(&mut file, 300_001, &head, &data[300_001..], 262_144).await;
            file.buffered.sync_data().unwrap();
            assert!(std::fs::read(&path).unwrap() == data, "direct: {direct}");
        }
    }
}
