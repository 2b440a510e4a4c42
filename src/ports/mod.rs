//! What the upload service needs of storage, apart from any one backend:
//! `bytes` (where upload bytes live). Backends (`crate::backends`) are
//! chosen at start, in `server::run`.

pub mod bytes;

#[cfg(test)]
mod conformance;
