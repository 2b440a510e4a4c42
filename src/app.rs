//! The shared state of a running server: configuration, the storage ports
//! and who may do what. Routing is `server::router`'s; handlers get `&App`.

use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, AuthError, Caller, Credential, Grant, Keys};
use crate::config::Config;
use crate::ports::bytes::ByteStore;
use crate::ports::docs::Docs;
use crate::ports::events::EventBus;
use crate::ports::locks::Locks;
use crate::ports::meta::MetaStore;
use crate::projects::Projects;
use crate::signing::Signer;
use crate::tokens::{TokenError, Tokens};
use crate::upload_url;
use crate::usage::Usage;

pub struct App {
    pub cfg: Config,
    /// Upload records, tombstones, indexes (the metadata).
    pub meta: MetaStore,
    /// Upload bytes.
    pub bytes: Arc<ByteStore>,
    /// One writer per upload.
    pub locks: Locks,
    pub keys: Arc<Keys>,
    /// Where keys, tokens and project policies are stored.
    pub docs: Docs,
    pub signer: Signer,
    /// Asset changes for `/v1/events`.
    pub events: EventBus,
    /// Media probes running at once.
    pub probe_slots: Semaphore,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    pub tokens: Arc<Tokens>,
    /// Per-project policy (limits and quotas).
    pub projects: Arc<Projects>,
    /// What each project stores.
    pub usage: Arc<Usage>,
}

/// What `App::new` is built from, besides the configuration.
pub struct Parts {
    pub meta: MetaStore,
    pub bytes: Arc<ByteStore>,
    pub locks: Locks,
    pub events: EventBus,
    pub keys: Arc<Keys>,
    pub docs: Docs,
    pub tokens: Arc<Tokens>,
    pub projects: Arc<Projects>,
    pub usage: Arc<Usage>,
    pub signer: Signer,
}

impl App {
    pub fn new(cfg: Config, parts: Parts, shutdown: CancellationToken) -> Arc<App> {
        let Parts { meta, bytes, locks, events, keys, docs, tokens, projects, usage, signer } = parts;
        Arc::new(App {
            cfg,
            meta,
            bytes,
            locks,
            keys,
            docs,
            tokens,
            projects,
            usage,
            signer,
            events,
            probe_slots: Semaphore::new(2),
            shutdown,
        })
    }
}

impl App {
    /// The caller of a tus or draft request: an API key, an upload token, or
    /// (with neither) a signed upload URL's capability.
    pub(crate) async fn authenticate_upload(&self, req: &Request<Incoming>) -> Result<Caller, AuthError> {
        match auth::credential(req.headers()) {
            Credential::Token(secret) => self.token_caller(secret).await,
            Credential::Key(secret) => self.keys.authenticate(Some(secret)),
            Credential::None => match upload_url::from_query(req.uri().query()) {
                Some(value) => self.url_caller(value),
                None => self.keys.authenticate(None),
            },
        }
    }

    /// The caller of a `/v1` request: API keys only.
    pub async fn authenticate_api(&self, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
        match auth::credential(headers) {
            Credential::Token(secret) => {
                self.token_caller(secret).await?;
                Err(AuthError::TokenNotHere)
            }
            Credential::Key(secret) => self.keys.authenticate(Some(secret)),
            Credential::None => self.keys.authenticate(None),
        }
    }

    async fn token_caller(&self, secret: &str) -> Result<Caller, AuthError> {
        let t = self.tokens.authenticate(secret).await.map_err(|e| match e {
            TokenError::Unknown => AuthError::TokenUnknown,
            TokenError::Expired => AuthError::TokenExpired,
            TokenError::Revoked => AuthError::TokenRevoked,
        })?;
        Ok(Caller { project_id: t.project_id, project: t.project.clone(), grant: Grant::Token(t) })
    }

    fn url_caller(&self, value: &str) -> Result<Caller, AuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cap = upload_url::Capability::decode(&self.signer, value, now).map_err(|e| match e {
            upload_url::CapabilityError::Invalid => AuthError::UrlInvalid,
            upload_url::CapabilityError::Expired => AuthError::UrlExpired,
        })?;
        let project = self.project_name(cap.project_id);
        Ok(Caller { project_id: cap.project_id, project, grant: Grant::Upload(cap.id) })
    }

    /// A project's name for messages (its id if no key or policy names it).
    pub fn project_name(&self, id: uuid::Uuid) -> String {
        self.projects.name(id).or_else(|| self.keys.project_name(id)).unwrap_or_else(|| id.to_string())
    }

    /// The signed upload URL of a pending upload, valid for `ttl` from now.
    pub fn upload_url(
        &self,
        origin: &str,
        rec: &crate::record::UploadRecord,
        ttl: std::time::Duration,
    ) -> (String, u64) {
        let expires = std::time::SystemTime::now()
            .checked_add(ttl)
            .unwrap_or(std::time::SystemTime::now())
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cap = upload_url::Capability {
            id: rec.id,
            project_id: rec.project_id,
            expires,
            max_size: rec.limits.max_size,
            allowed_types: rec.limits.allowed_types.clone(),
        };
        let url = format!(
            "{origin}{}{}?{}={}",
            self.cfg.base_path,
            rec.id,
            upload_url::PARAM,
            cap.encode(&self.signer)
        );
        (url, expires)
    }
}
