//! The shared state of a running server and the top-level router.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::signing::Signer;
use crate::auth::Keys;
use crate::config::Config;
use crate::http::{Response, full};
use crate::lock::Locker;
use crate::server::cors;
use crate::store::Store;
use crate::tus;

pub struct App {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub locks: Locker,
    pub keys: Arc<Keys>,
    pub signer: Signer,
    /// Asset changes for `/v1/events`.
    pub events: Arc<crate::events::Events>,
    /// Media probes running at once.
    pub probe_slots: Semaphore,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
}

impl App {
    pub fn new(
        cfg: Config,
        store: Arc<Store>,
        keys: Arc<Keys>,
        signer: Signer,
        shutdown: CancellationToken,
    ) -> Arc<App> {
        let locks = Locker::new(cfg.lock_timeout, shutdown.clone());
        Arc::new(App {
            cfg,
            store,
            locks,
            keys,
            signer,
            events: Arc::new(crate::events::Events::new()),
            probe_slots: Semaphore::new(2),
            shutdown,
        })
    }

    /// Routes a request and adds the headers every response carries.
    pub async fn handle(self: Arc<App>, req: Request<Incoming>) -> Response {
        let origin = cors::origin(req.headers(), &self.cfg.cors);
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
            match self.keys.authenticate(req.headers()) {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                }
                Err(e) => {
                    let mut resp =
                        tus::error::TusError::new(StatusCode::UNAUTHORIZED, "ERR_UNAUTHORIZED", e.message())
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

pub fn plain(status: StatusCode, message: &str) -> Response {
    let mut resp = http::Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
