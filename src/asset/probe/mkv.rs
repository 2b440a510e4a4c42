//! Matroska / WebM (EBML): the duration comes from Info, or without one from
//! where the last cluster's blocks end; the frame size from the video track.

use std::io::{Read, Seek};

use super::{PResult, Probe, bad, seconds};
use crate::asset::bytes::Src;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const DEFAULT_DURATION: u32 = 0x23_E383;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const BLOCK_DURATION: u32 = 0x9B;
/// Level-1 elements: they end an unknown-sized cluster.
const LEVEL1: [u32; 8] =
    [0x114D_9B74, INFO, TRACKS, CLUSTER, 0x1C53_BB6B, 0x1254_C367, 0x1043_A770, 0x1941_A469];

struct El {
    id: u32,
    data: u64,
    /// `None` = unknown size.
    size: Option<u64>,
}

fn element<R: Read + Seek>(src: &mut Src<R>, off: u64) -> PResult<Option<El>> {
    let mut b = [0u8; 12];
    let n = (src.len.saturating_sub(off)).min(12) as usize;
    if n < 2 || !src.read_at(off, &mut b[..n])? {
        return Ok(None);
    }
    let b = &b[..n];
    let Some(il) = vint_len(b[0]).filter(|&l| l <= 4) else {
        return Err(bad(format!("invalid element ID at byte {off}")));
    };
    let Some(idb) = b.get(..il) else {
        return Ok(None);
    };
    let id = idb.iter().fold(0u32, |a, &x| (a << 8) | x as u32);
    let Some(&first) = b.get(il) else {
        return Ok(None);
    };
    let Some(sl) = vint_len(first) else {
        return Err(bad(format!("invalid element size at byte {off}")));
    };
    let Some(sb) = b.get(il..il + sl) else {
        return Ok(None);
    };
    let mut size = (first as u64) & (0xFF >> sl);
    let mut all_ones = size == (0xFF >> sl);
    for &x in &sb[1..] {
        size = (size << 8) | x as u64;
        all_ones &= x == 0xFF;
    }
    Ok(Some(El { id, data: off + (il + sl) as u64, size: (!all_ones).then_some(size) }))
}

fn vint_len(first: u8) -> Option<usize> {
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

fn uint<R: Read + Seek>(src: &mut Src<R>, e: &El) -> PResult<Option<u64>> {
    let n = e.size.unwrap_or(0);
    if n == 0 || n > 8 {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    Ok(src
        .read_at(e.data, &mut b[..n as usize])?
        .then(|| b[..n as usize].iter().fold(0u64, |a, &x| (a << 8) | x as u64)))
}

fn float<R: Read + Seek>(src: &mut Src<R>, e: &El) -> PResult<Option<f64>> {
    Ok(match e.size {
        Some(4) => src.array_at::<4>(e.data)?.map(|b| f32::from_be_bytes(b) as f64),
        Some(8) => src.array_at::<8>(e.data)?.map(f64::from_be_bytes),
        _ => None,
    })
}

/// Iterates the sized children of a sized master element.
fn each_child<R: Read + Seek>(
    src: &mut Src<R>,
    parent: &El,
    mut f: impl FnMut(&mut Src<R>, &El) -> PResult<()>,
) -> PResult<()> {
    let Some(size) = parent.size else {
        return Err(bad("a header element has an unknown size"));
    };
    let end = parent.data.saturating_add(size);
    if end > src.len {
        return Err(bad("a header element is cut off by the end of the file"));
    }
    let mut off = parent.data;
    let mut n = 0u32;
    while off < end {
        let Some(c) = element(src, off)? else {
            return Err(bad("a header element is cut off by the end of the file"));
        };
        let Some(cs) = c.size else {
            return Err(bad("a header element has an unknown size"));
        };
        let cend = c.data.saturating_add(cs);
        if cend > end {
            return Err(bad("an element overruns its parent"));
        }
        f(src, &c)?;
        off = cend;
        n += 1;
        if n > 100_000 {
            return Err(bad("too many elements"));
        }
    }
    Ok(())
}

#[derive(Default)]
struct TrackInfo {
    number: u64,
    video: bool,
    default_duration_ns: Option<u64>,
    dims: Option<(u64, u64)>,
}

#[derive(Default)]
struct State {
    scale: Option<u64>,
    duration: Option<f64>,
    info_seen: bool,
    tracks: Option<Vec<TrackInfo>>,
    cluster_tc: u64,
    /// Largest block end seen, in TimecodeScale units.
    max_end: Option<f64>,
}

impl State {
    fn scale(&self) -> f64 {
        self.scale.filter(|&s| s > 0).unwrap_or(1_000_000) as f64
    }

    fn block<R: Read + Seek>(&mut self, src: &mut Src<R>, data: u64, dur: Option<u64>) -> PResult<()> {
        // Track number (vint, ≤ 8 bytes) + 16-bit relative timecode.
        let n = src.len.saturating_sub(data).min(10) as usize;
        let mut b = [0u8; 10];
        if n == 0 || !src.read_at(data, &mut b[..n])? {
            return Ok(());
        }
        self.block_bytes(&b[..n], dur)
    }

    fn block_bytes(&mut self, b: &[u8], dur: Option<u64>) -> PResult<()> {
        let Some(tl) = b.first().and_then(|&x| vint_len(x)).filter(|&l| l <= 8) else {
            return Ok(());
        };
        let mut track = (b[0] as u64) & (0xFF >> tl);
        for &x in b.get(1..tl).unwrap_or(&[]) {
            track = (track << 8) | x as u64;
        }
        let Some(tc) = b.get(tl..tl + 2) else {
            return Ok(());
        };
        let rel = i16::from_be_bytes([tc[0], tc[1]]) as f64;
        let dur = match dur {
            Some(d) => d as f64,
            None => self
                .tracks
                .as_ref()
                .and_then(|ts| ts.iter().find(|t| t.number == track))
                .and_then(|t| t.default_duration_ns)
                .map_or(0.0, |ns| ns as f64 / self.scale()),
        };
        let end = self.cluster_tc as f64 + rel + dur;
        self.max_end = Some(self.max_end.map_or(end, |m| m.max(end)));
        Ok(())
    }

    fn block_group<R: Read + Seek>(&mut self, src: &mut Src<R>, g: &El) -> PResult<()> {
        let mut block = None;
        let mut dur = None;
        each_child(src, g, |src, c| {
            match c.id {
                BLOCK => block = Some(c.data),
                BLOCK_DURATION => dur = uint(src, c)?,
                _ => {}
            }
            Ok(())
        })?;
        if let Some(data) = block {
            self.block(src, data, dur)?;
        }
        Ok(())
    }
}

fn read_info<R: Read + Seek>(src: &mut Src<R>, e: &El, st: &mut State) -> PResult<()> {
    each_child(src, e, |src, c| {
        match c.id {
            TIMECODE_SCALE => st.scale = uint(src, c)?,
            DURATION => st.duration = float(src, c)?,
            _ => {}
        }
        Ok(())
    })?;
    st.info_seen = true;
    Ok(())
}

fn read_tracks<R: Read + Seek>(src: &mut Src<R>, e: &El, st: &mut State) -> PResult<()> {
    let mut tracks = Vec::new();
    each_child(src, e, |src, entry| {
        if entry.id != TRACK_ENTRY {
            return Ok(());
        }
        let mut t = TrackInfo::default();
        each_child(src, entry, |src, c| {
            match c.id {
                TRACK_NUMBER => t.number = uint(src, c)?.unwrap_or(0),
                TRACK_TYPE => t.video = uint(src, c)? == Some(1),
                DEFAULT_DURATION => t.default_duration_ns = uint(src, c)?,
                VIDEO => {
                    let (mut w, mut h) = (None, None);
                    each_child(src, c, |src, v| {
                        match v.id {
                            PIXEL_WIDTH => w = uint(src, v)?,
                            PIXEL_HEIGHT => h = uint(src, v)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    t.dims = w.zip(h);
                }
                _ => {}
            }
            Ok(())
        })?;
        tracks.push(t);
        Ok(())
    })?;
    st.tracks = Some(tracks);
    Ok(())
}

/// Walks the children of a sized cluster for its timecode and blocks.
fn read_cluster<R: Read + Seek>(src: &mut Src<R>, c: &El, st: &mut State) -> PResult<()> {
    let end = c.data.saturating_add(c.size.unwrap_or(0)).min(src.len);
    let mut off = c.data;
    while off < end {
        let Some(e) = element(src, off)? else { break };
        let Some(size) = e.size else { break };
        match e.id {
            CLUSTER_TIMECODE => st.cluster_tc = uint(src, &e)?.unwrap_or(0),
            SIMPLE_BLOCK => st.block(src, e.data, None)?,
            BLOCK_GROUP if e.data.saturating_add(size) <= src.len => {
                st.block_group(src, &e)?;
            }
            _ => {}
        }
        off = e.data.saturating_add(size);
    }
    Ok(())
}

pub(super) fn probe<R: Read + Seek>(src: &mut Src<R>, video: bool) -> PResult<Probe> {
    let Some(h) = element(src, 0)? else {
        return Err(bad("the EBML header is truncated"));
    };
    let Some(hsize) = h.size.filter(|_| h.id == EBML) else {
        return Err(bad("missing EBML header"));
    };
    // Find the Segment.
    let mut off = h.data.saturating_add(hsize);
    let seg = loop {
        let Some(e) = element(src, off)? else {
            return Err(bad("no Segment element: the file is truncated"));
        };
        if e.id == SEGMENT {
            break e;
        }
        let Some(s) = e.size else {
            return Err(bad("unexpected element of unknown size before the Segment"));
        };
        off = e.data.saturating_add(s);
    };
    let seg_end = seg.size.map_or(src.len, |s| seg.data.saturating_add(s).min(src.len));
    let mut st = State::default();
    let mut last_cluster: Option<El> = None;
    let mut flat_cluster = false; // inside an unknown-sized cluster
    let mut off = seg.data;
    let mut n = 0u64;
    while off < seg_end {
        let e = match element(src, off) {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(err) if !st.info_seen || st.tracks.is_none() => return Err(err),
            Err(_) => break, // Damage after the headers: keep what we have.
        };
        n += 1;
        if n > 10_000_000 {
            break;
        }
        if flat_cluster && LEVEL1.contains(&e.id) {
            flat_cluster = false;
        }
        match (e.id, e.size) {
            (INFO, _) => read_info(src, &e, &mut st)?,
            (TRACKS, _) => read_tracks(src, &e, &mut st)?,
            (CLUSTER, None) => {
                flat_cluster = true;
                last_cluster = None;
                st.cluster_tc = 0;
                off = e.data;
                continue;
            }
            (CLUSTER, Some(_)) => {
                if st.duration.is_some() && st.tracks.is_some() {
                    break; // Headers known; no need to walk the clusters.
                }
                last_cluster = Some(e);
                let Some(le) = last_cluster.as_ref() else {
                    break;
                };
                off = le.data.saturating_add(le.size.unwrap_or(0));
                continue;
            }
            (CLUSTER_TIMECODE, Some(_)) if flat_cluster => st.cluster_tc = uint(src, &e)?.unwrap_or(0),
            (SIMPLE_BLOCK, Some(_)) if flat_cluster => st.block(src, e.data, None)?,
            (BLOCK_GROUP, Some(s)) if flat_cluster && e.data.saturating_add(s) <= src.len => {
                st.block_group(src, &e)?;
            }
            (_, None) => break,
            _ => {}
        }
        let Some(size) = e.size else { break };
        off = e.data.saturating_add(size);
    }
    if !st.info_seen && st.tracks.is_none() {
        return Err(bad("no Info or Tracks element in the Segment"));
    }
    let scale = st.scale();
    let mut secs = st.duration.filter(|d| *d > 0.0).map(|d| d * scale / 1e9);
    if secs.is_none() {
        if let Some(c) = last_cluster {
            st.max_end = None;
            read_cluster(src, &c, &mut st)?;
        }
        secs = st.max_end.map(|t| t * scale / 1e9);
    }
    let dims = if video {
        st.tracks
            .as_ref()
            .and_then(|ts| ts.iter().filter(|t| t.video).find_map(|t| t.dims))
            .and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?)))
            .filter(|&(w, h)| w > 0 && h > 0)
    } else {
        None
    };
    Ok(Probe {
        duration_seconds: secs.and_then(seconds),
        width: dims.map(|d| d.0),
        height: dims.map(|d| d.1),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::asset::probe::probe;
    use crate::asset::probe::tests::{DIR, Tmp, secs};
    use crate::asset::sniff::{SNIFF_LEN, sniff};

    #[test]
    fn webm_without_duration_uses_last_cluster() {
        let mut data = std::fs::read(format!("{DIR}clip.webm")).unwrap();
        let sn = sniff(&data[..SNIFF_LEN]);
        let full = secs(&probe(Path::new(&format!("{DIR}clip.webm")), &sn).unwrap()).unwrap();
        // Replace the 8-byte float Duration (44 89 88 ..) by a Void element of equal length.
        let at = data.windows(3).position(|w| w == [0x44, 0x89, 0x88]).expect("Duration");
        data[at] = 0xEC;
        data[at + 1] = 0x89;
        data[at + 2] = 0;
        let t = Tmp::new("webm", &data);
        let p = probe(&t.0, &sn).unwrap();
        let s = secs(&p).expect("fallback duration");
        assert!((s - full).abs() <= 0.05, "{s} vs {full}");
        assert_eq!((p.width, p.height), (Some(160), Some(120)));
    }
}
