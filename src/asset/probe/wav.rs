//! RIFF WAVE (and RF64/BW64): the duration is the data chunk's length over the
//! fmt byte rate, or the fact chunk's sample count for compressed codecs.

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, seconds};
use crate::asset::bytes::{Src, le16, le32, le64};

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>) -> PResult<Probe> {
    let Some(h) = src.array_at::<12>(0)? else {
        return Err(bad("the RIFF header is truncated"));
    };
    let rf64 = &h[..4] == b"RF64" || &h[..4] == b"BW64";
    if !(&h[..4] == b"RIFF" || rf64) || &h[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut off = 12u64;
    let mut fmt: Option<(u16, u32, u32, u16)> = None; // tag, rate, byte rate, block align
    let mut ds64_data: Option<u64> = None;
    let mut fact: Option<u32> = None;
    loop {
        let Some(c) = src.array_at::<8>(off)? else {
            return Err(bad("no data chunk found"));
        };
        let size = le32(&c, 4).unwrap_or(0) as u64;
        let body = off + 8;
        match &c[..4] {
            b"fmt " => {
                let Some(f) = src.vec_at(body, size.min(64), 64)? else {
                    return Err(bad("the fmt chunk is truncated"));
                };
                if f.len() < 16 {
                    return Err(bad("the fmt chunk is too short"));
                }
                fmt = Some((
                    le16(&f, 0).unwrap_or(0),
                    le32(&f, 4).unwrap_or(0),
                    le32(&f, 8).unwrap_or(0),
                    le16(&f, 12).unwrap_or(0),
                ));
            }
            b"ds64" => {
                if let Some(d) = src.array_at::<24>(body)? {
                    ds64_data = le64(&d, 8);
                }
            }
            b"fact" => {
                if let Some(d) = src.array_at::<4>(body)? {
                    fact = le32(&d, 0);
                }
            }
            b"data" => {
                let Some((tag, rate, byte_rate, _align)) = fmt else {
                    return Err(bad("the data chunk comes before the fmt chunk"));
                };
                let mut data = if size == 0xFFFF_FFFF || rf64 { ds64_data.unwrap_or(size) } else { size };
                data = data.min(src.len.saturating_sub(body));
                if rate == 0 {
                    return Err(bad("the fmt chunk declares a zero sample rate"));
                }
                let pcm = matches!(tag, 1 | 3 | 6 | 7 | 0xFFFE);
                let secs = match fact {
                    Some(samples) if !pcm && samples > 0 => samples as f64 / rate as f64,
                    _ if byte_rate > 0 => data as f64 / byte_rate as f64,
                    _ => return Err(bad("the fmt chunk declares a zero byte rate")),
                };
                return Ok(Probe { duration_seconds: seconds(secs), ..Probe::default() });
            }
            _ => {}
        }
        off = body + size + (size & 1);
    }
}
