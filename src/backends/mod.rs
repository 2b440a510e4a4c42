//! Implementations of the storage ports. They know nothing above the ports.

pub mod files;
pub mod sled_meta;
