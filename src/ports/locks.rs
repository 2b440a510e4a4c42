//! The locker port: one writer per upload, with hand-over.
//!
//! A client that lost its connection mid-PATCH retries at once while the
//! server may still be reading the dead connection; the newcomer asks the
//! holder to stop (`UploadLock::cancelled` fires, the holder commits what
//! it has and lets go) and waits a bounded time before answering 423. The
//! in-process backend does this with a mutex per upload; a multi-node one
//! does it with database locks and release requests. `try_lock` is for
//! background work (expiry), which never interrupts a client.

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backends::local_locks::{LocalLock, LocalLocks};
use crate::backends::pg_locks::{PgLock, PgLockError, PgLocks};

pub enum Locks {
    Local(LocalLocks),
    /// Across the nodes sharing one PostgreSQL.
    Cluster(PgLocks),
}

/// Why a request got no lock; both are answers clients retry.
#[derive(Debug)]
pub enum LockError {
    /// The holder did not let go in time (423).
    Busy,
    /// The database the locks live in cannot be reached (503).
    Unavailable,
}

/// Held while a request works on an upload; released when dropped.
pub struct UploadLock {
    held: Held,
}

enum Held {
    Local(LocalLock),
    Cluster(PgLock),
}

impl Locks {
    /// Waits for the lock, asking its holder to finish early.
    pub async fn lock(&self, id: Uuid) -> Result<UploadLock, LockError> {
        match self {
            Locks::Local(l) => {
                l.lock(id).await.map(|l| UploadLock { held: Held::Local(l) }).map_err(|_| LockError::Busy)
            }
            Locks::Cluster(l) => {
                l.lock(id).await.map(|l| UploadLock { held: Held::Cluster(l) }).map_err(|e| match e {
                    PgLockError::Busy => LockError::Busy,
                    PgLockError::Unavailable => LockError::Unavailable,
                })
            }
        }
    }

    /// The lock if nobody holds it; never interrupts a holder.
    pub async fn try_lock(&self, id: Uuid) -> Option<UploadLock> {
        match self {
            Locks::Local(l) => l.try_lock(id).map(|l| UploadLock { held: Held::Local(l) }),
            Locks::Cluster(l) => l.try_lock(id).await.map(|l| UploadLock { held: Held::Cluster(l) }),
        }
    }

    /// Shared by several nodes.
    pub fn is_shared(&self) -> bool {
        matches!(self, Locks::Cluster(_))
    }

    /// Uploads locked on this node now (for tests and diagnostics).
    pub fn held(&self) -> usize {
        match self {
            Locks::Local(l) => l.held(),
            Locks::Cluster(l) => l.held_here(),
        }
    }
}

impl UploadLock {
    /// Fires once a shared lock's database session ended: the database let
    /// the lock go and another node may hold it now, so what this request
    /// has must not be stored over that node's writes. `None` in-process.
    pub fn lost(&self) -> Option<CancellationToken> {
        match &self.held {
            Held::Local(_) => None,
            Held::Cluster(l) => Some(l.lost().clone()),
        }
    }

    /// Fires when a newer request (or shutdown) wants the upload.
    pub fn cancelled(&self) -> &CancellationToken {
        match &self.held {
            Held::Local(l) => l.cancelled(),
            Held::Cluster(l) => l.cancelled(),
        }
    }
}
