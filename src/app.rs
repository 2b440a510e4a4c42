//! The shared state of a running server and the top-level router.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::signing::Signer;
use crate::auth::{self, AuthError, Caller, Credential, Grant, Keys};
use crate::config::Config;
use crate::http::{Response, full};
use crate::lock::Locker;
use crate::ports::bytes::ByteStore;
use crate::projects::Projects;
use crate::server::clients::{self, ClientLimit, ClientSlot};
use crate::server::cors;
use crate::store::Store;
use crate::tokens::{TokenError, Tokens};
use crate::tus;
use crate::upload_url;
use crate::usage::Usage;

/// The TCP peer of a request's connection (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

pub struct App {
    pub cfg: Config,
    /// Upload records, tombstones, indexes (the metadata).
    pub store: Arc<Store>,
    /// Upload bytes.
    pub bytes: Arc<ByteStore>,
    pub locks: Locker,
    pub keys: Arc<Keys>,
    pub signer: Signer,
    /// Asset changes for `/v1/events`.
    pub events: Arc<crate::events::Events>,
    /// Media probes running at once.
    pub probe_slots: Semaphore,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Behind a proxy: requests in flight per forwarded client address.
    pub clients: ClientLimit,
    pub tokens: Arc<Tokens>,
    /// Per-project policy (limits and quotas).
    pub projects: Arc<Projects>,
    /// What each project stores.
    pub usage: Arc<Usage>,
}

/// What `App::new` is built from, besides the configuration.
pub struct Parts {
    pub store: Arc<Store>,
    pub bytes: Arc<ByteStore>,
    pub keys: Arc<Keys>,
    pub tokens: Arc<Tokens>,
    pub projects: Arc<Projects>,
    pub usage: Arc<Usage>,
    pub signer: Signer,
}

impl App {
    pub fn new(cfg: Config, parts: Parts, shutdown: CancellationToken) -> Arc<App> {
        let locks = Locker::new(cfg.lock_timeout, shutdown.clone());
        let clients = ClientLimit::new(cfg.max_connections_per_ip);
        let Parts { store, bytes, keys, tokens, projects, usage, signer } = parts;
        Arc::new(App {
            clients,
            cfg,
            store,
            bytes,
            locks,
            keys,
            tokens,
            projects,
            usage,
            signer,
            events: Arc::new(crate::events::Events::new()),
            probe_slots: Semaphore::new(2),
            shutdown,
        })
    }

    /// Routes a request and adds the headers every response carries.
    pub async fn handle(self: Arc<App>, req: Request<Incoming>) -> Response {
        let open = self.keys.is_open();
        if open && let Some(resp) = self.misdirected(&req) {
            return resp;
        }
        let _client_slot = match self.forwarded_client_slot(&req) {
            Ok(slot) => slot,
            Err(resp) => return resp,
        };
        let origin = cors::origin(req.headers(), &self.cfg, open);
        let preflight = cors::is_preflight(req.method(), req.headers());
        let preflight_headers = preflight.then(|| req.headers().clone());

        let mut resp = if matches!(origin, cors::Origin::Denied) {
            plain(StatusCode::FORBIDDEN, "this origin is not allowed by the server's CORS settings")
        } else if preflight {
            // Preflights carry no credentials: answered before authentication.
            tus::options(&self)
        } else {
            self.route(req).await
        };
        cors::decorate(&mut resp, &origin, preflight_headers.as_ref());
        resp
    }

    /// Open mode answers only names of this machine: a page whose DNS name
    /// was rebound to 127.0.0.1 must not reach the assets (421).
    fn misdirected(&self, req: &Request<Incoming>) -> Option<Response> {
        if self.cfg.allow_anonymous {
            return None; // serving anyone, on any name, was asked for
        }
        let host = crate::http::header_str(req.headers(), http::header::HOST)
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        (!crate::http::is_loopback_host(host)).then(|| {
            plain(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "this server runs without API keys (open mode) and answers only for this machine \
                     (localhost, 127.0.0.1, [::1]), not for Host {host:?}; create a key with \
                     `tusk keys create` to serve other names"
                ),
            )
        })
    }

    /// Behind a proxy every connection is the proxy's, so the per-client cap
    /// counts this client's requests in flight instead (429 past it).
    fn forwarded_client_slot(&self, req: &Request<Incoming>) -> Result<Option<ClientSlot>, Response> {
        if !self.cfg.behind_proxy {
            return Ok(None); // counted per connection at accept
        }
        let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
        let Some(ip) = clients::forwarded_client(req.headers()).or(peer) else { return Ok(None) };
        self.clients.try_acquire(ip).map(Some).ok_or_else(|| {
            let mut resp = plain(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many requests from {ip} at once (at most {}, --max-connections-per-ip); \
                     retry when some have finished",
                    self.clients.per_client()
                ),
            );
            resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            resp
        })
    }

    async fn route(self: &Arc<App>, mut req: Request<Incoming>) -> Response {
        let path = req.uri().path();
        if path == "/v1" || path.starts_with("/v1/") {
            return crate::api::handle(self.clone(), req).await;
        }
        let base = self.cfg.base_path.as_str();
        if path.starts_with(base) || path == base.trim_end_matches('/') {
            if req.method() == Method::OPTIONS {
                return tus::options(self);
            }
            match self.authenticate_upload(&req) {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                }
                Err(e) => {
                    let code = if e.status() == StatusCode::FORBIDDEN {
                        "ERR_FORBIDDEN"
                    } else {
                        "ERR_UNAUTHORIZED"
                    };
                    let mut resp = tus::error::TusError::new(e.status(), code, e.message())
                        .into_response(req.method() == Method::HEAD);
                    resp.headers_mut()
                        .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
                    resp.headers_mut()
                        .insert("tus-resumable", http::HeaderValue::from_static(tus::headers::TUS_VERSION));
                    return resp;
                }
            }
            if req.headers().contains_key(crate::ietf::INTEROP_HEADER) {
                return crate::ietf::handle(self.clone(), req).await;
            }
            return tus::handle(self.clone(), req).await;
        }
        if req.method() == Method::OPTIONS {
            return tus::options(self);
        }
        if let Some(resp) = crate::web::serve(req.method(), path, &self.cfg.base_path) {
            return resp;
        }
        plain(StatusCode::NOT_FOUND, "not found")
    }
}

impl App {
    /// The caller of a tus or draft request: an API key, an upload token, or
    /// (with neither) a signed upload URL's capability.
    fn authenticate_upload(&self, req: &Request<Incoming>) -> Result<Caller, AuthError> {
        match auth::credential(req.headers()) {
            Credential::Token(secret) => self.token_caller(secret),
            Credential::Key(secret) => self.keys.authenticate(Some(secret)),
            Credential::None => match upload_url::from_query(req.uri().query()) {
                Some(value) => self.url_caller(value),
                None => self.keys.authenticate(None),
            },
        }
    }

    /// The caller of a `/v1` request: API keys only.
    pub fn authenticate_api(&self, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
        match auth::credential(headers) {
            Credential::Token(secret) => {
                self.token_caller(secret)?;
                Err(AuthError::TokenNotHere)
            }
            Credential::Key(secret) => self.keys.authenticate(Some(secret)),
            Credential::None => self.keys.authenticate(None),
        }
    }

    fn token_caller(&self, secret: &str) -> Result<Caller, AuthError> {
        let t = self.tokens.authenticate(secret).map_err(|e| match e {
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
        rec: &crate::store::UploadRecord,
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

pub fn plain(status: StatusCode, message: &str) -> Response {
    let mut resp = http::Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
