//! Content sniffing: decides what an upload really is from its first bytes.
//!
//! Client claims (file name, `Content-Type`) are never consulted. The `infer`
//! crate does most of the work; a few formats where `infer` is imprecise
//! (ISO-BMFF brands, Matroska/WebM, Ogg codecs, MPEG audio frame sync,
//! ID3-tagged files) are looked at first, and plain UTF-8 text is recognised
//! last.

use serde::{Deserialize, Serialize};

use super::bytes::{be32, le16};

/// Broad class of an uploaded asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    Audio,
    Video,
    Image,
    Document,
    Archive,
    Other,
}

impl AssetType {
    /// Every variant, in declaration order.
    pub const ALL: [AssetType; 6] = [
        AssetType::Audio,
        AssetType::Video,
        AssetType::Image,
        AssetType::Document,
        AssetType::Archive,
        AssetType::Other,
    ];

    /// Lower-case name, as used in JSON and query strings.
    pub fn as_str(&self) -> &'static str {
        match self {
            AssetType::Audio => "audio",
            AssetType::Video => "video",
            AssetType::Image => "image",
            AssetType::Document => "document",
            AssetType::Archive => "archive",
            AssetType::Other => "other",
        }
    }

    /// Inverse of [`AssetType::as_str`] (exact, lower-case match).
    pub fn parse(s: &str) -> Option<Self> {
        AssetType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type a client-declared media type (tus `filetype`, a
    /// `Content-Type`) names, if it names one: the formats tusk recognises,
    /// then the `image/`, `audio/` and `video/` families. Generic types
    /// (`application/octet-stream`, empty) name none: only the bytes can tell.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        let mt = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mt.is_empty()
            || mt == "application/octet-stream"
            || mt.starts_with("application/partial-upload")
            || mt == "application/offset+octet-stream"
        {
            return None;
        }
        if let Some(&(t, _, _)) = recognised().iter().find(|(_, _, ct)| ct.eq_ignore_ascii_case(&mt)) {
            return Some(t);
        }
        match mt.split('/').next() {
            Some("image") => Some(AssetType::Image),
            Some("audio") => Some(AssetType::Audio),
            Some("video") => Some(AssetType::Video),
            _ => None,
        }
    }
}

impl std::fmt::Display for AssetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of sniffing an upload's leading bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sniffed {
    pub kind: AssetType,
    /// Canonical extension without the dot (`"mp3"`), `None` when unknown.
    pub extension: Option<String>,
    /// Registered content type (`"audio/mpeg"`); `application/octet-stream` when unknown.
    pub content_type: String,
}

impl Sniffed {
    fn new(kind: AssetType, extension: &str, content_type: &str) -> Self {
        Sniffed { kind, extension: Some(extension.to_owned()), content_type: content_type.to_owned() }
    }

    fn unknown() -> Self {
        Sniffed { kind: AssetType::Other, extension: None, content_type: OCTET_STREAM.to_owned() }
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

/// How many leading bytes callers are expected to pass to [`sniff`].
pub const SNIFF_LEN: usize = 8 * 1024;

use AssetType::{Archive, Audio, Document, Image, Other, Video};

/// `(infer's extension, our type, our extension, our content type)`.
///
/// Every extension `infer` 0.22 can report is listed; `infer`'s non-standard
/// content types are replaced by registered / common ones.
const INFER_TABLE: &[(&str, AssetType, &str, &str)] = &[
    // audio
    ("mp3", Audio, "mp3", "audio/mpeg"),
    ("m4a", Audio, "m4a", "audio/mp4"),
    ("opus", Audio, "opus", "audio/ogg"),
    ("ogg", Audio, "ogg", "audio/ogg"),
    ("flac", Audio, "flac", "audio/flac"),
    ("wav", Audio, "wav", "audio/wav"),
    ("aac", Audio, "aac", "audio/aac"),
    ("aiff", Audio, "aiff", "audio/aiff"),
    ("amr", Audio, "amr", "audio/amr"),
    ("midi", Audio, "mid", "audio/midi"),
    ("dsf", Audio, "dsf", "audio/x-dsf"),
    ("ape", Audio, "ape", "audio/x-ape"),
    // video
    ("mp4", Video, "mp4", "video/mp4"),
    ("m4v", Video, "m4v", "video/mp4"),
    ("mov", Video, "mov", "video/quicktime"),
    ("webm", Video, "webm", "video/webm"),
    ("mkv", Video, "mkv", "video/x-matroska"),
    ("avi", Video, "avi", "video/x-msvideo"),
    ("wmv", Video, "wmv", "video/x-ms-wmv"),
    ("mpg", Video, "mpg", "video/mpeg"),
    ("flv", Video, "flv", "video/x-flv"),
    // images
    ("jpg", Image, "jpg", "image/jpeg"),
    ("png", Image, "png", "image/png"),
    ("gif", Image, "gif", "image/gif"),
    ("webp", Image, "webp", "image/webp"),
    ("bmp", Image, "bmp", "image/bmp"),
    ("tif", Image, "tif", "image/tiff"),
    ("ico", Image, "ico", "image/vnd.microsoft.icon"),
    ("heif", Image, "heif", "image/heif"),
    ("avif", Image, "avif", "image/avif"),
    ("jxl", Image, "jxl", "image/jxl"),
    ("jp2", Image, "jp2", "image/jp2"),
    ("jxr", Image, "jxr", "image/jxr"),
    ("psd", Image, "psd", "image/vnd.adobe.photoshop"),
    ("cr2", Image, "cr2", "image/x-canon-cr2"),
    ("ora", Image, "ora", "image/openraster"),
    ("djvu", Image, "djvu", "image/vnd.djvu"),
    ("dwg", Other, "dwg", "image/vnd.dwg"),
    // documents
    ("pdf", Document, "pdf", "application/pdf"),
    ("epub", Document, "epub", "application/epub+zip"),
    ("mobi", Document, "mobi", "application/x-mobipocket-ebook"),
    ("rtf", Document, "rtf", "application/rtf"),
    ("ps", Document, "ps", "application/postscript"),
    ("doc", Document, "doc", "application/msword"),
    ("docx", Document, "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("xls", Document, "xls", "application/vnd.ms-excel"),
    ("xlsx", Document, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("ppt", Document, "ppt", "application/vnd.ms-powerpoint"),
    ("pptx", Document, "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("odt", Document, "odt", "application/vnd.oasis.opendocument.text"),
    ("ods", Document, "ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odp", Document, "odp", "application/vnd.oasis.opendocument.presentation"),
    // archives
    ("zip", Archive, "zip", "application/zip"),
    ("tar", Archive, "tar", "application/x-tar"),
    ("gz", Archive, "gz", "application/gzip"),
    ("bz2", Archive, "bz2", "application/x-bzip2"),
    ("bz3", Archive, "bz3", "application/x-bzip3"),
    ("xz", Archive, "xz", "application/x-xz"),
    ("7z", Archive, "7z", "application/x-7z-compressed"),
    ("rar", Archive, "rar", "application/vnd.rar"),
    ("zst", Archive, "zst", "application/zstd"),
    ("lz4", Archive, "lz4", "application/x-lz4"),
    ("lz", Archive, "lz", "application/x-lzip"),
    ("Z", Archive, "Z", "application/x-compress"),
    ("cab", Archive, "cab", "application/vnd.ms-cab-compressed"),
    ("ar", Archive, "a", "application/x-archive"),
    ("cpio", Archive, "cpio", "application/x-cpio"),
    ("deb", Archive, "deb", "application/vnd.debian.binary-package"),
    ("rpm", Archive, "rpm", "application/x-rpm"),
    ("crx", Archive, "crx", "application/x-chrome-extension"),
    // other binary formats infer knows
    ("msi", Other, "msi", "application/x-ole-storage"),
    ("par2", Other, "par2", "application/x-par2"),
    ("swf", Other, "swf", "application/x-shockwave-flash"),
    ("eot", Other, "eot", "application/vnd.ms-fontobject"),
    ("sqlite", Other, "sqlite", "application/vnd.sqlite3"),
    ("nes", Other, "nes", "application/x-nintendo-nes-rom"),
    ("dcm", Other, "dcm", "application/dicom"),
    ("woff", Other, "woff", "font/woff"),
    ("woff2", Other, "woff2", "font/woff2"),
    ("ttf", Other, "ttf", "font/ttf"),
    ("otf", Other, "otf", "font/otf"),
    ("wasm", Other, "wasm", "application/wasm"),
    ("elf", Other, "elf", "application/x-executable"),
    ("exe", Other, "exe", "application/vnd.microsoft.portable-executable"),
    ("dll", Other, "dll", "application/vnd.microsoft.portable-executable"),
    ("class", Other, "class", "application/java-vm"),
    ("bc", Other, "bc", "application/x-llvm"),
    ("mach", Other, "macho", "application/x-mach-binary"),
    ("dex", Other, "dex", "application/vnd.android.dex"),
    ("dey", Other, "dey", "application/vnd.android.dey"),
    ("der", Other, "der", "application/x-x509-ca-cert"),
    ("pem", Other, "pem", "application/x-pem-file"),
    ("obj", Other, "obj", "application/x-executable"),
    ("qcow2", Other, "qcow2", "application/x-qemu-disk"),
    ("html", Other, "html", "text/html"),
    ("xml", Other, "xml", "text/xml"),
    ("sh", Other, "sh", "text/x-shellscript"),
];

/// Results produced by this module's own checks rather than through `infer`.
const EXTRA_TABLE: &[(AssetType, &str, &str)] = &[
    (Audio, "weba", "audio/webm"),
    (Audio, "mka", "audio/x-matroska"),
    (Video, "ogv", "video/ogg"),
    (Video, "3gp", "video/3gpp"),
    (Other, "txt", "text/plain"),
];

/// Table of recognised `(type, extension, content type)`, without duplicates.
pub fn recognised() -> Vec<(AssetType, &'static str, &'static str)> {
    let mut out: Vec<(AssetType, &'static str, &'static str)> = Vec::new();
    let all = INFER_TABLE.iter().map(|&(_, t, e, c)| (t, e, c)).chain(EXTRA_TABLE.iter().copied());
    for row in all {
        if !out.contains(&row) {
            out.push(row);
        }
    }
    out.sort_by_key(|&(t, e, _)| (t as u8, e));
    out
}

fn by_ext(ext: &str) -> Option<Sniffed> {
    if let Some(&(_, t, e, c)) = INFER_TABLE.iter().find(|row| row.2 == ext) {
        return Some(Sniffed::new(t, e, c));
    }
    EXTRA_TABLE.iter().find(|row| row.1 == ext).map(|&(t, e, c)| Sniffed::new(t, e, c))
}

fn known(ext: &str) -> Sniffed {
    by_ext(ext).unwrap_or_else(Sniffed::unknown)
}

/// Identify an upload from its first bytes.
///
/// `prefix` = the first up-to-8 KiB of the upload (or the whole upload if it
/// is smaller).
pub fn sniff(prefix: &[u8]) -> Sniffed {
    if prefix.is_empty() {
        return Sniffed::unknown();
    }
    if let Some(s) = sniff_isobmff(prefix)
        .or_else(|| sniff_ebml(prefix))
        .or_else(|| sniff_ogg(prefix))
        .or_else(|| sniff_zip_container(prefix))
        .or_else(|| sniff_id3(prefix))
        .or_else(|| sniff_mpeg_audio(prefix))
    {
        return s;
    }
    if let Some(t) = infer::get(prefix) {
        let ext = t.extension();
        if let Some(&(_, kind, e, c)) = INFER_TABLE.iter().find(|row| row.0 == ext) {
            return Sniffed::new(kind, e, c);
        }
        // A matcher added by a future `infer`: keep its answer, coarsely typed.
        let kind = match t.matcher_type() {
            infer::MatcherType::Audio => Audio,
            infer::MatcherType::Video => Video,
            infer::MatcherType::Image => Image,
            infer::MatcherType::Doc | infer::MatcherType::Book => Document,
            infer::MatcherType::Archive => Archive,
            _ => Other,
        };
        return Sniffed { kind, extension: Some(ext.to_owned()), content_type: t.mime_type().to_owned() };
    }
    if is_plain_text(prefix) {
        return known("txt");
    }
    Sniffed::unknown()
}

/// Valid UTF-8 without NUL bytes. A multi-byte sequence cut off at the very
/// end is accepted when the prefix is a full sniffing window.
fn is_plain_text(prefix: &[u8]) -> bool {
    if prefix.contains(&0) {
        return false;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && prefix.len() >= SNIFF_LEN && prefix.len() - e.valid_up_to() < 4,
    }
}

/// MP4 / QuickTime / 3GP family: decided by the `ftyp` brand and, for generic
/// brands, by the track handlers when the `moov` box is inside the prefix.
fn sniff_isobmff(p: &[u8]) -> Option<Sniffed> {
    if p.get(4..8)? != b"ftyp" {
        return None;
    }
    let major: [u8; 4] = p.get(8..12)?.try_into().ok()?;
    match &major {
        b"M4A " | b"M4B " | b"M4P " => return Some(known("m4a")),
        b"qt  " => return Some(known("mov")),
        b"M4V " | b"M4VH" | b"M4VP" => return Some(known("m4v")),
        // Still images in HEIF/AVIF containers, Canon CR3 etc.: leave to infer.
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" | b"avif" | b"avis"
        | b"crx " => return None,
        _ => {}
    }
    let (has_video, has_audio) = mp4_handlers_in_prefix(p);
    if has_audio && !has_video {
        return Some(known("m4a"));
    }
    if major.starts_with(b"3gp") || major.starts_with(b"3g2") {
        return Some(known("3gp"));
    }
    // Let infer judge brands it knows (it may know more than "mp4"); a
    // generic ftyp it does not know is still an MP4.
    match infer::get(p) {
        Some(t) if t.matcher_type() == infer::MatcherType::Video => by_ext(t.extension()),
        Some(_) => None,
        None => Some(known("mp4")),
    }
}

/// Scans the top-level boxes in the prefix for `moov` and reports whether it
/// declares video / sound tracks (`hdlr` handler types).
fn mp4_handlers_in_prefix(p: &[u8]) -> (bool, bool) {
    let mut pos = 0usize;
    let (mut video, mut audio) = (false, false);
    while let Some(size) = be32(p, pos) {
        let kind = match p.get(pos + 4..pos + 8) {
            Some(k) => k,
            None => break,
        };
        let size = size as usize;
        if kind == b"moov" {
            let end = if size < 8 { p.len() } else { p.len().min(pos + size) };
            let moov = &p[pos..end];
            let mut i = 0;
            while let Some(off) = find(&moov[i..], b"hdlr") {
                let at = i + off;
                match moov.get(at + 12..at + 16) {
                    Some(b"vide") => video = true,
                    Some(b"soun") => audio = true,
                    _ => {}
                }
                i = at + 4;
            }
            break;
        }
        if size < 8 {
            break;
        }
        pos = match pos.checked_add(size) {
            Some(n) => n,
            None => break,
        };
    }
    (video, audio)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads an EBML variable-length integer; returns (value, length).
/// `keep_marker` is used for element IDs.
fn ebml_vint(p: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *p.get(at)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let mut v = if keep_marker { first as u64 } else { (first as u64) & (0xFF >> len) };
    for i in 1..len {
        v = (v << 8) | *p.get(at + i)? as u64;
    }
    Some((v, len))
}

/// Matroska / WebM: the DocType decides WebM vs Matroska; when the Tracks
/// element is inside the prefix and every track is audio, it is audio.
fn sniff_ebml(p: &[u8]) -> Option<Sniffed> {
    if !p.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return None;
    }
    let (hsize, hlen) = ebml_vint(p, 4, false)?;
    let header_end = (4 + hlen).checked_add(usize::try_from(hsize).ok()?)?;
    let header = p.get(4 + hlen..header_end.min(p.len()))?;
    let webm = find(header, b"webm").is_some();
    if !webm && find(header, b"matroska").is_none() {
        return None;
    }
    let only_audio = ebml_tracks_all_audio(p, header_end);
    Some(match (webm, only_audio) {
        (true, true) => known("weba"),
        (true, false) => known("webm"),
        (false, true) => known("mka"),
        (false, false) => known("mkv"),
    })
}

/// Walks Segment → Tracks → TrackEntry → TrackType inside the prefix.
/// Returns true only when at least one track was seen and all are audio.
fn ebml_tracks_all_audio(p: &[u8], mut pos: usize) -> bool {
    const SEGMENT: u64 = 0x1853_8067;
    const TRACKS: u64 = 0x1654_AE6B;
    const TRACK_ENTRY: u64 = 0xAE;
    const TRACK_TYPE: u64 = 0x83;
    const CLUSTER: u64 = 0x1F43_B675;
    // Descend into Segment, then scan its children for Tracks.
    let mut in_segment = false;
    loop {
        let Some((id, il)) = ebml_vint(p, pos, true) else {
            return false;
        };
        let Some((size, sl)) = ebml_vint(p, pos + il, false) else {
            return false;
        };
        let data = pos + il + sl;
        let end = usize::try_from(size).ok().and_then(|s| data.checked_add(s));
        match id {
            SEGMENT if !in_segment => {
                in_segment = true;
                pos = data;
            }
            TRACKS if in_segment => {
                let end = end.unwrap_or(usize::MAX).min(p.len());
                let (mut audio, mut other) = (0, 0);
                let mut q = data;
                while q < end {
                    let Some((cid, cil)) = ebml_vint(p, q, true) else {
                        break;
                    };
                    let Some((csize, csl)) = ebml_vint(p, q + cil, false) else {
                        break;
                    };
                    let cdata = q + cil + csl;
                    let Some(cend) = usize::try_from(csize).ok().and_then(|s| cdata.checked_add(s)) else {
                        break;
                    };
                    if cid == TRACK_ENTRY {
                        let mut r = cdata;
                        while r < cend.min(p.len()) {
                            let Some((tid, til)) = ebml_vint(p, r, true) else {
                                break;
                            };
                            let Some((tsize, tsl)) = ebml_vint(p, r + til, false) else {
                                break;
                            };
                            let tdata = r + til + tsl;
                            if tid == TRACK_TYPE && tsize == 1 {
                                match p.get(tdata) {
                                    Some(2) => audio += 1,
                                    Some(_) => other += 1,
                                    None => {}
                                }
                            }
                            let Some(next) = usize::try_from(tsize).ok().and_then(|s| tdata.checked_add(s))
                            else {
                                break;
                            };
                            r = next;
                        }
                    }
                    q = cend;
                }
                return audio > 0 && other == 0;
            }
            CLUSTER => return false,
            _ => match end {
                Some(e) if e > pos => pos = e,
                _ => return false,
            },
        }
    }
}

/// ZIP-based documents (OOXML, OpenDocument, EPUB), from the names of the
/// local file headers inside the prefix. `infer` only looks at fixed entry
/// positions and misses many real-world files.
fn sniff_zip_container(p: &[u8]) -> Option<Sniffed> {
    const SIG: &[u8] = b"PK\x03\x04";
    if !p.starts_with(SIG) {
        return None;
    }
    let mut from = 0usize;
    for _ in 0..256 {
        let at = from + find(p.get(from..)?, SIG)?;
        from = at + 4;
        let name_len = le16(p, at + 26)? as usize;
        let extra_len = le16(p, at + 28)? as usize;
        let Some(name) = p.get(at + 30..at + 30 + name_len) else { break };
        if name.starts_with(b"word/") {
            return Some(known("docx"));
        }
        if name.starts_with(b"xl/") {
            return Some(known("xlsx"));
        }
        if name.starts_with(b"ppt/") {
            return Some(known("pptx"));
        }
        if name == b"mimetype" {
            let data = p.get(at + 30 + name_len + extra_len..).unwrap_or(&[]);
            for (mime, ext) in [
                (&b"application/epub+zip"[..], "epub"),
                (b"application/vnd.oasis.opendocument.text", "odt"),
                (b"application/vnd.oasis.opendocument.spreadsheet", "ods"),
                (b"application/vnd.oasis.opendocument.presentation", "odp"),
            ] {
                if data.starts_with(mime) && data.get(mime.len()).is_none_or(|c| *c != b'-') {
                    return Some(known(ext));
                }
            }
        }
    }
    None
}

/// Ogg: the codec of the first (BOS) packet decides.
fn sniff_ogg(p: &[u8]) -> Option<Sniffed> {
    if !p.starts_with(b"OggS") {
        return None;
    }
    let nseg = *p.get(26)? as usize;
    let body = p.get(27 + nseg..).unwrap_or(&[]);
    Some(if body.starts_with(b"OpusHead") {
        known("opus")
    } else if body.starts_with(b"\x80theora") {
        known("ogv")
    } else {
        known("ogg")
    })
}

/// ID3v2-tagged files: look behind the tag when it fits in the prefix.
fn sniff_id3(p: &[u8]) -> Option<Sniffed> {
    if !p.starts_with(b"ID3") || p.len() < 10 {
        return None;
    }
    let mut size = 0usize;
    for &b in &p[6..10] {
        size = (size << 7) | (b & 0x7F) as usize;
    }
    let footer = if p[5] & 0x10 != 0 { 10 } else { 0 };
    let after = p.get(10 + size + footer..).unwrap_or(&[]);
    if after.starts_with(b"fLaC") {
        return Some(known("flac"));
    }
    if after.len() >= 2 && after[0] == 0xFF && (after[1] & 0xF6) == 0xF0 {
        return Some(known("aac"));
    }
    Some(known("mp3"))
}

/// Frame length in bytes of an MPEG-1/2/2.5 Layer III header, if valid.
fn mp3_frame_len(h: u32) -> Option<(usize, u32)> {
    const BR_V1: [u32; 16] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0];
    const BR_V2: [u32; 16] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0];
    if h >> 21 != 0x7FF {
        return None;
    }
    let version = (h >> 19) & 3; // 0 = 2.5, 1 = reserved, 2 = v2, 3 = v1
    let layer = (h >> 17) & 3; // 1 = layer III
    let br_idx = ((h >> 12) & 0xF) as usize;
    let sr_idx = ((h >> 10) & 3) as usize;
    if version == 1 || layer != 1 || br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        return None;
    }
    let base = [44100u32, 48000, 32000][sr_idx];
    let sr = match version {
        3 => base,
        2 => base / 2,
        _ => base / 4,
    };
    let pad = (h >> 9) & 1;
    let len =
        if version == 3 { 144_000 * BR_V1[br_idx] / sr + pad } else { 72_000 * BR_V2[br_idx] / sr + pad };
    Some((len as usize, h & 0xFFFE_0C00))
}

/// An MP3 without an ID3 tag: a valid Layer III header at offset 0, followed
/// by a second matching header (or the prefix ends inside the first frame).
fn sniff_mpeg_audio(p: &[u8]) -> Option<Sniffed> {
    let (len, key) = mp3_frame_len(be32(p, 0)?)?;
    match be32(p, len) {
        Some(h2) => match mp3_frame_len(h2) {
            Some((_, key2)) if key2 == key => Some(known("mp3")),
            _ => None,
        },
        None if p.len() < len + 4 => Some(known("mp3")),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/");

    #[derive(serde::Deserialize)]
    struct Entry {
        file: String,
        #[serde(rename = "type")]
        kind: String,
        extension: Option<String>,
        content_type: String,
    }

    fn manifest() -> Vec<Entry> {
        let text = std::fs::read_to_string(format!("{DIR}MANIFEST.json")).expect("MANIFEST.json");
        serde_json::from_str(&text).expect("valid MANIFEST.json")
    }

    fn prefix_of(file: &str) -> Vec<u8> {
        let mut data = std::fs::read(format!("{DIR}{file}")).expect("fixture");
        data.truncate(SNIFF_LEN);
        data
    }

    #[test]
    fn fixtures_sniff_as_manifest_says() {
        let entries = manifest();
        assert!(entries.len() >= 16);
        for e in entries {
            let s = sniff(&prefix_of(&e.file));
            assert_eq!(s.kind.as_str(), e.kind, "{}", e.file);
            assert_eq!(s.extension, e.extension, "{}", e.file);
            assert_eq!(s.content_type, e.content_type, "{}", e.file);
            assert!(
                recognised()
                    .iter()
                    .any(|r| r.0 == s.kind && Some(r.1) == s.extension.as_deref() && r.2 == s.content_type),
                "{} not in recognised()",
                e.file
            );
        }
    }

    #[test]
    fn empty_and_binary_are_other() {
        let s = sniff(b"");
        assert_eq!(s, Sniffed::unknown());
        let s = sniff(&[0u8, 1, 2, 3, 0xFE, 0x80, 7, 0]);
        assert_eq!(s.kind, AssetType::Other);
        assert_eq!(s.extension, None);
        assert_eq!(s.content_type, "application/octet-stream");
    }

    #[test]
    fn text_detection() {
        let s = sniff("hello, wörld\nline two\n".as_bytes());
        assert_eq!(s, Sniffed::new(Other, "txt", "text/plain"));
        // NUL → binary.
        assert_eq!(sniff(b"abc\0def").content_type, OCTET_STREAM);
        // Invalid UTF-8 in the middle → binary.
        assert_eq!(sniff(b"abc\xFF\xFEdef").content_type, OCTET_STREAM);
        // A truncated multi-byte sequence at the end of a full 8 KiB window is fine …
        let mut full = "é".repeat(SNIFF_LEN / 2).into_bytes();
        full.truncate(SNIFF_LEN - 2);
        full.extend_from_slice(b"a\xC3");
        assert_eq!(full.len(), SNIFF_LEN);
        assert_eq!(sniff(&full).content_type, "text/plain");
        // … but not at the end of a short (complete) upload.
        assert_eq!(sniff(b"abc\xC3").content_type, OCTET_STREAM);
    }

    #[test]
    fn mp3_without_id3_by_frame_sync() {
        let data = std::fs::read(format!("{DIR}tone.mp3")).unwrap();
        // tone.mp3 has an ID3v2 tag; strip it to get raw frames.
        let mut size = 0usize;
        for &b in &data[6..10] {
            size = (size << 7) | (b & 0x7F) as usize;
        }
        let raw = &data[10 + size..];
        assert_eq!(raw[0], 0xFF);
        let s = sniff(&raw[..raw.len().min(SNIFF_LEN)]);
        assert_eq!(s, Sniffed::new(Audio, "mp3", "audio/mpeg"));
        // The same frames with the CRC-protection bit set (FF FA), which infer misses.
        let mut crc = raw[..raw.len().min(SNIFF_LEN)].to_vec();
        let (len, _) = mp3_frame_len(be32(&crc, 0).unwrap()).unwrap();
        crc[1] &= 0xFE;
        crc[len + 1] &= 0xFE;
        assert_eq!(sniff(&crc).extension.as_deref(), Some("mp3"));
    }

    #[test]
    fn m4a_vs_mp4_by_brand_and_handlers() {
        // Generic brand + audio-only moov in the prefix → m4a.
        let mut b = Vec::new();
        b.extend_from_slice(&[0, 0, 0, 16]);
        b.extend_from_slice(b"ftypisom\0\0\0\0");
        let moov_start = b.len();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(b"moov");
        b.extend_from_slice(&[0, 0, 0, 32]);
        b.extend_from_slice(b"hdlr\0\0\0\0\0\0\0\0soun");
        b.extend_from_slice(&[0; 12]);
        let len = (b.len() - moov_start) as u32;
        b[moov_start..moov_start + 4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(sniff(&b), Sniffed::new(Audio, "m4a", "audio/mp4"));
        // Same with a video handler → mp4.
        let at = b.len() - 16;
        b[at..at + 4].copy_from_slice(b"vide");
        assert_eq!(sniff(&b), Sniffed::new(Video, "mp4", "video/mp4"));
    }

    #[test]
    fn zip_based_documents() {
        fn entry(name: &str, data: &[u8]) -> Vec<u8> {
            let mut v = b"PK\x03\x04".to_vec();
            v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ver, flags, method, time, date, crc
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(name.as_bytes());
            v.extend_from_slice(data);
            v
        }
        let docx = [entry("[Content_Types].xml", b"<Types/>"), entry("word/document.xml", b"<w/>")].concat();
        assert_eq!(sniff(&docx).extension.as_deref(), Some("docx"));
        assert_eq!(sniff(&docx).kind, Document);
        let xlsx = [entry("_rels/.rels", b"<r/>"), entry("xl/workbook.xml", b"<w/>")].concat();
        assert_eq!(sniff(&xlsx).extension.as_deref(), Some("xlsx"));
        let odt = [entry("mimetype", b"application/vnd.oasis.opendocument.text"), entry("content.xml", b"")]
            .concat();
        assert_eq!(sniff(&odt).extension.as_deref(), Some("odt"));
        let epub = entry("mimetype", b"application/epub+zip");
        assert_eq!(sniff(&epub), Sniffed::new(Document, "epub", "application/epub+zip"));
        let plain = [entry("a.txt", b"hello"), entry("b/c.txt", b"x")].concat();
        assert_eq!(sniff(&plain), Sniffed::new(Archive, "zip", "application/zip"));
    }

    #[test]
    fn asset_type_roundtrip() {
        for t in AssetType::ALL {
            assert_eq!(AssetType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(AssetType::parse("Video"), None);
        assert_eq!(AssetType::parse("nope"), None);
    }

    #[test]
    fn recognised_is_unique_and_uses_registered_names() {
        let r = recognised();
        for (i, a) in r.iter().enumerate() {
            assert!(!r[i + 1..].contains(a));
        }
        for ct in ["audio/wav", "audio/flac", "audio/mp4", "audio/ogg", "video/webm", "image/jpeg"] {
            assert!(r.iter().any(|x| x.2 == ct), "{ct}");
        }
        assert!(!r.iter().any(|x| x.2 == "audio/x-wav" || x.2 == "audio/x-flac"));
    }

    #[test]
    fn never_panics_on_prefixes() {
        for e in manifest() {
            let p = prefix_of(&e.file);
            for n in (0..p.len()).step_by(7).chain([1, 2, 3, 4, 8, 11, 12, 27, 28, 36]) {
                let _ = sniff(&p[..n.min(p.len())]);
            }
        }
    }
}
