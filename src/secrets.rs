//! Secrets and the small JSON files that describe them (API keys, upload
//! tokens, project policies): shared by their modules so none of them has
//! to import another.

use std::fs;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
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

/// Writes a small file so a reader sees the old or the new one, never half,
/// and it survives a crash once this returns.
pub(crate) fn write_file_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, body)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(path.parent().expect("the file has a folder"))?.sync_all()
}

/// Every `*.json` file of a folder, decoded (none if the folder is missing).
/// A file that does not decode is logged and skipped, naming `what` it is;
/// one replaced while listing is simply not there.
pub(crate) fn read_json_dir<T: DeserializeOwned>(dir: &Path, what: &str) -> io::Result<Vec<T>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable {what} file")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The 32-byte (or longer) secret in the file at `path`, made on first use;
/// two processes making it at once both end up with the first one written.
pub(crate) fn load_or_create_secret(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match fs::read(path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => return Err(io::Error::other(format!("{} is too short", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| io::Error::other(e.to_string()))?;
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(&secret)?;
            f.sync_all()?;
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create_secret(path),
        Err(e) => Err(e),
    }
}
