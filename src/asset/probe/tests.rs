//! Probe tests across containers, against the fixtures in
//! `tests/fixtures/media/` and their `MANIFEST.json` (ffprobe's answers), and
//! the helpers the per-container tests share.

use super::super::sniff::{SNIFF_LEN, sniff};
use super::*;

pub(super) const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/media/");

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

pub(super) fn sniff_file(path: &Path) -> Sniffed {
    let data = std::fs::read(path).unwrap();
    sniff(&data[..data.len().min(SNIFF_LEN)])
}

/// A file in the temp dir, removed on drop.
pub(super) struct Tmp(pub(super) std::path::PathBuf);
impl Tmp {
    pub(super) fn new(tag: &str, data: &[u8]) -> Tmp {
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

pub(super) fn secs(p: &Probe) -> Option<f64> {
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
                let _ = inner(&t.0, s.kind, ext);
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
            let _ = inner(&t.0, full_sn.kind, ext);
        }
    }
}

/// `probe_inner` on a file, without `probe`'s panic guard.
fn inner(path: &std::path::Path, kind: AssetType, ext: &str) -> PResult<Probe> {
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    probe_inner(file, len, kind, ext)
}
