//! Server plumbing: the accept loop, connection limits and graceful shutdown.
//!
//! A connection gets `--header-timeout` for each request head, counted from
//! its first moment and again whenever it sits idle between requests; one
//! client address holds at most `--max-connections-per-ip` of the
//! `--max-connections` slots. HTTP/2 without TLS (h2c) only with `--h2c`: its
//! detection read is bounded by the same deadline.

pub mod clients;
pub mod cors;
mod router;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Parts};
use crate::auth::Keys;
use crate::backends::files::Files;
use crate::backends::local_events::LocalEvents;
use crate::backends::local_locks::LocalLocks;
use crate::backends::pg_docs::PgDocs;
use crate::backends::pg_events::PgEvents;
use crate::backends::pg_locks::PgLocks;
use crate::backends::pg_meta::PgMeta;
use crate::backends::s3::client::{BucketProblem, S3Client, S3Settings};
use crate::backends::s3::store::{Layout, S3Store};
use crate::backends::sled_meta::SledMeta;
use crate::config::{Config, CorsOrigins, Storage};
use crate::ports::bytes::ByteStore;
use crate::ports::docs::Docs;
use crate::ports::events::EventBus;
use crate::ports::locks::Locks;
use crate::ports::meta::MetaStore;
use crate::projects::Projects;
use crate::server::clients::ClientLimit;
use crate::signing::Signer;
use crate::tokens::Tokens;
use crate::usage::Usage;

/// The bucket of `--storage s3`, checked: a missing bucket, refused
/// credentials or an endpoint that does not answer stop the start, saying which.
async fn open_bucket(settings: &S3Settings, layout: &Layout) -> io::Result<S3Store> {
    let client = S3Client::new(settings).map_err(io::Error::other)?;
    let why = match client.check_bucket().await {
        Ok(()) => return Ok(S3Store::new(client, layout.clone())),
        Err(BucketProblem::Unreachable(e)) => {
            format!("object storage does not answer ({e}); check --s3-endpoint and that the store is running")
        }
        Err(BucketProblem::NoSuchBucket) => format!(
            "the bucket {:?} does not exist at {}; create it, or check --s3-bucket",
            settings.bucket, settings.endpoint
        ),
        Err(BucketProblem::Credentials(e)) => format!(
            "object storage refused the credentials for bucket {:?} ({e}); check --s3-access-key-id and \
             --s3-secret-access-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and --s3-region",
            settings.bucket
        ),
        Err(BucketProblem::Other(e)) => format!("checking the bucket {:?} failed: {e}", settings.bucket),
    };
    Err(io::Error::other(format!("cannot start with --storage s3: {why}")))
}

/// The database of `--database-url`, its schema made or migrated: one that
/// does not answer, refuses the login or was migrated by a newer tusk stops
/// the start, saying which.
async fn open_database(url: &str) -> io::Result<PgMeta> {
    PgMeta::connect(url).await.map_err(|e| {
        let hint =
            if e.is_unavailable() { "; check --database-url and that PostgreSQL is running" } else { "" };
        io::Error::other(format!("cannot start with --database-url: {e}{hint}"))
    })
}

fn database_refused(e: tokio_postgres::Error) -> io::Error {
    io::Error::other(format!("cannot start with --database-url: {e}"))
}

/// How long shutdown waits for open connections to answer their last request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the data directory, binds and serves until `stop` fires.
pub async fn run(cfg: Config, stop: CancellationToken) -> io::Result<()> {
    // Every upload id made from here on is newer than this (UUIDv7).
    let started = crate::record::Timestamp::now();
    let data_dir = cfg.data_dir.clone();
    let usage = Arc::new(Usage::default());
    let storage = cfg.storage.clone().map_err(io::Error::other)?;
    // The composition root: the backends are chosen and opened here, once.
    // A bucket is checked first: a wrong one refuses to start, saying why.
    let s3 = match &storage {
        Storage::Files => None,
        Storage::S3 { settings, layout, .. } => Some(open_bucket(settings, layout).await?),
    };
    let database = match &cfg.database_url {
        Some(url) => Some(Arc::new(open_database(url).await?)),
        None => None,
    };
    let sled_at = database.is_none().then(|| data_dir.clone());
    let (meta, bytes) =
        tokio::task::spawn_blocking(move || -> Result<(Option<MetaStore>, ByteStore), String> {
            let meta = match sled_at {
                Some(dir) => Some(MetaStore::Sled(Arc::new(
                    SledMeta::open(&dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?,
                ))),
                None => None,
            };
            let bytes = match s3 {
                Some(s3) => ByteStore::S3(Arc::new(s3)),
                None => ByteStore::Files(Arc::new(
                    Files::open(&data_dir)
                        .map_err(|e| format!("cannot open {}: {e}", data_dir.join("uploads").display()))?,
                )),
            };
            Ok((meta, bytes))
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let (meta, docs) = match &database {
        Some(db) => (MetaStore::Postgres(db.clone()), Docs::Postgres(Arc::new(PgDocs::new(db.pool())))),
        None => (meta.expect("sled opened without a database"), Docs::Dir(cfg.data_dir.clone())),
    };
    let bytes = Arc::new(bytes);
    // From the indexes: offsets checked against the bytes, and the uploads
    // in flight added to the settled usage counters.
    let not_started = crate::uploads::resume(&meta, &bytes, &usage).await.map_err(io::Error::other)?;
    give_back_start_up_memory();

    if cfg.cors_allow_credentials && !matches!(cfg.cors, Some(CorsOrigins::List(_))) {
        return Err(io::Error::other(
            "--cors-allow-credentials needs --cors-origins with an explicit list of origins (not *)",
        ));
    }
    // Open mode (no keys, one `default` project) only where nobody else can
    // reach us: a proxy in front forwards requests from anywhere.
    let local = cfg.listen.ip().is_loopback() && !cfg.behind_proxy;
    let allow_open = local || cfg.allow_anonymous;
    let keys = Arc::new(Keys::open(docs.clone(), allow_open).await?);
    if keys.never_used() {
        if !allow_open {
            let why = if cfg.behind_proxy {
                "behind a proxy (--behind-proxy), which forwards requests from anywhere,".to_string()
            } else {
                format!("on {}", cfg.listen)
            };
            return Err(io::Error::other(format!(
                "refusing to serve {why} without API keys: create one with `tusk keys create --project NAME`, \
                 or pass --allow-anonymous to serve anyone"
            )));
        }
        tracing::warn!(
            "OPEN MODE: no API key exists, so every request is accepted into the project \"default\"; \
             open mode ends for good as soon as `tusk keys create --project NAME` makes a key"
        );
    } else if !keys.has_active() {
        tracing::error!(
            "no usable API key in {}: every request is refused (401) until `tusk keys create` makes one",
            keys.place()
        );
    }
    let signer = Signer::new(docs.signing_secret().await?);
    let tokens = Arc::new(Tokens::open(docs.clone()).await?);
    let projects = Arc::new(Projects::open(docs.clone()).await?);

    let listener = listen(cfg.listen)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    // Without a database, locks and events live in this process: one node
    // per data directory. With one, they are shared by every node on it.
    let (locks, events) = match &cfg.database_url {
        None => (
            Locks::Local(LocalLocks::new(cfg.lock_timeout, shutdown.clone())),
            EventBus::Local(Arc::new(LocalEvents::new())),
        ),
        Some(url) => {
            let locks = PgLocks::new(url, cfg.lock_timeout, shutdown.clone()).map_err(database_refused)?;
            let events = PgEvents::start(url).await.map_err(database_refused)?;
            (Locks::Cluster(locks), EventBus::Cluster(Arc::new(events)))
        }
    };
    let parts = Parts {
        meta,
        bytes,
        locks,
        events,
        keys: keys.clone(),
        docs,
        tokens: tokens.clone(),
        projects: projects.clone(),
        usage: usage.clone(),
        signer,
    };
    let app = App::new(cfg, parts, shutdown.clone());

    tokio::spawn(crate::uploads::expire::run(app.clone()));
    // In the background: it reads every shard folder.
    tokio::task::spawn_blocking({
        let (meta, bytes) = (app.meta.clone(), app.bytes.clone());
        // A blocking thread may wait on the runtime for the async port.
        let runtime = tokio::runtime::Handle::current();
        let known = move |id| runtime.block_on(meta.contains(id)).map_err(io::Error::other);
        move || match bytes.remove_orphans_blocking(started.0, known) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(files = n, "deleted data files of uploads removed just before a crash"),
            Err(e) => tracing::error!(error = %e, "looking for orphan data files failed"),
        }
    });
    tokio::spawn(keys.watch(shutdown.clone()));
    tokio::spawn(tokens.watch(shutdown.clone()));
    tokio::spawn(projects.watch(usage, shutdown.clone()));
    tokio::spawn({
        let app = app.clone();
        async move { crate::uploads::process::resume_all(&app, not_started).await }
    });
    if app.locks.is_shared() {
        tokio::spawn(crate::uploads::process::watch_unclaimed(app.clone()));
        tokio::spawn(crate::uploads::share_usage(app.clone()));
    }
    // Finals whose parts completed just before a crash are assembled now.
    tokio::spawn({
        let app = app.clone();
        async move { crate::uploads::concat::on_partial_complete(&app, None).await }
    });

    let bytes_at = match &storage {
        Storage::Files if database.is_some() => {
            "upload bytes in it: ONE NODE only, since other nodes cannot read these files (use --storage s3 \
             for several)"
                .to_string()
        }
        Storage::Files => "upload bytes in it".to_string(),
        Storage::S3 { settings, layout, .. } => format!(
            "upload bytes in bucket {} at {} under {:?}, {} MiB parts",
            settings.bucket,
            settings.endpoint,
            layout.prefix,
            layout.part_size >> 20
        ),
    };
    let metadata_in = match &database {
        Some(_) => "metadata, keys, locks and events in PostgreSQL".to_string(),
        None => format!("data directory: {}", app.cfg.data_dir.display()),
    };
    tracing::info!(
        "tusk listening on http://{addr}{} ({metadata_in}, {bytes_at}, {} request threads)",
        app.cfg.base_path,
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    serve(listener, app.clone(), stop).await;

    // In-flight PATCHes stop reading, commit what they received and answer.
    shutdown.cancel();
    app.meta.flush().await.map_err(io::Error::other)?;
    tracing::info!("tusk stopped");
    Ok(())
}

/// What a new connection turned out to speak.
enum Protocol {
    Http1,
    H2c,
    /// Sent nothing decisive within the header timeout, or went away.
    Silent,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// With `--h2c`: peeks at the first bytes (bounded by `deadline`) to tell
/// the HTTP/2 preface from an HTTP/1 request line.
async fn detect(stream: &TcpStream, deadline: tokio::time::Instant) -> Protocol {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Protocol::Silent,
            Ok(Ok(n)) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return Protocol::Http1;
        }
        if n == H2_PREFACE.len() {
            return Protocol::H2c;
        }
        // Part of the preface so far: wait for more (peek returns at once otherwise).
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = tokio::time::sleep_until(deadline) => return Protocol::Silent,
        }
    }
}

/// Answers a connection over its address's cap without reading from it.
fn refuse_over_cap(stream: &TcpStream, peer: SocketAddr, cap: usize) {
    let body = format!(
        "too many connections from {} (at most {cap} at once, --max-connections-per-ip); close some and retry\n",
        peer.ip()
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(resp.as_bytes());
}

/// Connections the kernel completes before we accept them. std's default
/// (128) overflowed in bursts, and a dropped SYN costs the client a 1 s
/// retransmission; the kernel caps this at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4096;

/// Opening a large sled database and reading the in-flight index allocate
/// tens of MiB that are freed at once (log scan buffers, the snapshot's page
/// list); glibc keeps freed memory in its arenas unless asked to return it.
fn give_back_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(app.cfg.max_connections));
    // Behind a proxy every connection comes from the proxy: the cap then
    // applies per forwarded client, per request (`router::Router::handle`).
    let per_ip = (!app.cfg.behind_proxy).then(|| ClientLimit::new(app.cfg.max_connections_per_ip));
    let header_timeout = app.cfg.header_timeout;
    let router = Arc::new(router::Router::new(app.clone()));
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        // hyper starts this clock when it begins to read a head: at the
        // connection's start and whenever it goes idle after a response.
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        // Body frames are slices of this buffer: capping it bounds the bytes
        // in flight per upload (frames queued for the writer and the hasher).
        .max_buf_size(128 << 10);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new()).keep_alive_interval(header_timeout).keep_alive_timeout(header_timeout);

    loop {
        // Waiting for a permit first keeps excess connections in the kernel's queue.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = stop.cancelled() => break,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
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
        let client_slot = match &per_ip {
            None => None,
            Some(per_ip) => match per_ip.try_acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse_over_cap(&stream, peer, per_ip.per_client());
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let h2c = app.cfg.h2c;
        let router = router.clone();
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(router::Peer(peer));
            let router = router.clone();
            async move { Ok::<_, std::convert::Infallible>(router.handle(req).await) }
        });
        let watcher = graceful.watcher();
        let (h1, h2) = (h1.clone(), h2.clone());
        tokio::spawn(async move {
            let protocol = if h2c {
                detect(&stream, tokio::time::Instant::now() + header_timeout).await
            } else {
                Protocol::Http1
            };
            let io = TokioIo::new(stream);
            let result = match protocol {
                Protocol::Http1 => watcher.watch(h1.serve_connection(io, service)).await,
                Protocol::H2c => watcher.watch(h2.serve_connection(io, service)).await,
                Protocol::Silent => Ok(()),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, client_slot));
        });
    }
    drop(listener);
    // Ask in-flight requests to finish early, then wait (bounded) for them.
    app.shutdown.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
