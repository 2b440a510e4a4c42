//! Media probing: duration of audio/video, dimensions of images/video.
//!
//! Pure Rust, no decoding: only container headers are parsed (MP3 frame
//! headers / Xing / VBRI, RIFF WAVE, FLAC STREAMINFO, Ogg pages, ISO-BMFF
//! boxes, Matroska/WebM EBML elements); images go through `imagesize`.
//! Files are streamed through a small buffer with seeks, never loaded whole.
//! Every read is bounds-checked; a panic in a dependency is caught and turned
//! into an error.
//!
//! One file per container: `mp3`, `wav`, `flac`, `ogg`, `mp4`, `mkv` and
//! `image`; the bounds-checked byte readers they share are in `asset::bytes`.

mod flac;
mod image;
mod mkv;
mod mp3;
mod mp4;
mod ogg;
#[cfg(test)]
mod tests;
mod wav;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use super::bytes::Src;
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

pub(super) type PResult<T> = Result<T, ProbeError>;

pub(super) fn bad(message: impl Into<String>) -> ProbeError {
    ProbeError { code: "media_unreadable", message: message.into() }
}

/// Whether probing reads anything of these bytes (documents, archives and
/// other files are not read at all).
pub fn reads(sniffed: &Sniffed) -> bool {
    matches!(sniffed.kind, AssetType::Audio | AssetType::Video | AssetType::Image)
}

/// Probe a stored file. Blocking; call it on a blocking thread once the
/// whole file is stored. `sniffed` comes from [`super::sniff::sniff`].
///
/// Documents, archives and other files are not read at all.
pub fn probe(path: &Path, sniffed: &Sniffed) -> Result<Probe, ProbeError> {
    if !matches!(sniffed.kind, AssetType::Audio | AssetType::Video | AssetType::Image) {
        return Ok(Probe::default());
    }
    let file = File::open(path).map_err(|e| bad(format!("cannot open the stored file: {e}")))?;
    let len = file.metadata().map_err(|e| bad(format!("cannot stat the stored file: {e}")))?.len();
    probe_reader(file, len, sniffed)
}

/// [`probe`] over any seekable reader of `len` bytes (a ranged reader of
/// an object in a bucket).
pub fn probe_reader<R: Read + Seek>(file: R, len: u64, sniffed: &Sniffed) -> Result<Probe, ProbeError> {
    if !matches!(sniffed.kind, AssetType::Audio | AssetType::Video | AssetType::Image) {
        return Ok(Probe::default());
    }
    let ext = sniffed.extension.as_deref().unwrap_or("");
    let kind = sniffed.kind;
    let label = format!("{} ({})", sniffed.content_type, kind.as_str());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| probe_inner(file, len, kind, ext))) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(mut e)) => {
            e.message = format!("{label}: {}", e.message);
            Err(e)
        }
        Err(_) => Err(bad(format!("{label}: the file's structure is invalid"))),
    }
}

fn probe_inner<R: Read + Seek>(file: R, len: u64, kind: AssetType, ext: &str) -> PResult<Probe> {
    if kind == AssetType::Image {
        return image::probe(file, ext);
    }
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

/// Formats seconds with 3 decimals; rejects nonsense.
fn seconds(s: f64) -> Option<String> {
    (s.is_finite() && (0.0..1.0e10).contains(&s)).then(|| format!("{s:.3}"))
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
