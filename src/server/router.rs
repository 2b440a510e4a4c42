//! The top-level router: which protocol answers a request, the headers every
//! response carries (CORS), and the checks made before any protocol sees it
//! (open mode's Host check, the per-client cap behind a proxy, credentials).

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::http::{Response, plain};
use crate::server::clients::{self, ClientLimit, ClientSlot};
use crate::server::cors;
use crate::tus;

/// The TCP peer of a request's connection (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

pub(crate) struct Router {
    app: Arc<App>,
    /// Behind a proxy: requests in flight per forwarded client address.
    clients: ClientLimit,
}

impl Router {
    pub(crate) fn new(app: Arc<App>) -> Router {
        let clients = ClientLimit::new(app.cfg.max_connections_per_ip);
        Router { app, clients }
    }

    /// Routes a request and adds the headers every response carries.
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response {
        let open = self.app.keys.is_open();
        if open && let Some(resp) = self.misdirected(&req) {
            return resp;
        }
        let _client_slot = match self.forwarded_client_slot(&req) {
            Ok(slot) => slot,
            Err(resp) => return resp,
        };
        let origin = cors::origin(req.headers(), &self.app.cfg, open);
        let preflight = cors::is_preflight(req.method(), req.headers());
        let preflight_headers = preflight.then(|| req.headers().clone());

        let mut resp = if matches!(origin, cors::Origin::Denied) {
            plain(StatusCode::FORBIDDEN, "this origin is not allowed by the server's CORS settings")
        } else if preflight {
            // Preflights carry no credentials: answered before authentication.
            tus::options(&self.app)
        } else {
            self.route(req).await
        };
        cors::decorate(&mut resp, &origin, preflight_headers.as_ref());
        resp
    }

    /// Open mode answers only names of this machine: a page whose DNS name
    /// was rebound to 127.0.0.1 must not reach the assets (421).
    fn misdirected(&self, req: &Request<Incoming>) -> Option<Response> {
        if self.app.cfg.allow_anonymous {
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
        if !self.app.cfg.behind_proxy {
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

    async fn route(&self, mut req: Request<Incoming>) -> Response {
        let path = req.uri().path();
        if path == "/v1" || path.starts_with("/v1/") {
            return crate::api::handle(self.app.clone(), req).await;
        }
        let base = self.app.cfg.base_path.as_str();
        if path.starts_with(base) || path == base.trim_end_matches('/') {
            if req.method() == Method::OPTIONS {
                return tus::options(&self.app);
            }
            match self.app.authenticate_upload(&req).await {
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
                return crate::ietf::handle(self.app.clone(), req).await;
            }
            return tus::handle(self.app.clone(), req).await;
        }
        if req.method() == Method::OPTIONS {
            return tus::options(&self.app);
        }
        if let Some(resp) = crate::web::serve(req.method(), path, &self.app.cfg.base_path) {
            return resp;
        }
        plain(StatusCode::NOT_FOUND, "not found")
    }
}
