//! Projects and API keys.
//!
//! Keys live as one small JSON file each under `<data-dir>/keys/`, not in
//! sled: sled allows one process per database, and `tusk keys ...` must work
//! while a server runs on the same directory. With `--database-url` they are
//! rows of the shared database instead (`ports::docs`). The server notices
//! changes within a second. Only a SHA-256 of each secret is stored.
//!
//! Open mode (no key, one `default` project) ends for good once a key has
//! existed in a data directory: `keys/.keys-in-use` remembers it, and a
//! running server never reopens. Deleting the key files then locks everyone
//! out (401) instead of silently serving anyone.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::docs::{Collection, Docs, Revision};
use crate::record::{Owner, Timestamp};
use crate::secrets::{hash_secret, random_hex};
use crate::tokens::TokenRecord;

/// Project ids are derived from project names, so creating a key needs no
/// shared registry and a name always maps to the same id.
const PROJECT_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a4e_9d7b_4c1a_8e3f_6b2d_0a9c_7e11);
pub const DEFAULT_PROJECT: &str = "default";

pub fn project_id(name: &str) -> Uuid {
    Uuid::new_v5(&PROJECT_NAMESPACE, name.as_bytes())
}

/// The open-mode project's id, derived once: a UUIDv5 is a SHA-1, and open
/// mode asks for it on every request (1.2 % of a HEAD's CPU in a profile).
static DEFAULT_PROJECT_ID: std::sync::LazyLock<Uuid> =
    std::sync::LazyLock::new(|| project_id(DEFAULT_PROJECT));

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub project: String,
    pub project_id: Uuid,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Who is calling: every asset belongs to exactly one project.
#[derive(Clone, Debug)]
pub struct Caller {
    pub project_id: Uuid,
    pub project: String,
    /// What the credential lets the caller do within the project.
    pub grant: Grant,
}

/// What a credential allows.
#[derive(Clone, Debug)]
pub enum Grant {
    /// An API key (or open mode): everything in the project.
    Key,
    /// A signed upload URL: HEAD, PATCH and DELETE of this one upload.
    Upload(Uuid),
    /// An upload token: create uploads within its limits, and continue or
    /// cancel the uploads it created.
    Token(Arc<TokenRecord>),
}

impl Caller {
    /// May this caller act on an upload owned by `owner` with this `id`?
    pub fn may_use(&self, id: Uuid, owner: &Owner) -> bool {
        if owner.project_id != self.project_id {
            return false;
        }
        match &self.grant {
            Grant::Key => true,
            Grant::Upload(u) => *u == id,
            Grant::Token(t) => owner.token_id.as_deref() == Some(t.token_id.as_str()),
        }
    }

    pub fn is_key(&self) -> bool {
        matches!(self.grant, Grant::Key)
    }
}

/// The credential a request carries, read once from its headers.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    /// `Authorization: Bearer sk_…` or `x-api-key: sk_…` (or any other bearer value).
    Key(&'a str),
    /// `Authorization: Bearer ut_…`.
    Token(&'a str),
}

pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    let bearer = crate::http::header_str(headers, http::header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    // Argil's convention, for clients that cannot set Authorization.
    let secret = bearer.or_else(|| crate::http::header_str(headers, "x-api-key").map(str::trim));
    match secret {
        None | Some("") => Credential::None,
        Some(t) if t.starts_with("ut_") => Credential::Token(t),
        Some(k) => Credential::Key(k),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
    Revoked,
    TokenUnknown,
    TokenExpired,
    TokenRevoked,
    /// An upload token on an endpoint it cannot use.
    TokenNotHere,
    UrlInvalid,
    UrlExpired,
}

impl AuthError {
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => {
                "this server requires an API key: send Authorization: Bearer sk_... (or x-api-key: sk_...)"
            }
            AuthError::Unknown => "the API key is not known to this server",
            AuthError::Revoked => "the API key was revoked",
            AuthError::TokenUnknown => "the upload token is not known to this server",
            AuthError::TokenExpired => "the upload token has expired; ask for a new upload link or token",
            AuthError::TokenRevoked => "the upload token was revoked",
            AuthError::TokenNotHere => {
                "an upload token can only create and continue its own uploads (tus or the resumable upload \
                 draft); reading the API needs an API key"
            }
            AuthError::UrlInvalid => {
                "this upload URL's signature is not valid (changed or cut); ask the app for a new upload URL"
            }
            AuthError::UrlExpired => "this upload URL has expired; ask the app for a new upload URL",
        }
    }

    /// 403 for a valid credential used where it is not allowed, else 401.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::TokenNotHere => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// The key set as the server sees it, reloaded when the documents change.
pub struct Keys {
    docs: Docs,
    state: RwLock<KeyState>,
    /// Open mode (no key exists) is allowed for this server.
    allow_open: bool,
    /// A key has existed here: open mode is over, whatever the folder holds now.
    closed: std::sync::atomic::AtomicBool,
    /// The key documents' revision at the last read (on a shared store,
    /// read again only when it moves).
    seen: Mutex<Option<Revision>>,
}

#[derive(Default)]
struct KeyState {
    by_hash: HashMap<String, KeyRecord>,
}

impl Keys {
    pub async fn open(docs: Docs, allow_open: bool) -> io::Result<Keys> {
        let closed = docs.keys_in_use().await?;
        let keys = Keys {
            docs,
            state: RwLock::default(),
            allow_open,
            closed: closed.into(),
            seen: Mutex::new(None),
        };
        keys.reload().await?;
        Ok(keys)
    }

    /// Requests are served without a key, into the project `default`.
    pub fn is_open(&self) -> bool {
        self.allow_open && !self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Some key is not revoked.
    pub fn has_active(&self) -> bool {
        self.state.read().expect("keys").by_hash.values().any(|k| k.revoked_at.is_none())
    }

    /// No key has ever existed in this data directory (or database).
    pub fn never_used(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the keys are kept, for messages.
    pub fn place(&self) -> String {
        self.docs.place(Collection::Keys)
    }

    /// Re-reads the keys (a handful of small documents); true if anything changed.
    pub async fn reload(&self) -> io::Result<bool> {
        let mut revision = None;
        if self.docs.is_shared() {
            // Every node polls: ask the database whether to read at all.
            let now = self.docs.revision(Collection::Keys).await?;
            if self.seen.lock().expect("keys").as_ref() == Some(&now) {
                return Ok(false);
            }
            revision = Some(now);
        }
        let by_hash: HashMap<String, KeyRecord> =
            list_keys(&self.docs).await?.into_iter().map(|k| (k.secret_sha256.clone(), k)).collect();
        // Only once read: a failed read is tried again at the next poll.
        if revision.is_some() {
            *self.seen.lock().expect("keys") = revision;
        }
        let fingerprint = |m: &HashMap<String, KeyRecord>| {
            let mut v: Vec<(String, bool)> =
                m.iter().map(|(h, k)| (h.clone(), k.revoked_at.is_some())).collect();
            v.sort();
            v
        };
        if !by_hash.is_empty() && self.never_used() {
            self.docs.mark_keys_in_use().await?;
            self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut state = self.state.write().expect("keys");
        let changed = fingerprint(&state.by_hash) != fingerprint(&by_hash);
        if changed && by_hash.is_empty() && !self.never_used() {
            tracing::error!(
                "every API key file is gone from {}: all requests are refused (401) until a key is created \
                 with `tusk keys create`; open mode stays off (see README, Security, to reopen on purpose)",
                self.place()
            );
        }
        state.by_hash = by_hash;
        Ok(changed)
    }

    /// Polls for key changes so a new or revoked key counts within a second.
    pub async fn watch(self: std::sync::Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(400)) => {}
                _ = stop.cancelled() => return,
            }
            match self.reload().await {
                Ok(true) => tracing::info!("API keys reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading API keys"),
            }
        }
    }

    /// An API key (or none, in open mode): the whole project.
    pub fn authenticate(&self, secret: Option<&str>) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller {
                project_id: *DEFAULT_PROJECT_ID,
                project: DEFAULT_PROJECT.into(),
                grant: Grant::Key,
            });
        }
        let state = self.state.read().expect("keys");
        let secret = secret.ok_or(AuthError::Missing)?;
        let key = state.by_hash.get(&hash_secret(secret)).ok_or(AuthError::Unknown)?;
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        Ok(Caller { project_id: key.project_id, project: key.project.clone(), grant: Grant::Key })
    }

    /// The name of a project some key belongs to.
    pub fn project_name(&self, id: Uuid) -> Option<String> {
        if id == *DEFAULT_PROJECT_ID {
            return Some(DEFAULT_PROJECT.into());
        }
        self.state
            .read()
            .expect("keys")
            .by_hash
            .values()
            .find(|k| k.project_id == id)
            .map(|k| k.project.clone())
    }
}

pub fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Creates a key and returns it with its secret (shown once, never stored).
pub async fn create_key(docs: &Docs, project: &str) -> io::Result<(KeyRecord, String)> {
    if !valid_project_name(project) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "project names are 1-64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    docs.mark_keys_in_use().await?;
    let key_id = format!("key_{}", random_hex(8)?);
    let secret = format!("sk_{}", random_hex(24)?);
    let rec = KeyRecord {
        key_id: key_id.clone(),
        project: project.to_string(),
        project_id: project_id(project),
        secret_sha256: hash_secret(&secret),
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    docs.put(Collection::Keys, &key_id, &rec).await?;
    Ok((rec, secret))
}

/// Every key, oldest first.
pub async fn list_keys(docs: &Docs) -> io::Result<Vec<KeyRecord>> {
    let mut out: Vec<KeyRecord> = docs.list(Collection::Keys).await?;
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.key_id.cmp(&b.key_id)));
    Ok(out)
}

/// Revokes by key id, or by the secret itself.
pub async fn revoke_key(docs: &Docs, id_or_secret: &str) -> io::Result<KeyRecord> {
    let hash = hash_secret(id_or_secret);
    let mut key = list_keys(docs)
        .await?
        .into_iter()
        .find(|k| k.key_id == id_or_secret || k.secret_sha256 == hash)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no key {id_or_secret:?}")))?;
    if key.revoked_at.is_none() {
        key.revoked_at = Some(Timestamp::now());
        docs.put(Collection::Keys, &key.key_id.clone(), &key).await?;
    }
    Ok(key)
}
