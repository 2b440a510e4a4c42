//! Server plumbing: the accept loop, connection limits and graceful shutdown.

pub mod cors;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::signing::Signer;
use crate::app::App;
use crate::auth::Keys;
use crate::config::Config;
use crate::store::Store;

/// How long shutdown waits for open connections to answer their last request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the data directory, binds and serves until `stop` fires.
pub async fn run(cfg: Config, stop: CancellationToken) -> io::Result<()> {
    // Every upload id made from here on is newer than this (UUIDv7).
    let started = crate::store::Timestamp::now();
    let data_dir = cfg.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || -> Result<Store, String> {
        let store = Store::open(&data_dir).map_err(|e| format!("cannot open {}: {e}", data_dir.display()))?;
        let fixed = store.reconcile().map_err(|e| e.to_string())?;
        if fixed > 0 {
            tracing::warn!(uploads = fixed, "wound back uploads whose files were shorter than their offsets");
        }
        Ok(store)
    })
    .await
    .map_err(io::Error::other)?
    .map_err(io::Error::other)?;

    // Open mode (no keys, one `default` project) only where nobody else can reach us.
    let allow_open = cfg.listen.ip().is_loopback() || cfg.allow_anonymous;
    let keys = Arc::new(Keys::open(&cfg.data_dir, allow_open)?);
    if keys.is_empty() {
        if !allow_open {
            return Err(io::Error::other(format!(
                "refusing to listen on {} without API keys: create one with `tusk keys create --project NAME`, \
                 or pass --allow-anonymous to serve anyone",
                cfg.listen
            )));
        }
        tracing::warn!(
            "OPEN MODE: no API key exists, so every request is accepted into the project \"default\"; \
             open mode ends as soon as `tusk keys create --project NAME` makes a key"
        );
    }
    let signer = Signer::load_or_create(&cfg.data_dir)?;

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let app = App::new(cfg, Arc::new(store), keys.clone(), signer, shutdown.clone());

    tokio::spawn(crate::expiry::run(app.clone()));
    // In the background: it reads every shard folder.
    tokio::task::spawn_blocking({
        let store = app.store.clone();
        move || match store.remove_orphan_files(started) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(files = n, "deleted data files of uploads removed just before a crash"),
            Err(e) => tracing::error!(error = %e, "looking for orphan data files failed"),
        }
    });
    tokio::spawn(keys.watch(shutdown.clone()));
    tokio::spawn({
        let app = app.clone();
        async move { crate::asset::process::resume_all(&app).await }
    });
    // Finals whose parts completed just before a crash are assembled now.
    tokio::spawn({
        let app = app.clone();
        async move { crate::tus::on_partial_complete(&app).await }
    });

    tracing::info!(
        "tusk listening on http://{addr}{} (data directory: {}, {} request threads)",
        app.cfg.base_path,
        app.cfg.data_dir.display(),
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    serve(listener, app.clone(), stop).await;

    // In-flight PATCHes stop reading, commit what they received and answer.
    shutdown.cancel();
    app.store.flush().await.map_err(io::Error::other)?;
    tracing::info!("tusk stopped");
    Ok(())
}

async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(app.cfg.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        // Body frames are slices of this buffer: capping it bounds the bytes
        // in flight per upload (frames queued for the writer and the hasher).
        .max_buf_size(128 << 10);

    loop {
        // Waiting for a permit first keeps excess connections in the kernel's queue.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = stop.cancelled() => break,
        };
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Ask in-flight requests to finish early, then wait (bounded) for them.
    app.shutdown.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
