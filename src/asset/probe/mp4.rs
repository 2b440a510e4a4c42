//! ISO BMFF (MP4, M4A, MOV, 3GP): the duration comes from mvhd, mehd, the
//! fragments or the longest track, the frame size from the first video track.

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, seconds};
use crate::asset::bytes::{Src, be16, be32, be64};

struct BoxHdr {
    kind: [u8; 4],
    body: u64,
    end: u64,
}

/// Box header at `off` inside a parent ending at `limit`.
fn box_at<R: Read + Seek>(src: &mut Src<R>, off: u64, limit: u64) -> PResult<Option<BoxHdr>> {
    if off + 8 > limit {
        return Ok(None);
    }
    let Some(h) = src.array_at::<8>(off)? else {
        return Err(bad("a box header is cut off by the end of the file"));
    };
    let kind: [u8; 4] = [h[4], h[5], h[6], h[7]];
    let size32 = be32(&h, 0).unwrap_or(0) as u64;
    let (body, end) = match size32 {
        0 => (off + 8, limit),
        1 => {
            let Some(l) = src.array_at::<8>(off + 8)? else {
                return Err(bad("a box header is cut off by the end of the file"));
            };
            let size = u64::from_be_bytes(l);
            (off + 16, off.saturating_add(size))
        }
        n => (off + 8, off + n),
    };
    if end < body {
        return Err(bad(format!(
            "box '{}' at byte {off} has an invalid size",
            String::from_utf8_lossy(&kind)
        )));
    }
    if end > limit {
        return Err(bad(format!(
            "box '{}' at byte {off} extends past the end of its container (truncated or damaged)",
            String::from_utf8_lossy(&kind)
        )));
    }
    Ok(Some(BoxHdr { kind, body, end }))
}

fn children<R: Read + Seek>(src: &mut Src<R>, from: u64, to: u64) -> PResult<Vec<BoxHdr>> {
    let mut out = Vec::new();
    let mut off = from;
    while let Some(b) = box_at(src, off, to)? {
        off = b.end;
        out.push(b);
        if out.len() > 100_000 {
            return Err(bad("too many boxes"));
        }
    }
    Ok(out)
}

/// (timescale, duration) from an mvhd/mdhd payload.
fn time_fields(b: &[u8]) -> Option<(u32, u64)> {
    if b.first()? == &1 {
        Some((be32(b, 20)?, be64(b, 24)?))
    } else {
        let d = be32(b, 16)?;
        Some((be32(b, 12)?, if d == u32::MAX { u64::MAX } else { d as u64 }))
    }
}

fn small<R: Read + Seek>(src: &mut Src<R>, b: &BoxHdr, what: &str) -> PResult<Vec<u8>> {
    src.vec_at(b.body, (b.end - b.body).min(4096), 4096)?
        .ok_or_else(|| bad(format!("the {what} box is truncated")))
}

fn find<'a>(boxes: &'a [BoxHdr], kind: &[u8; 4]) -> Option<&'a BoxHdr> {
    boxes.iter().find(|b| &b.kind == kind)
}

#[derive(Default)]
struct Track {
    id: u32,
    timescale: u32,
    video: bool,
    dims: Option<(u32, u32)>,
    secs: Option<f64>,
}

fn track<R: Read + Seek>(src: &mut Src<R>, trak: &BoxHdr) -> PResult<Track> {
    let mut t = Track::default();
    let kids = children(src, trak.body, trak.end)?;
    let mut tkhd_dims = None;
    if let Some(b) = find(&kids, b"tkhd") {
        let p = small(src, b, "tkhd")?;
        let v1 = p.first() == Some(&1);
        t.id = be32(&p, if v1 { 20 } else { 12 }).unwrap_or(0);
        let at = if v1 { 88 } else { 76 };
        if let (Some(w), Some(h)) = (be32(&p, at), be32(&p, at + 4)) {
            tkhd_dims = Some((w >> 16, h >> 16));
        }
    }
    let Some(mdia) = find(&kids, b"mdia") else {
        return Ok(t);
    };
    let mkids = children(src, mdia.body, mdia.end)?;
    if let Some(b) = find(&mkids, b"hdlr") {
        let p = small(src, b, "hdlr")?;
        t.video = p.get(8..12) == Some(b"vide");
    }
    if let Some(b) = find(&mkids, b"mdhd") {
        let p = small(src, b, "mdhd")?;
        if let Some((ts, d)) = time_fields(&p) {
            t.timescale = ts;
            if ts > 0 && d != u64::MAX {
                t.secs = Some(d as f64 / ts as f64);
            }
        }
    }
    if t.video {
        // Coded size from the first visual sample entry, else tkhd.
        let mut stsd_dims = None;
        if let Some(minf) = find(&mkids, b"minf") {
            let nkids = children(src, minf.body, minf.end)?;
            if let Some(stbl) = find(&nkids, b"stbl") {
                let skids = children(src, stbl.body, stbl.end)?;
                if let Some(stsd) = find(&skids, b"stsd") {
                    let p = small(src, stsd, "stsd")?;
                    // version/flags, entry count, then entry: size, type, 6 reserved,
                    // data ref index, 16 bytes pre-defined, width, height.
                    if let (Some(w), Some(h)) = (be16(&p, 8 + 32), be16(&p, 8 + 34))
                        && w > 0
                        && h > 0
                    {
                        stsd_dims = Some((w as u32, h as u32));
                    }
                }
            }
        }
        t.dims = stsd_dims.or(tkhd_dims.filter(|&(w, h)| w > 0 && h > 0));
    }
    Ok(t)
}

/// Fragmented MP4 without a duration in mvhd/mehd: the end of the last
/// fragment of each track (tfdt + sum of trun sample durations).
fn fragments_duration<R: Read + Seek>(
    src: &mut Src<R>,
    moov_kids: &[BoxHdr],
    tracks: &[Track],
) -> PResult<Option<f64>> {
    let mut trex_dur: Vec<(u32, u32)> = Vec::new();
    if let Some(mvex) = find(moov_kids, b"mvex") {
        for b in children(src, mvex.body, mvex.end)? {
            if &b.kind == b"trex" {
                let p = small(src, &b, "trex")?;
                if let (Some(id), Some(d)) = (be32(&p, 4), be32(&p, 12)) {
                    trex_dur.push((id, d));
                }
            }
        }
    }
    let mut ends: Vec<(u32, u64)> = Vec::new(); // (track id, end in track ticks)
    let mut sums: Vec<(u32, u64)> = Vec::new(); // running sum without tfdt
    let mut off = 0u64;
    let mut count = 0u32;
    while let Ok(Some(b)) = box_at(src, off, src.len) {
        off = b.end;
        count += 1;
        if count > 1_000_000 {
            break;
        }
        if &b.kind != b"moof" {
            continue;
        }
        let Ok(trafs) = children(src, b.body, b.end) else {
            break;
        };
        for traf in trafs.iter().filter(|t| &t.kind == b"traf") {
            let Ok(tk) = children(src, traf.body, traf.end) else {
                break;
            };
            let Some(tfhd) = find(&tk, b"tfhd") else {
                continue;
            };
            let p = small(src, tfhd, "tfhd")?;
            let (Some(flags), Some(id)) = (be32(&p, 0), be32(&p, 4)) else {
                continue;
            };
            let mut at = 8;
            if flags & 0x01 != 0 {
                at += 8;
            }
            if flags & 0x02 != 0 {
                at += 4;
            }
            let default = if flags & 0x08 != 0 {
                be32(&p, at)
            } else {
                trex_dur.iter().find(|t| t.0 == id).map(|t| t.1)
            }
            .unwrap_or(0) as u64;
            let base = match find(&tk, b"tfdt") {
                Some(t) => {
                    let p = small(src, t, "tfdt")?;
                    if p.first() == Some(&1) { be64(&p, 4) } else { be32(&p, 4).map(u64::from) }
                }
                None => None,
            };
            let mut frag = 0u64;
            for trun in tk.iter().filter(|t| &t.kind == b"trun") {
                frag = frag.saturating_add(trun_duration(src, trun, default)?);
            }
            let end = match base {
                Some(base) => base.saturating_add(frag),
                None => {
                    let i = match sums.iter().position(|s| s.0 == id) {
                        Some(i) => i,
                        None => {
                            sums.push((id, 0));
                            sums.len() - 1
                        }
                    };
                    sums[i].1 = sums[i].1.saturating_add(frag);
                    sums[i].1
                }
            };
            match ends.iter_mut().find(|e| e.0 == id) {
                Some(e) => e.1 = e.1.max(end),
                None => ends.push((id, end)),
            }
        }
    }
    Ok(ends
        .iter()
        .filter_map(|&(id, end)| {
            let ts = tracks.iter().find(|t| t.id == id)?.timescale;
            (ts > 0 && end > 0).then(|| end as f64 / ts as f64)
        })
        .reduce(f64::max))
}

/// Sum of the sample durations in one trun box, streamed in small chunks.
fn trun_duration<R: Read + Seek>(src: &mut Src<R>, trun: &BoxHdr, default: u64) -> PResult<u64> {
    let Some(h) = src.array_at::<8>(trun.body)? else {
        return Ok(0);
    };
    let flags = be32(&h, 0).unwrap_or(0) & 0x00FF_FFFF;
    let n = be32(&h, 4).unwrap_or(0) as u64;
    if flags & 0x100 == 0 {
        return Ok(n.saturating_mul(default));
    }
    let mut at = trun.body + 8;
    if flags & 0x01 != 0 {
        at += 4;
    }
    if flags & 0x04 != 0 {
        at += 4;
    }
    let stride = 4 * (flags & 0xF00).count_ones() as u64;
    let n = n.min(trun.end.saturating_sub(at) / stride);
    let mut total = 0u64;
    let mut buf = vec![0u8; (stride * 512) as usize];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(512);
        let chunk = &mut buf[..(k * stride) as usize];
        if !src.read_at(at + done * stride, chunk)? {
            break;
        }
        for i in 0..k as usize {
            total += be32(chunk, i * stride as usize).unwrap_or(0) as u64;
        }
        done += k;
    }
    Ok(total)
}

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>, video: bool) -> PResult<Probe> {
    // Top level: find moov (it may come before or after mdat).
    let mut off = 0u64;
    let mut moov = None;
    let mut fragmented = false;
    let mut count = 0u32;
    loop {
        let b = match box_at(src, off, src.len) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            // A damaged box after moov does not matter; before it, it does.
            Err(e) if moov.is_none() => {
                return Err(bad(format!("{} (no moov box before it)", e.message)));
            }
            Err(_) => break,
        };
        count += 1;
        match &b.kind {
            b"moov" if moov.is_none() => moov = Some(b.body..b.end),
            b"moof" => fragmented = true,
            _ => {}
        }
        off = b.end;
        if (moov.is_some() && fragmented) || count > 1_000_000 {
            break;
        }
    }
    let Some(moov) = moov else {
        return Err(bad("no moov box: the file is truncated or not an MP4/QuickTime file"));
    };
    let kids = children(src, moov.start, moov.end)
        .map_err(|e| bad(format!("moov box is damaged: {}", e.message)))?;
    let Some(mvhd) = find(&kids, b"mvhd") else {
        return Err(bad("moov box is damaged: it has no mvhd"));
    };
    let p = small(src, mvhd, "mvhd")?;
    let Some((ts, dur)) = time_fields(&p) else {
        return Err(bad("the mvhd box is too short"));
    };
    if ts == 0 {
        return Err(bad("the mvhd box declares a zero timescale"));
    }
    let mut tracks = Vec::new();
    for t in kids.iter().filter(|b| &b.kind == b"trak") {
        tracks.push(track(src, t).map_err(|e| bad(format!("a track is damaged: {}", e.message)))?);
    }
    let mut secs = (dur != u64::MAX && dur > 0).then(|| dur as f64 / ts as f64);
    if secs.is_none() {
        // Fragmented files: mvex/mehd, else the longest track.
        if let Some(mvex) = find(&kids, b"mvex") {
            let mk = children(src, mvex.body, mvex.end)?;
            if let Some(mehd) = find(&mk, b"mehd") {
                let p = small(src, mehd, "mehd")?;
                let d = if p.first() == Some(&1) { be64(&p, 4) } else { be32(&p, 4).map(u64::from) };
                secs = d.filter(|&d| d > 0).map(|d| d as f64 / ts as f64);
            }
        }
    }
    if secs.is_none() && fragmented {
        secs = fragments_duration(src, &kids, &tracks)?;
    }
    if secs.is_none() {
        secs = tracks.iter().filter_map(|t| t.secs).filter(|&s| s > 0.0).reduce(f64::max);
    }
    let dims = if video { tracks.iter().filter(|t| t.video).find_map(|t| t.dims) } else { None };
    Ok(Probe {
        duration_seconds: secs.and_then(seconds),
        width: dims.map(|d| d.0),
        height: dims.map(|d| d.1),
    })
}
