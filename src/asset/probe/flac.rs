//! FLAC: the duration is STREAMINFO's total sample count over its sample rate
//! (an ID3v2 tag in front is skipped).

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, id3v2_len, seconds};
use crate::asset::bytes::{Src, be32};

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>) -> PResult<Probe> {
    let start = id3v2_len(src, 0)?;
    let Some(m) = src.array_at::<4>(start)? else {
        return Err(bad("the file is too short"));
    };
    if &m != b"fLaC" {
        return Err(bad("missing fLaC marker"));
    }
    let Some(b) = src.array_at::<38>(start + 4)? else {
        return Err(bad("the STREAMINFO block is truncated"));
    };
    if b[0] & 0x7F != 0 || u32::from_be_bytes([0, b[1], b[2], b[3]]) < 34 {
        return Err(bad("the first metadata block is not a valid STREAMINFO"));
    }
    let si = &b[4..];
    let rate = (si[10] as u32) << 12 | (si[11] as u32) << 4 | (si[12] as u32) >> 4;
    let total = ((si[13] & 0x0F) as u64) << 32 | be32(si, 14).unwrap_or(0) as u64;
    if rate == 0 {
        return Err(bad("STREAMINFO declares a zero sample rate"));
    }
    Ok(Probe {
        // total == 0 means "unknown" (e.g. a stream captured live).
        duration_seconds: if total > 0 { seconds(total as f64 / rate as f64) } else { None },
        ..Probe::default()
    })
}
