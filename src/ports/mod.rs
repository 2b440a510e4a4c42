//! What the upload service needs of storage, apart from any one backend:
//! `meta` (records, tombstones, indexes: the metadata) and `bytes` (where
//! upload bytes live), `locks` (one writer per upload) and `events` (asset
//! changes for subscribers). Each is an enum over its backends
//! (`crate::backends`, which import nothing from here); they are chosen at
//! start, in `server::run`.

pub mod bytes;
pub mod docs;
pub mod events;
pub mod locks;
pub mod meta;

#[cfg(test)]
mod conformance;

use std::io;

use crate::backends::pg_meta::PgError;
use crate::backends::sled_meta::SledError;

/// Storage failed: the upload service's error for any port. Each protocol
/// answers it as a 500 (or 507 where the service says the store is full).
#[derive(Debug)]
pub enum StoreError {
    /// The metadata engine failed.
    Metadata(String),
    /// Reading or writing bytes failed.
    Io(io::Error),
    /// A stored record does not decode.
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Metadata(e) => write!(f, "metadata database: {e}"),
            StoreError::Io(e) => write!(f, "byte storage: {e}"),
            StoreError::Corrupt(e) => write!(f, "corrupt record: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// A store that is away for now (object storage unreachable or timing
    /// out): the client should retry, so 503 rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Io(e) if unavailable(e))
    }
}

/// An I/O error that means "not now" rather than "broken": storage out of
/// reach, refusing tusk's access (a permission an operator withdrew), or
/// busy with the bytes (an object still being assembled). The client's
/// retry works once it passes, so it is a 503, never a 500.
pub fn unavailable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::ResourceBusy
    )
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        if e.is_unavailable() {
            // The database away: a 503 (`is_unavailable`), as for a bucket.
            return StoreError::Io(io::Error::new(io::ErrorKind::NotConnected, e.to_string()));
        }
        match e {
            PgError::Corrupt(e) => StoreError::Corrupt(e),
            e => StoreError::Metadata(e.to_string()),
        }
    }
}

impl From<SledError> for StoreError {
    fn from(e: SledError) -> Self {
        match e {
            SledError::Db(e) => StoreError::Metadata(e.to_string()),
            SledError::Io(e) => StoreError::Io(e),
            SledError::Corrupt(e) => StoreError::Corrupt(e),
        }
    }
}
