//! Upload bytes in an S3-compatible bucket: the client, and the byte store
//! built on it.

pub mod client;
pub mod store;

#[cfg(test)]
pub(crate) mod tests;
