//! tusk: a resumable-upload server (tus 1.0.0 and the IETF resumable upload
//! draft) that also tells you what you received.
//!
//! Layout, top to bottom, with no import circles (`tests/layout.rs`): protocols and the
//! API (`tus`, `ietf`, `protocol`, `api`, `web`) and the router (`server`);
//! the upload service (`uploads`) every protocol creates and appends
//! through; shared state and policy (`app`, `auth`, `tokens`, `upload_url`,
//! `limits`, `projects`, `usage`); the storage ports (`ports`: metadata,
//! bytes, locks, events) and their implementations (`backends`), chosen in
//! `server::run`; domain types (`record`, `asset`, `events`, `time`).

// Error values carry headers for the answer they become; they are built on
// the unhappy path only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod app;
pub mod asset;
pub mod auth;
pub mod backends;
pub(crate) mod blocks;
pub mod config;
pub mod digest;
pub mod download;
pub mod events;
pub mod http;
pub mod ietf;
pub mod limits;
pub mod ports;
pub mod projects;
pub mod protocol;
pub mod record;
mod secrets;
pub mod server;
pub mod signing;

pub mod time;
pub mod tokens;
pub mod tus;
pub mod upload_url;
pub mod uploads;
pub mod usage;
pub mod web;
