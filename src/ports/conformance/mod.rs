//! The backend conformance suite: what every implementation of a storage
//! port must do, run in-process against each backend through the port
//! alone, so a later backend passes the same tests unchanged.

mod bytes;
mod events;
mod locks;
mod meta;
mod postgres;
