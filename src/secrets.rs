//! Secrets and the small JSON files that describe them (API keys, upload
//! tokens, project policies): shared by their modules so none of them has
//! to import another.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a secret: all a data directory keeps of it.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Writes a small JSON file so a reader sees the old or the new one, never
/// half, and it survives a crash once this returns.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, rec: &T) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(rec).map_err(io::Error::other)?)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(path.parent().expect("the file has a folder"))?.sync_all()
}
