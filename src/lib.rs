//! tusk: a resumable-upload server (tus 1.0.0 and the IETF resumable upload
//! draft) that also tells you what you received.
//!
//! Layout: `tus` (protocol), `store` (sled metadata + byte files; `store::append`
//! is where bodies become bytes), `lock` (one writer per upload), `expiry`
//! (sweeper), `server` + `app` (plumbing and routing), `uploads` (the upload
//! service every protocol creates and appends through). Who may do what:
//! `auth` (API keys), `tokens` (upload tokens), `upload_url` (signed upload
//! URLs), `limits` (size, type, duration and quota checks), `projects`
//! (per-project policy) and `usage` (what each project stores).

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
pub mod lock;
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
