//! MPEG audio (MP3, possibly behind ID3v2 tags): the duration comes from the
//! frame count in a Xing/Info or VBRI header, else from walking the frame
//! headers (no decoding), resynchronising over junk.

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, id3v2_len, seconds};
use crate::asset::bytes::{Src, be32};

#[derive(Clone, Copy)]
pub(super) struct Header {
    pub len: u64,
    pub samples: u32,
    pub rate: u32,
    pub mpeg1: bool,
    pub mono: bool,
    /// version | layer | sample rate bits: equal in all frames of a stream.
    pub key: u32,
}

pub(super) fn parse(h: u32) -> Option<Header> {
    const BR: [[u16; 16]; 5] = [
        [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 0], // v1 L1
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 0],    // v1 L2
        [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0],     // v1 L3
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 0],    // v2 L1
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0],         // v2 L2/L3
    ];
    if h >> 21 != 0x7FF {
        return None;
    }
    let version = (h >> 19) & 3; // 0 = 2.5, 1 = reserved, 2 = v2, 3 = v1
    let layer = (h >> 17) & 3; // 1 = III, 2 = II, 3 = I
    let br_idx = ((h >> 12) & 0xF) as usize;
    let sr_idx = ((h >> 10) & 3) as usize;
    if version == 1 || layer == 0 || br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        return None;
    }
    let mpeg1 = version == 3;
    let base = [44100u32, 48000, 32000][sr_idx];
    let rate = match version {
        3 => base,
        2 => base / 2,
        _ => base / 4,
    };
    let table = match (mpeg1, layer) {
        (true, 3) => 0,
        (true, 2) => 1,
        (true, _) => 2,
        (false, 3) => 3,
        (false, _) => 4,
    };
    let br = BR[table][br_idx] as u32 * 1000;
    let pad = (h >> 9) & 1;
    let (len, samples) = match layer {
        3 => ((12 * br / rate + pad) * 4, 384),
        2 => (144 * br / rate + pad, 1152),
        _ if mpeg1 => (144 * br / rate + pad, 1152),
        _ => (72 * br / rate + pad, 576),
    };
    Some(Header { len: len as u64, samples, rate, mpeg1, mono: (h >> 6) & 3 == 3, key: h & 0xFFFE_0C00 })
}

fn header_at<R: Read + Seek>(src: &mut Src<R>, off: u64) -> PResult<Option<Header>> {
    Ok(src.array_at::<4>(off)?.and_then(|b| parse(u32::from_be_bytes(b))))
}

/// A frame at `off` that is followed by a matching frame (or by the end of
/// the file / an ID3v1 or APE tag).
fn confirmed_at<R: Read + Seek>(src: &mut Src<R>, off: u64, key: Option<u32>) -> PResult<Option<Header>> {
    let Some(h) = header_at(src, off)? else {
        return Ok(None);
    };
    if key.is_some_and(|k| k != h.key) {
        return Ok(None);
    }
    let next = off + h.len;
    if next >= src.len {
        return Ok((next == src.len).then_some(h));
    }
    if let Some(n) = header_at(src, next)?
        && n.key == h.key
    {
        return Ok(Some(h));
    }
    if let Some(tag) = src.array_at::<3>(next)?
        && (&tag == b"TAG" || &tag == b"APE")
    {
        return Ok(Some(h));
    }
    Ok(None)
}

/// Scans forward (bounded) for the next confirmed frame.
fn resync<R: Read + Seek>(
    src: &mut Src<R>,
    from: u64,
    limit: u64,
    key: Option<u32>,
) -> PResult<Option<(u64, Header)>> {
    let end = from.saturating_add(limit).min(src.len);
    let mut off = from;
    let mut buf = vec![0u8; 4096];
    while off + 4 <= end {
        let n = (end - off).min(buf.len() as u64) as usize;
        if !src.read_at(off, &mut buf[..n])? {
            return Ok(None);
        }
        let mut i = 0;
        while i + 1 < n {
            if buf[i] == 0xFF
                && buf[i + 1] & 0xE0 == 0xE0
                && let Some(h) = confirmed_at(src, off + i as u64, key)?
            {
                return Ok(Some((off + i as u64, h)));
            }
            i += 1;
        }
        // Keep one byte of overlap for a sync split over two windows.
        off += (n as u64).saturating_sub(1).max(1);
    }
    Ok(None)
}

/// Frame count from a Xing/Info or VBRI header in the first frame.
fn vbr_frames<R: Read + Seek>(src: &mut Src<R>, off: u64, h: &Header) -> PResult<Option<u64>> {
    let side = match (h.mpeg1, h.mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    if let Some(b) = src.array_at::<12>(off + 4 + side)?
        && (&b[..4] == b"Xing" || &b[..4] == b"Info")
        && b[7] & 1 != 0
    {
        let frames = be32(&b, 8).unwrap_or(0) as u64;
        if frames > 0 {
            return Ok(Some(frames));
        }
    }
    if let Some(b) = src.array_at::<18>(off + 36)?
        && &b[..4] == b"VBRI"
    {
        let frames = be32(&b, 14).unwrap_or(0) as u64;
        if frames > 0 {
            return Ok(Some(frames));
        }
    }
    Ok(None)
}

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>) -> PResult<Probe> {
    let mut start = 0u64;
    loop {
        let n = id3v2_len(src, start)?;
        if n == 0 {
            break;
        }
        start += n;
    }
    if start > src.len {
        return Err(bad("the ID3v2 tag extends past the end of the file"));
    }
    let Some((first, h)) = resync(src, start, 64 * 1024, None)? else {
        return Err(bad("no MPEG audio frame found"));
    };
    if let Some(frames) = vbr_frames(src, first, &h)? {
        let secs = frames as f64 * h.samples as f64 / h.rate as f64;
        return Ok(Probe { duration_seconds: seconds(secs), ..Probe::default() });
    }
    // No Xing/VBRI: count frames (headers only, no decoding).
    let mut frames = 0u64;
    let mut off = first;
    loop {
        match header_at(src, off)? {
            Some(f) if f.key == h.key && off + f.len <= src.len => {
                frames += 1;
                off += f.len;
            }
            _ => {
                if off + 4 > src.len {
                    break;
                }
                match resync(src, off + 1, 256 * 1024, Some(h.key))? {
                    Some((o, _)) => off = o,
                    None => break,
                }
            }
        }
    }
    let secs = frames as f64 * h.samples as f64 / h.rate as f64;
    Ok(Probe { duration_seconds: seconds(secs), ..Probe::default() })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::asset::probe::tests::{DIR, Tmp, secs};
    use crate::asset::probe::{mp3, probe};
    use crate::asset::sniff::{SNIFF_LEN, sniff};

    #[test]
    fn mp3_without_xing_counts_frames() {
        let data = std::fs::read(format!("{DIR}tone.mp3")).unwrap();
        let sn = sniff(&data[..SNIFF_LEN]);
        let with = secs(&probe(Path::new(&format!("{DIR}tone.mp3")), &sn).unwrap()).unwrap();
        // Drop the ID3 tag and the Xing/Info frame: only plain frames are left.
        let id3 = 10 + data[6..10].iter().fold(0usize, |a, &b| (a << 7) | (b & 0x7F) as usize);
        let first = mp3::parse(u32::from_be_bytes(data[id3..id3 + 4].try_into().unwrap())).unwrap();
        let raw = &data[id3 + first.len as usize..];
        let t = Tmp::new("mp3", raw);
        let sn2 = sniff(&raw[..SNIFF_LEN]);
        assert_eq!(sn2.extension.as_deref(), Some("mp3"));
        let counted = secs(&probe(&t.0, &sn2).unwrap()).unwrap();
        assert!((counted - with).abs() < 0.03, "{counted} vs {with}");
        // Junk in the middle is skipped by resynchronising.
        let mut junk = raw[..4000].to_vec();
        junk.extend_from_slice(&[0x55; 333]);
        junk.extend_from_slice(&raw[4000..]);
        let t = Tmp::new("mp3junk", &junk);
        let s = secs(&probe(&t.0, &sn2).unwrap()).unwrap();
        assert!((s - counted).abs() < 0.06, "{s} vs {counted}");
    }
}
