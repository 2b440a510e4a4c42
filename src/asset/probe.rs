//! Media probing: duration of audio/video, dimensions of images/video.
//!
//! Pure Rust, no decoding: only container headers are parsed (MP3 frame
//! headers / Xing / VBRI, RIFF WAVE, FLAC STREAMINFO, Ogg pages, ISO-BMFF
//! boxes, Matroska/WebM EBML elements); images go through `imagesize`.
//! Files are streamed through a small buffer with seeks, never loaded whole.
//! Every read is bounds-checked; a panic in a dependency is caught and turned
//! into an error.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::sniff::{AssetType, Sniffed};

/// What probing learned about a stored upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// Seconds as a decimal string with 3 decimals, e.g. `"324.412"`.
    pub duration_seconds: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Why a file of a known media type could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeError {
    /// Always `"media_unreadable"`.
    pub code: &'static str,
    /// Human-readable: says what is wrong.
    pub message: String,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ProbeError {}

type PResult<T> = Result<T, ProbeError>;

fn bad(message: impl Into<String>) -> ProbeError {
    ProbeError { code: "media_unreadable", message: message.into() }
}

/// Probe a stored file. Blocking; call it on a blocking thread once the
/// whole file is stored. `sniffed` comes from [`super::sniff::sniff`].
///
/// Documents, archives and other files are not read at all.
pub fn probe(path: &Path, sniffed: &Sniffed) -> Result<Probe, ProbeError> {
    if !matches!(sniffed.kind, AssetType::Audio | AssetType::Video | AssetType::Image) {
        return Ok(Probe::default());
    }
    let ext = sniffed.extension.as_deref().unwrap_or("");
    let kind = sniffed.kind;
    let label = format!("{} ({})", sniffed.content_type, kind.as_str());
    match std::panic::catch_unwind(|| probe_inner(path, kind, ext)) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(mut e)) => {
            e.message = format!("{label}: {}", e.message);
            Err(e)
        }
        Err(_) => Err(bad(format!("{label}: the file's structure is invalid"))),
    }
}

fn probe_inner(path: &Path, kind: AssetType, ext: &str) -> PResult<Probe> {
    if kind == AssetType::Image {
        return probe_image(path, ext);
    }
    let file = File::open(path).map_err(|e| bad(format!("cannot open the stored file: {e}")))?;
    let len = file.metadata().map_err(|e| bad(format!("cannot stat the stored file: {e}")))?.len();
    let mut src = Src::new(BufReader::with_capacity(32 * 1024, file), len);
    let video = kind == AssetType::Video;
    match ext {
        "mp3" => mp3::probe(&mut src),
        "wav" => wav::probe(&mut src),
        "flac" => flac::probe(&mut src),
        "ogg" | "opus" | "ogv" => ogg::probe(&mut src, video),
        "mp4" | "m4a" | "m4v" | "mov" | "3gp" => mp4::probe(&mut src, video),
        "webm" | "mkv" | "weba" | "mka" => mkv::probe(&mut src, video),
        // Known media type without a parser here (avi, wmv, aiff, ...).
        _ => Ok(Probe::default()),
    }
}

/// Image extensions `imagesize` reads; for these a failure means a broken file.
const IMAGESIZE_FORMATS: &[&str] =
    &["png", "jpg", "gif", "webp", "bmp", "tif", "ico", "heif", "avif", "jxl", "psd"];

fn probe_image(path: &Path, ext: &str) -> PResult<Probe> {
    if ext == "png" {
        check_png_header(path)?;
    }
    match imagesize::size(path) {
        Ok(s) if s.width > 0 && s.height > 0 => Ok(Probe {
            duration_seconds: None,
            width: u32::try_from(s.width).ok(),
            height: u32::try_from(s.height).ok(),
        }),
        Ok(_) => Err(bad("the image header declares a zero width or height")),
        Err(e) if IMAGESIZE_FORMATS.contains(&ext) => Err(match e {
            imagesize::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bad("the image header is truncated")
            }
            imagesize::ImageError::IoError(e) => bad(format!("cannot read the image: {e}")),
            _ => bad("the image header is corrupt"),
        }),
        // A format imagesize does not know (cr2, jp2, ...): nothing to report.
        Err(_) => Ok(Probe::default()),
    }
}

/// PNG signature + a complete IHDR chunk with a valid CRC (imagesize only
/// reads the two size fields).
fn check_png_header(path: &Path) -> PResult<()> {
    let mut f = File::open(path).map_err(|e| bad(format!("cannot open the stored file: {e}")))?;
    let mut h = [0u8; 33];
    f.read_exact(&mut h).map_err(|_| bad("the PNG header is truncated"))?;
    if &h[..8] != b"\x89PNG\r\n\x1a\n" || be32(&h, 8) != Some(13) || &h[12..16] != b"IHDR" {
        return Err(bad("the PNG header is corrupt (bad signature or IHDR chunk)"));
    }
    let crc = !h[12..29].iter().fold(!0u32, |mut c, &b| {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
        c
    });
    if be32(&h, 29) != Some(crc) {
        return Err(bad("the PNG header is corrupt (IHDR checksum mismatch)"));
    }
    Ok(())
}

/// Formats seconds with 3 decimals; rejects nonsense.
fn seconds(s: f64) -> Option<String> {
    (s.is_finite() && (0.0..1.0e10).contains(&s)).then(|| format!("{s:.3}"))
}

/// A seekable byte source with a known length; reads are bounds-checked.
struct Src<R> {
    r: R,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Src<R> {
    fn new(r: R, len: u64) -> Self {
        Src { r, len, pos: 0 }
    }

    /// Fills `buf` from `off`; `false` when the file is too short.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> PResult<bool> {
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
    fn vec_at(&mut self, off: u64, n: u64, cap: u64) -> PResult<Option<Vec<u8>>> {
        if n > cap {
            return Ok(None);
        }
        let mut v = vec![0u8; n as usize];
        Ok(self.read_at(off, &mut v)?.then_some(v))
    }

    fn array_at<const N: usize>(&mut self, off: u64) -> PResult<Option<[u8; N]>> {
        let mut b = [0u8; N];
        Ok(self.read_at(off, &mut b)?.then_some(b))
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Size of an ID3v2 tag starting at `off` (0 when there is none).
fn id3v2_len<R: Read + Seek>(src: &mut Src<R>, off: u64) -> PResult<u64> {
    let Some(h) = src.array_at::<10>(off)? else {
        return Ok(0);
    };
    if &h[..3] != b"ID3" || h[6..10].iter().any(|b| b & 0x80 != 0) {
        return Ok(0);
    }
    let size = h[6..10].iter().fold(0u64, |a, &b| (a << 7) | b as u64);
    let footer = if h[5] & 0x10 != 0 { 10 } else { 0 };
    Ok(10 + size + footer)
}

mod mp3 {
    use super::*;

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
}

mod wav {
    use super::*;

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
}

mod flac {
    use super::*;

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
}

mod ogg {
    use super::*;

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
}

mod mp4 {
    use super::*;

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
}

mod mkv {
    use super::*;

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
}

#[cfg(test)]
mod tests {
    use super::super::sniff::{SNIFF_LEN, sniff};
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/");

    #[derive(serde::Deserialize)]
    struct Entry {
        file: String,
        #[serde(rename = "type")]
        kind: String,
        duration_seconds: Option<f64>,
        width: Option<u32>,
        height: Option<u32>,
        size_bytes: u64,
    }

    fn manifest() -> Vec<Entry> {
        let text = std::fs::read_to_string(format!("{DIR}MANIFEST.json")).expect("MANIFEST.json");
        serde_json::from_str(&text).expect("valid MANIFEST.json")
    }

    fn sniff_file(path: &Path) -> Sniffed {
        let data = std::fs::read(path).unwrap();
        sniff(&data[..data.len().min(SNIFF_LEN)])
    }

    /// A file in the temp dir, removed on drop.
    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new(tag: &str, data: &[u8]) -> Tmp {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("tusk-probe-{}-{n}-{tag}", std::process::id()));
            std::fs::write(&p, data).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn secs(p: &Probe) -> Option<f64> {
        p.duration_seconds.as_deref().map(|s| s.parse().unwrap())
    }

    #[test]
    fn fixtures_match_manifest() {
        let entries = manifest();
        assert!(entries.len() >= 16);
        for e in entries {
            let path = Path::new(DIR).join(&e.file);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), e.size_bytes, "{}", e.file);
            let sn = sniff_file(&path);
            assert_eq!(sn.kind.as_str(), e.kind, "{}", e.file);
            let got = probe(&path, &sn);
            if e.file.starts_with("corrupt") {
                let err = got.expect_err("corrupt file must not probe");
                assert_eq!(err.code, "media_unreadable");
                assert!(err.message.contains("moov"), "{}", err.message);
                println!("{:<16} -> Err({})", e.file, err.message);
                continue;
            }
            let p = got.unwrap_or_else(|err| panic!("{}: {err}", e.file));
            println!(
                "{:<16} -> duration {:?} (ffprobe {:?}) size {:?}x{:?} (ffprobe {:?}x{:?})",
                e.file, p.duration_seconds, e.duration_seconds, p.width, p.height, e.width, e.height
            );
            match sn.kind {
                AssetType::Audio | AssetType::Video => {
                    let want = e.duration_seconds.expect("manifest duration");
                    let have = secs(&p).unwrap_or_else(|| panic!("{}: no duration", e.file));
                    assert!((have - want).abs() <= 0.05, "{}: {have} vs ffprobe {want}", e.file);
                    let s = p.duration_seconds.as_deref().unwrap();
                    assert_eq!(s.split('.').nth(1).map(str::len), Some(3), "{s}");
                }
                _ => assert_eq!(p.duration_seconds, None, "{}", e.file),
            }
            if sn.kind == AssetType::Audio {
                assert_eq!((p.width, p.height), (None, None), "{}", e.file);
            } else {
                assert_eq!((p.width, p.height), (e.width, e.height), "{}", e.file);
            }
            if matches!(sn.kind, AssetType::Document | AssetType::Archive | AssetType::Other) {
                assert_eq!(p, Probe::default());
            }
        }
    }

    #[test]
    fn non_media_is_not_read() {
        let sn = sniff(b"%PDF-1.4 hello");
        assert_eq!(sn.kind, AssetType::Document);
        // The path does not even exist: documents are not opened.
        assert_eq!(probe(Path::new("/nonexistent/x.pdf"), &sn), Ok(Probe::default()));
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let sn = sniff_file(&Path::new(DIR).join("tone.wav"));
        let err = probe(Path::new("/nonexistent/tone.wav"), &sn).unwrap_err();
        assert_eq!(err.code, "media_unreadable");
    }

    #[test]
    fn broken_png_header_is_unreadable() {
        let mut data = std::fs::read(format!("{DIR}pic.png")).unwrap();
        let sn = sniff(&data);
        data.truncate(20); // cut inside IHDR
        let t = Tmp::new("png", &data);
        let err = probe(&t.0, &sn).unwrap_err();
        assert_eq!(err.code, "media_unreadable");
        data = std::fs::read(format!("{DIR}pic.png")).unwrap();
        data[12..16].copy_from_slice(b"XXXX"); // IHDR chunk type destroyed
        let t = Tmp::new("png2", &data);
        assert_eq!(probe(&t.0, &sn).unwrap_err().code, "media_unreadable");
    }

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

    #[test]
    fn opus_subtracts_pre_skip() {
        let path = format!("{DIR}tone.opus");
        let p = probe(Path::new(&path), &sniff_file(Path::new(&path))).unwrap();
        // 2.345 s of 48 kHz input; ffprobe reports 2.3515 (granule incl. 312 pre-skip samples).
        assert_eq!(p.duration_seconds.as_deref(), Some("2.345"));
    }

    /// Truncated prefixes and flipped bytes of every fixture: `probe_inner`
    /// (no catch_unwind) must return, never panic.
    #[test]
    fn truncated_and_damaged_inputs_never_panic() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for e in manifest() {
            let data = std::fs::read(format!("{DIR}{}", e.file)).unwrap();
            let full_sn = sniff(&data[..data.len().min(SNIFF_LEN)]);
            let len = data.len();
            let mut cuts: Vec<usize> = vec![0, 1, 2, 3, 4, 7, 8, 11, 12, 16, 27, 36, 44, 64, 100];
            cuts.extend((1..48).map(|i| len * i / 48));
            cuts.extend([len - 1, len.saturating_sub(128), len.saturating_sub(4000)]);
            for cut in cuts.into_iter().filter(|&c| c < len) {
                let part = &data[..cut];
                let t = Tmp::new("cut", part);
                let sn = sniff(&part[..part.len().min(SNIFF_LEN)]);
                for s in [&sn, &full_sn] {
                    let ext = s.extension.as_deref().unwrap_or("");
                    let _ = probe_inner(&t.0, s.kind, ext);
                    let r = probe(&t.0, s);
                    if let Err(err) = r {
                        assert_eq!(err.code, "media_unreadable");
                        assert!(!err.message.is_empty());
                    }
                }
            }
            for round in 0..60 {
                let mut bad = data.clone();
                let flips = 1 + (next() % 8) as usize;
                // Mostly in the headers, sometimes anywhere.
                let span = if round % 3 == 0 { len } else { len.min(2048) };
                for _ in 0..flips {
                    let i = (next() % span as u64) as usize;
                    bad[i] = next() as u8;
                }
                if round % 5 == 0 {
                    let i = (next() % len as u64) as usize;
                    bad[len - 1 - i / 2..].fill(0xFF);
                }
                let t = Tmp::new("flip", &bad);
                let ext = full_sn.extension.as_deref().unwrap_or("");
                let _ = probe_inner(&t.0, full_sn.kind, ext);
            }
        }
    }
}
