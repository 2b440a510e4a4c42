//! Still images (PNG, JPEG, GIF, WebP, BMP, TIFF, ICO, HEIF/AVIF, JXL, PSD):
//! width and height from the header through `imagesize`, after a check of the
//! PNG IHDR chunk so that a damaged PNG header is reported, not measured.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::{PResult, Probe, bad};
use crate::asset::bytes::be32;

/// Image extensions `imagesize` reads; for these a failure means a broken file.
const IMAGESIZE_FORMATS: &[&str] =
    &["png", "jpg", "gif", "webp", "bmp", "tif", "ico", "heif", "avif", "jxl", "psd"];

pub(super) fn probe<R: Read + Seek>(mut r: R, ext: &str) -> PResult<Probe> {
    if ext == "png" {
        check_png_header(&mut r)?;
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| bad(format!("cannot read the stored bytes: {e}")))?;
    match imagesize::reader_size(BufReader::with_capacity(16 << 10, r)) {
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
fn check_png_header<R: Read + Seek>(f: &mut R) -> PResult<()> {
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

#[cfg(test)]
mod tests {
    use crate::asset::probe::probe;
    use crate::asset::probe::tests::{DIR, Tmp};
    use crate::asset::sniff::sniff;

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
}
