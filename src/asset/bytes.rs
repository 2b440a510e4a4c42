//! Byte readers shared by sniffing and probing: big/little-endian integers at
//! an offset in a slice (`None` past the end), and a seekable source with a
//! known length whose reads are bounds-checked, so no parser indexes blindly.

use std::io::{Read, Seek, SeekFrom};

use super::probe::{PResult, bad};

/// A seekable byte source with a known length; reads are bounds-checked.
pub(super) struct Src<R> {
    r: R,
    pub(super) len: u64,
    pos: u64,
}

impl<R: Read + Seek> Src<R> {
    pub(super) fn new(r: R, len: u64) -> Self {
        Src { r, len, pos: 0 }
    }

    /// Fills `buf` from `off`; `false` when the file is too short.
    pub(super) fn read_at(&mut self, off: u64, buf: &mut [u8]) -> PResult<bool> {
        let end = match off.checked_add(buf.len() as u64) {
            Some(e) if e <= self.len => e,
            _ => return Ok(false),
        };
        if off != self.pos {
            self.r.seek(SeekFrom::Start(off)).map_err(|e| bad(format!("read error: {e}")))?;
        }
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos = end;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.pos = u64::MAX;
                Ok(false)
            }
            Err(e) => {
                self.pos = u64::MAX;
                Err(bad(format!("read error: {e}")))
            }
        }
    }

    /// Reads `n` (≤ `cap`) bytes at `off`, or `None` when past the end.
    pub(super) fn vec_at(&mut self, off: u64, n: u64, cap: u64) -> PResult<Option<Vec<u8>>> {
        if n > cap {
            return Ok(None);
        }
        let mut v = vec![0u8; n as usize];
        Ok(self.read_at(off, &mut v)?.then_some(v))
    }

    pub(super) fn array_at<const N: usize>(&mut self, off: u64) -> PResult<Option<[u8; N]>> {
        let mut b = [0u8; N];
        Ok(self.read_at(off, &mut b)?.then_some(b))
    }
}

// `at + N` is checked so an offset near `usize::MAX` gives `None`, not an
// overflow.
pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
pub(super) fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}
pub(super) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
pub(super) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}
