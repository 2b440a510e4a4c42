//! Upload tokens (`ut_…`): what a browser gets instead of an API key.
//!
//! A token may create uploads into its project within its limits, and
//! continue or cancel the uploads it created; nothing else. Like keys, each
//! is one small JSON document (only a SHA-256 of the secret): a file under
//! `<data-dir>/tokens/`, so `tusk upload-link` works while a server runs on
//! the directory, or a row of the database shared by every node. How many uploads a token has made is counted in the
//! metadata database instead, in the same flush as the upload it admits:
//! the file is never rewritten by the server, so a revocation cannot be lost
//! to a concurrent count.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetType;
use crate::ports::docs::{Collection, Docs, Revision};
use crate::record::Timestamp;
use crate::record::UploadLimits;
use crate::secrets::{hash_secret, random_hex};

/// The longest a token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub project: String,
    pub project_id: Uuid,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub max_uploads: Option<u64>,
    #[serde(default)]
    pub max_size: Option<u64>,
    #[serde(default)]
    pub allowed_types: Option<Vec<AssetType>>,
    #[serde(default)]
    pub max_duration: Option<u64>,
    /// Added to the metadata of every upload made with the token (over the client's).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    pub fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_size: self.max_size,
            allowed_types: self.allowed_types.clone(),
            max_duration: self.max_duration,
        }
    }

    pub fn expired(&self) -> bool {
        self.expires_at <= Timestamp::now()
    }
}

/// What a new token may do.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    pub ttl: Duration,
    pub max_uploads: Option<u64>,
    pub limits: UploadLimits,
    pub metadata: BTreeMap<String, String>,
}

/// Stores a new token; returns it with its secret (shown once).
pub async fn create(
    docs: &Docs,
    project: &str,
    project_id: Uuid,
    spec: &TokenSpec,
) -> io::Result<(TokenRecord, String)> {
    let secret = format!("ut_{}", random_hex(24)?);
    let now = Timestamp::now();
    let rec = TokenRecord {
        token_id: format!("utk_{}", random_hex(8)?),
        project: project.to_string(),
        project_id,
        secret_sha256: hash_secret(&secret),
        created_at: now,
        expires_at: now.plus(spec.ttl.min(MAX_TOKEN_TTL)),
        max_uploads: spec.max_uploads,
        max_size: spec.limits.max_size,
        allowed_types: spec.limits.allowed_types.clone(),
        max_duration: spec.limits.max_duration,
        metadata: spec.metadata.clone(),
        revoked_at: None,
    };
    docs.put(Collection::Tokens, &rec.token_id, &rec).await?;
    Ok((rec, secret))
}

/// Every token, oldest first.
pub async fn list(docs: &Docs) -> io::Result<Vec<TokenRecord>> {
    let mut out: Vec<TokenRecord> = docs.list(Collection::Tokens).await?;
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.token_id.cmp(&b.token_id)));
    Ok(out)
}

/// Revokes a token of `project_id` (any project if `None`); `None` if there is no such token.
pub async fn revoke(
    docs: &Docs,
    token_id: &str,
    project_id: Option<Uuid>,
) -> io::Result<Option<TokenRecord>> {
    if !token_id.starts_with("utk_") || !token_id[4..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(mut rec) = docs.get::<TokenRecord>(Collection::Tokens, token_id).await? else {
        return Ok(None);
    };
    if project_id.is_some_and(|p| p != rec.project_id) {
        return Ok(None);
    }
    if rec.revoked_at.is_none() {
        rec.revoked_at = Some(Timestamp::now());
        docs.put(Collection::Tokens, token_id, &rec).await?;
    }
    Ok(Some(rec))
}

/// The tokens as the server sees them, reloaded when they change.
pub struct Tokens {
    docs: Docs,
    by_hash: RwLock<HashMap<String, Arc<TokenRecord>>>,
    /// The collection's revision at the last load: a reload reads every
    /// token, so it is done only when one was added or replaced. Held while
    /// looking, so that a burst of unknown tokens costs one look.
    seen: tokio::sync::Mutex<Option<Revision>>,
    /// When an unknown token last made us look: unknown tokens (a made-up
    /// one, sent in a loop) look at most every `LOOK_EVERY`.
    looked: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often unknown tokens may make the server look for new ones.
const LOOK_EVERY: Duration = Duration::from_millis(25);

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Unknown,
    Expired,
    Revoked,
}

impl Tokens {
    pub async fn open(docs: Docs) -> io::Result<Tokens> {
        let t = Tokens {
            docs,
            by_hash: RwLock::default(),
            seen: tokio::sync::Mutex::new(None),
            looked: std::sync::Mutex::new(None),
        };
        t.reload(true).await?;
        Ok(t)
    }

    /// Re-reads the tokens if they changed since the last look; true if they did.
    pub async fn reload_if_changed(&self) -> io::Result<bool> {
        self.reload(false).await
    }

    /// With `force`, re-reads even if the revision did not move (two
    /// changes within one tick of a coarse file-system clock).
    async fn reload(&self, force: bool) -> io::Result<bool> {
        let mut seen = self.seen.lock().await;
        let revision = self.docs.revision(Collection::Tokens).await?;
        if !force && seen.as_ref() == Some(&revision) {
            return Ok(false);
        }
        let all = list(&self.docs).await?;
        let map = all.into_iter().map(|t| (t.secret_sha256.clone(), Arc::new(t))).collect();
        *self.by_hash.write().expect("tokens") = map;
        *seen = Some(revision);
        Ok(true)
    }

    /// A token this server made: known at once, without waiting for a reload.
    pub fn insert(&self, rec: TokenRecord) {
        self.by_hash.write().expect("tokens").insert(rec.secret_sha256.clone(), Arc::new(rec));
    }

    pub async fn authenticate(&self, secret: &str) -> Result<Arc<TokenRecord>, TokenError> {
        let hash = hash_secret(secret);
        let found = self.by_hash.read().expect("tokens").get(&hash).cloned();
        // Made a moment ago by `tusk upload-link` or through another node:
        // look once more (only reads the tokens if they changed).
        let found = match found {
            Some(t) => Some(t),
            None => {
                let due = {
                    let mut looked = self.looked.lock().expect("tokens");
                    let due = looked.is_none_or(|t| t.elapsed() >= LOOK_EVERY);
                    if due {
                        *looked = Some(std::time::Instant::now());
                    }
                    due
                };
                if due {
                    let _ = self.reload_if_changed().await;
                }
                self.by_hash.read().expect("tokens").get(&hash).cloned()
            }
        };
        let t = found.ok_or(TokenError::Unknown)?;
        if t.revoked_at.is_some() {
            return Err(TokenError::Revoked);
        }
        if t.expired() {
            return Err(TokenError::Expired);
        }
        Ok(t)
    }

    /// The project's tokens, newest first (never their secrets).
    pub fn of_project(&self, project_id: Uuid) -> Vec<Arc<TokenRecord>> {
        let mut v: Vec<_> = self
            .by_hash
            .read()
            .expect("tokens")
            .values()
            .filter(|t| t.project_id == project_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.token_id.cmp(&a.token_id)));
        v
    }

    pub fn get(&self, project_id: Uuid, token_id: &str) -> Option<Arc<TokenRecord>> {
        self.by_hash
            .read()
            .expect("tokens")
            .values()
            .find(|t| t.project_id == project_id && t.token_id == token_id)
            .cloned()
    }

    /// Polls for changes so a revoked or new token counts within a second.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        for round in 1u64.. {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(400)) => {}
                _ = stop.cancelled() => return,
            }
            let force = round % 25 == 0 && !self.docs.is_shared();
            if let Err(e) = self.reload(force).await {
                tracing::warn!(error = %e, "reading upload tokens");
            }
        }
    }
}
