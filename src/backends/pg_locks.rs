//! The locker port across nodes: one writer per upload in a cluster of
//! tusk nodes sharing one PostgreSQL, with hand-over (the model is
//! Supabase Storage's: advisory locks, release requests by NOTIFY).
//!
//! Each node keeps one database session for its locks: an upload's lock is
//! a session-level advisory lock on a key made from its id, taken on top
//! of the node's own per-upload lock (`LocalLocks`, which also hands over
//! between requests on the node). A newcomer on another node that finds
//! the key taken sends `NOTIFY tusk_release, '<id>'` on every try; the
//! holding node, listening on the same session, fires the holder's
//! cancellation token, and the holder commits what it has and lets go. A
//! node that dies loses its session, and PostgreSQL frees its locks; a node
//! whose session drops cancels every holder at once, since it no longer
//! knows that they are alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::local_locks::{LocalLock, LocalLocks, LockTimeout};

/// The channel release requests go by.
const CHANNEL: &str = "tusk_release";
/// How often a waiting newcomer tries the key (and asks again).
const TICK: Duration = Duration::from_millis(50);

/// Why no lock was had.
#[derive(Debug)]
pub enum PgLockError {
    /// Its holder did not let go in time.
    Busy,
    /// The database cannot be reached.
    Unavailable,
}

pub struct PgLocks {
    local: LocalLocks,
    wait: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    config: tokio_postgres::Config,
    /// The session holding this node's advisory locks, while it lives.
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Holders on this node, by upload: what a release request cancels.
    holders: Mutex<HashMap<Uuid, CancellationToken>>,
}

struct Session {
    client: tokio_postgres::Client,
    /// Fires when the session is gone (its locks with it).
    lost: CancellationToken,
    /// Prepared once per session: each use is then one round trip.
    statements: Statements,
}

struct Statements {
    try_lock: tokio_postgres::Statement,
    unlock: tokio_postgres::Statement,
    notify: tokio_postgres::Statement,
}

/// Held while a request works on an upload, on this node and in the cluster.
pub struct PgLock {
    id: Uuid,
    local: Option<LocalLock>,
    /// Ends the watch on the session (`PgLocks::held`) when let go.
    done: CancellationToken,
    session: Arc<Session>,
    shared: Arc<Shared>,
}

use super::pg_meta::lock_key as key;

impl PgLocks {
    /// Locks for a node on the database at `url`; the session is opened
    /// with the first lock (and again whenever it was lost).
    pub fn new(
        url: &str,
        wait: Duration,
        shutdown: CancellationToken,
    ) -> Result<PgLocks, tokio_postgres::Error> {
        let config = super::pg_meta::client_config(url)?;
        Ok(PgLocks {
            local: LocalLocks::new(wait, shutdown),
            wait,
            shared: Arc::new(Shared {
                config,
                session: tokio::sync::Mutex::new(None),
                holders: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Waits for the upload's lock on this node, then in the cluster,
    /// asking whoever holds it (here or on another node) to let go.
    pub async fn lock(&self, id: Uuid) -> Result<PgLock, PgLockError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let local = self.local.lock(id).await.map_err(|_: LockTimeout| PgLockError::Busy)?;
        loop {
            match tokio::time::timeout_at(deadline, self.shared.session()).await {
                Err(_) => return Err(PgLockError::Unavailable),
                // Answered at once: waiting out the lock timeout would only
                // hold the client up, and a 503 says what is wrong.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the lock database cannot be reached");
                    return Err(PgLockError::Unavailable);
                }
                Ok(Ok(session)) => {
                    if session.try_key(id).await {
                        return Ok(self.held(id, local, session));
                    }
                    session.ask_release(id).await;
                }
            }
            // A newer request for the upload on this node wants it (or a
            // shutdown): this one gives way instead of waiting its time out.
            if tokio::time::Instant::now() + TICK > deadline || local.cancelled().is_cancelled() {
                return Err(PgLockError::Busy);
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// The lock if nobody holds it anywhere; never interrupts a holder.
    pub async fn try_lock(&self, id: Uuid) -> Option<PgLock> {
        let local = self.local.try_lock(id)?;
        let session = self.shared.session().await.ok()?;
        session.try_key(id).await.then(|| self.held(id, local, session))
    }

    fn held(&self, id: Uuid, local: LocalLock, session: Arc<Session>) -> PgLock {
        self.shared.holders.lock().expect("holders").insert(id, local.cancelled().clone());
        // A session lost while the lock is held takes the lock with it.
        let (lost, token, done) = (session.lost.clone(), local.cancelled().clone(), CancellationToken::new());
        let watch = done.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => token.cancel(),
                _ = watch.cancelled() => {}
            }
        });
        PgLock { id, local: Some(local), done, session, shared: self.shared.clone() }
    }

    /// Uploads locked on this node now.
    pub fn held_here(&self) -> usize {
        self.local.held()
    }

    /// The backend process id of this node's lock session (for tests that
    /// end it, as a node's death would).
    pub async fn session_pid(&self) -> Option<i32> {
        let session = self.shared.session().await.ok()?;
        let row = session.client.query_one("SELECT pg_backend_pid()", &[]).await.ok()?;
        Some(row.get(0))
    }
}

impl Shared {
    /// The live session, opened (and listening) if there is none.
    async fn session(self: &Arc<Self>) -> Result<Arc<Session>, tokio_postgres::Error> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.lost.is_cancelled()
        {
            return Ok(s.clone());
        }
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let lost = CancellationToken::new();
        let shared = Arc::downgrade(self);
        let gone = lost.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let (Some(shared), Ok(id)) = (shared.upgrade(), Uuid::parse_str(n.payload())) else {
                            continue;
                        };
                        if let Some(token) = shared.holders.lock().expect("holders").get(&id) {
                            token.cancel();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the lock session ended; its locks are released");
                        break;
                    }
                }
            }
            gone.cancel();
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let statements = Statements {
            try_lock: client.prepare("SELECT pg_try_advisory_lock($1)").await?,
            unlock: client.prepare("SELECT pg_advisory_unlock($1)").await?,
            notify: client.prepare("SELECT pg_notify($1, $2)").await?,
        };
        let session = Arc::new(Session { client, lost, statements });
        *slot = Some(session.clone());
        Ok(session)
    }
}

impl Session {
    /// Tries the upload's key. Run to its end whatever becomes of the
    /// caller: a request dropped while the query was on its way (the client
    /// gone, a shutdown) would otherwise leave a lock taken in the database
    /// that nobody here knows of, refusing every other node until restart.
    async fn try_key(self: &Arc<Self>, id: Uuid) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let session = self.clone();
        tokio::spawn(async move {
            let taken = match session.client.query_one(&session.statements.try_lock, &[&key(id)]).await {
                Ok(row) => row.get::<_, bool>(0),
                Err(_) => false,
            };
            if tx.send(taken).is_err() && taken {
                let _ = session.client.query_one(&session.statements.unlock, &[&key(id)]).await;
            }
        });
        rx.await.unwrap_or(false)
    }

    async fn ask_release(&self, id: Uuid) {
        let _ = self.client.execute(&self.statements.notify, &[&CHANNEL, &id.to_string()]).await;
    }
}

impl PgLock {
    pub fn cancelled(&self) -> &CancellationToken {
        self.local.as_ref().expect("held until dropped").cancelled()
    }

    /// Fires if the session holding the lock ended: the database let the
    /// lock go, and another node may hold it now.
    pub fn lost(&self) -> &CancellationToken {
        &self.session.lost
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        self.done.cancel();
        self.shared.holders.lock().expect("holders").remove(&self.id);
        // Unlocked on the session before the node's own lock is let go, so
        // the next holder here never finds the key still counted for this one.
        let (session, local, key) = (self.session.clone(), self.local.take(), key(self.id));
        // Outside a runtime (a process ending) there is no unlock to send:
        // the session ends with the process, and its locks with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = session.client.query_one(&session.statements.unlock, &[&key]).await;
                drop(local);
            });
        }
    }
}
