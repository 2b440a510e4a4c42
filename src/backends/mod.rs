//! Implementations of the storage ports. They know nothing above the ports.

pub mod files;
pub mod local_events;
pub mod local_locks;
pub mod pg_docs;
pub mod pg_events;
pub mod pg_locks;
pub mod pg_meta;
pub mod s3;
pub mod sled_meta;
