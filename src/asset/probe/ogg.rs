//! Ogg (Opus, Vorbis, FLAC, Speex, Theora): the codec comes from the
//! beginning-of-stream pages, the duration from the granule position of the
//! last CRC-valid page, and Theora also gives the frame size.

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, seconds};
use crate::asset::bytes::{Src, be32, le16, le32, le64};

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut j = 0;
        while j < 8 {
            r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04C1_1DB7 } else { r << 1 };
            j += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
};

fn crc(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |c, &b| (c << 8) ^ CRC_TABLE[((c >> 24) as u8 ^ b) as usize])
}

struct Page {
    flags: u8,
    serial: u32,
    header_len: u64,
    body_len: u64,
}

fn page_at<R: Read + Seek>(src: &mut Src<R>, off: u64) -> PResult<Option<Page>> {
    let Some(h) = src.array_at::<27>(off)? else {
        return Ok(None);
    };
    if &h[..4] != b"OggS" || h[4] != 0 {
        return Ok(None);
    }
    let nseg = h[26] as u64;
    let Some(segs) = src.vec_at(off + 27, nseg, 255)? else {
        return Ok(None);
    };
    Ok(Some(Page {
        flags: h[5],
        serial: le32(&h, 14).unwrap_or(0),
        header_len: 27 + nseg,
        body_len: segs.iter().map(|&s| s as u64).sum(),
    }))
}

#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Opus { pre_skip: u64 },
    Rate(u32),
    Theora { w: u32, h: u32, frn: u32, frd: u32, shift: u32 },
}

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>, video: bool) -> PResult<Probe> {
    // Beginning-of-stream pages come first, one per logical stream.
    let mut streams: Vec<(u32, Codec)> = Vec::new();
    let mut off = 0u64;
    while streams.len() < 16 {
        let Some(p) = page_at(src, off)? else { break };
        if p.flags & 2 == 0 {
            break;
        }
        let body = src.vec_at(off + p.header_len, p.body_len.min(64), 64)?.unwrap_or_default();
        let codec = if body.starts_with(b"OpusHead") {
            le16(&body, 10).map(|s| Codec::Opus { pre_skip: s as u64 })
        } else if body.starts_with(b"\x01vorbis") {
            le32(&body, 12).map(Codec::Rate)
        } else if body.starts_with(b"\x7fFLAC") {
            // Mapping header (9 bytes) + "fLaC" + block header (4) + STREAMINFO.
            body.get(27..30)
                .map(|s| (s[0] as u32) << 12 | (s[1] as u32) << 4 | (s[2] as u32) >> 4)
                .map(Codec::Rate)
        } else if body.starts_with(b"Speex   ") {
            le32(&body, 36).map(Codec::Rate)
        } else if body.starts_with(b"\x80theora") {
            let w = body.get(14..17).map(|s| u32::from_be_bytes([0, s[0], s[1], s[2]]));
            let h = body.get(17..20).map(|s| u32::from_be_bytes([0, s[0], s[1], s[2]]));
            match (w, h, be32(&body, 22), be32(&body, 26), body.get(40..42)) {
                (Some(w), Some(h), Some(frn), Some(frd), Some(k)) => Some(Codec::Theora {
                    w,
                    h,
                    frn,
                    frd,
                    shift: ((k[0] as u32 & 0x03) << 3) | (k[1] as u32 >> 5),
                }),
                _ => None,
            }
        } else {
            None
        };
        if let Some(c) = codec {
            streams.push((p.serial, c));
        }
        off += p.header_len + p.body_len;
    }
    if off == 0 {
        return Err(bad("the first Ogg page is missing or malformed"));
    }
    let mut probe = Probe::default();
    if video
        && let Some(&(_, Codec::Theora { w, h, .. })) =
            streams.iter().find(|s| matches!(s.1, Codec::Theora { .. }))
        && w > 0
        && h > 0
    {
        probe.width = Some(w);
        probe.height = Some(h);
    }
    // Prefer an audio stream's clock; fall back to Theora frame counting.
    let Some(&(serial, codec)) =
        streams.iter().find(|s| !matches!(s.1, Codec::Theora { .. })).or_else(|| streams.first())
    else {
        return Ok(probe); // No stream we understand.
    };
    let Some(granule) = last_granule(src, serial)? else {
        return Err(bad("no complete Ogg page with a granule position was found"));
    };
    let secs = match codec {
        Codec::Opus { pre_skip } => granule.saturating_sub(pre_skip) as f64 / 48_000.0,
        Codec::Rate(rate) if rate > 0 => granule as f64 / rate as f64,
        Codec::Theora { frn, frd, shift, .. } if frn > 0 && shift < 64 => {
            let frames = (granule >> shift) + (granule & ((1u64 << shift) - 1));
            frames as f64 * frd as f64 / frn as f64
        }
        _ => return Err(bad("the stream header declares a zero sample rate")),
    };
    probe.duration_seconds = seconds(secs);
    Ok(probe)
}

/// Granule position of the last CRC-valid page of `serial`, scanning
/// backwards from the end in bounded windows.
fn last_granule<R: Read + Seek>(src: &mut Src<R>, serial: u32) -> PResult<Option<u64>> {
    const WINDOW: u64 = 128 * 1024; // > 2 × the largest possible page (65,307 bytes)
    let mut end = src.len;
    loop {
        let start = end.saturating_sub(WINDOW);
        let Some(buf) = src.vec_at(start, end - start, WINDOW)? else {
            return Ok(None);
        };
        let mut best: Option<u64> = None;
        let mut i = 0usize;
        while i + 27 <= buf.len() {
            if &buf[i..i + 4] != b"OggS" || buf[i + 4] != 0 {
                i += 1;
                continue;
            }
            let nseg = buf[i + 26] as usize;
            let hl = 27 + nseg;
            let Some(segs) = buf.get(i + 27..i + hl) else {
                break;
            };
            let total = hl + segs.iter().map(|&s| s as usize).sum::<usize>();
            let Some(page) = buf.get(i..i + total) else {
                i += 1;
                continue;
            };
            let mut copy = page.to_vec();
            copy[22..26].fill(0);
            let granule = le64(page, 6).unwrap_or(u64::MAX);
            if crc(&copy) == le32(page, 22).unwrap_or(0)
                && le32(page, 14) == Some(serial)
                && granule != u64::MAX
            {
                best = Some(granule);
                i += total;
            } else {
                i += 1;
            }
        }
        if best.is_some() || start == 0 {
            return Ok(best);
        }
        // Overlap so a page straddling the boundary is seen whole next time.
        end = start + 65_536;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::asset::probe::probe;
    use crate::asset::probe::tests::{DIR, sniff_file};

    #[test]
    fn opus_subtracts_pre_skip() {
        let path = format!("{DIR}tone.opus");
        let p = probe(Path::new(&path), &sniff_file(Path::new(&path))).unwrap();
        // 2.345 s of 48 kHz input; ffprobe reports 2.3515 (granule incl. 312 pre-skip samples).
        assert_eq!(p.duration_seconds.as_deref(), Some("2.345"));
    }
}
