//! Page-aligned blocks: the unit in which upload bytes travel from the socket
//! to the disk.
//!
//! Body frames are copied once, on the connection's task, into a block; the
//! frame then goes straight back to hyper (its read buffer is reused instead
//! of reallocated) and the block is shared, without copying, by the thread
//! that hashes it and the thread that writes it with `O_DIRECT`. Direct
//! writes need page-aligned memory, offsets and lengths, and they skip the
//! page cache, which on these VMs costs more CPU than SHA-256 (about 1.7 s of
//! system time per GiB of new pages against 0.2 s for direct writes).
//!
//! Memory is bounded twice: an upload holds at most [`MAX_PER_UPLOAD`] blocks,
//! and every block past an upload's first needs one of [`EXTRA_BLOCKS`]
//! shared permits, so a thousand concurrent uploads use one block each and a
//! lone upload gets a deep pipeline.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Bytes per block. Large enough that a write or a hash call is worth its
/// overhead; the disk thread joins queued blocks into larger writes.
pub const BLOCK_SIZE: usize = 256 << 10;
/// Alignment of memory, file offsets and lengths for `O_DIRECT` (the page
/// size, which every common device's logical block size divides).
pub const ALIGN: u64 = 4096;
/// Blocks one upload may hold (filling, hashing, writing): 3 MiB. With 4
/// the socket waited on the hash and disk threads so often that one 1 GiB
/// PATCH took 15 % longer and 8 MiB PATCHes 8 % longer (benches/RESULTS.md,
/// issue 15); 24 gave no more.
pub const MAX_PER_UPLOAD: usize = 12;
/// Blocks beyond each upload's first, shared by all uploads: 8 MiB.
const EXTRA_BLOCKS: usize = 32;
/// Freed blocks kept for reuse instead of being unmapped: 4 MiB. Fresh
/// pages cost a page fault each, which is what makes the page cache slow here.
const POOL_KEEP: usize = 16;

static EXTRA: Semaphore = Semaphore::const_new(EXTRA_BLOCKS);
static POOL: Mutex<Vec<AlignedBuf>> = Mutex::new(Vec::new());

/// `BLOCK_SIZE` bytes of page-aligned anonymous memory.
struct AlignedBuf(NonNull<u8>);

// SAFETY: the mapping is owned by this value alone; `&`/`&mut` access follows
// the usual borrow rules through the methods below.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn take() -> io::Result<AlignedBuf> {
        if let Some(buf) = POOL.lock().expect("block pool").pop() {
            return Ok(buf);
        }
        // SAFETY: an anonymous private mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AlignedBuf(NonNull::new(ptr.cast()).expect("mmap returned null")))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is BLOCK_SIZE bytes, readable, and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), BLOCK_SIZE) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), BLOCK_SIZE) }
    }

    fn give_back(self) {
        let mut pool = POOL.lock().expect("block pool");
        if pool.len() < POOL_KEEP {
            pool.push(self);
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `take`.
        unsafe {
            libc::munmap(self.0.as_ptr().cast(), BLOCK_SIZE);
        }
    }
}

/// Bytes of one upload at `offset` (aligned) in the file.
pub struct Block {
    buf: Option<AlignedBuf>,
    offset: u64,
    len: usize,
    /// Bytes at the start that were already hashed (carried over from the
    /// previous block because they share its last page).
    hashed: usize,
    owner: Arc<Owner>,
    _extra: Option<SemaphorePermit<'static>>,
}

impl Block {
    /// File offset of the first byte (a multiple of [`ALIGN`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_full(&self) -> bool {
        self.len == BLOCK_SIZE
    }

    /// Every byte, from `offset`.
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref().expect("block buffer").bytes()[..self.len]
    }

    /// The bytes not hashed yet.
    pub fn unhashed(&self) -> &[u8] {
        &self.data()[self.hashed..]
    }

    /// Bytes that end on a page boundary (written with `O_DIRECT`).
    pub fn aligned_len(&self) -> usize {
        self.len & !(ALIGN as usize - 1)
    }

    /// Appends as much of `src` as fits; returns how much did.
    pub fn fill(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(BLOCK_SIZE - self.len);
        let at = self.len;
        self.buf.as_mut().expect("block buffer").bytes_mut()[at..at + n].copy_from_slice(&src[..n]);
        self.len += n;
        n
    }

    /// Bytes already hashed and on disk that the block must start with.
    fn carry(&mut self, src: &[u8]) {
        debug_assert_eq!(self.len, 0);
        self.fill(src);
        self.hashed = src.len();
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            buf.give_back();
        }
        self.owner.in_use.fetch_sub(1, Ordering::AcqRel);
        self.owner.returned.notify_one();
    }
}

#[derive(Default)]
struct Owner {
    in_use: AtomicUsize,
    returned: Notify,
}

/// Hands out the blocks of one append.
#[derive(Default)]
pub struct Blocks {
    owner: Arc<Owner>,
}

impl Blocks {
    /// An empty block at `offset`, waiting while this upload holds as many
    /// blocks as it may.
    pub async fn next(&self, offset: u64) -> io::Result<Block> {
        debug_assert_eq!(offset % ALIGN, 0);
        loop {
            let held = self.owner.in_use.load(Ordering::Acquire);
            let extra = match held {
                0 => Some(None),
                n if n < MAX_PER_UPLOAD => EXTRA.try_acquire().ok().map(Some),
                _ => None,
            };
            if let Some(extra) = extra {
                self.owner.in_use.fetch_add(1, Ordering::AcqRel);
                let block =
                    Block { buf: None, offset, len: 0, hashed: 0, owner: self.owner.clone(), _extra: extra };
                return Self::with_buffer(block);
            }
            // `notify_one` keeps a permit when nobody waits, so a block
            // returned since the load above is not missed.
            self.owner.returned.notified().await;
        }
    }

    /// A block at `offset`'s page, starting with the bytes `head` of that
    /// page that are already in the file (and hashed).
    pub async fn first(&self, offset: u64, head: &[u8]) -> io::Result<Block> {
        let mut block = self.next(offset - head.len() as u64).await?;
        block.carry(head);
        Ok(block)
    }

    fn with_buffer(mut block: Block) -> io::Result<Block> {
        // On failure `block` drops here and gives its slot back.
        block.buf = Some(AlignedBuf::take()?);
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn carries_the_partial_page_into_the_next_block() {
        let blocks = Blocks::default();
        let mut a = blocks.first(4096 + 10, &[7u8; 10]).await.unwrap();
        assert_eq!(a.offset(), 4096);
        assert_eq!(a.unhashed(), &[] as &[u8]);
        a.fill(&[1u8; 5000]);
        assert_eq!(a.len(), 5010);
        assert_eq!(a.aligned_len(), 4096);
        let tail = a.data()[a.aligned_len()..].to_vec();
        let b = blocks.first(a.offset() + a.len() as u64, &tail).await.unwrap();
        assert_eq!(b.offset(), 8192);
        assert_eq!(b.len(), 914);
        assert!(b.unhashed().is_empty());
        assert_eq!(b.data(), &a.data()[4096..]);
    }

    #[tokio::test]
    async fn an_upload_waits_when_it_holds_its_share() {
        let blocks = Blocks::default();
        let mut held = Vec::new();
        for i in 0..MAX_PER_UPLOAD {
            held.push(blocks.next(i as u64 * BLOCK_SIZE as u64).await.unwrap());
        }
        let wait = tokio::time::timeout(std::time::Duration::from_millis(50), blocks.next(0));
        assert!(wait.await.is_err(), "a block past its share must wait");
        held.pop();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), blocks.next(0)).await;
        assert!(got.is_ok(), "a returned block frees a slot");
    }
}
