//! The locker port's in-process backend: one writer per upload on one
//! node, with lock release requests.
//!
//! A client that lost its connection mid-PATCH retries at once with HEAD and
//! PATCH while the server may still be waiting on the dead connection. Rather
//! than refuse the newcomer (tusd v1's 423) or make it wait for the read
//! timeout, the newcomer asks the holder to stop: the holder's cancellation
//! token fires, it commits what it received and lets go. The newcomer waits
//! a bounded time for that, then answers 423 (which every tus client retries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Default)]
struct Slot {
    mutex: Arc<tokio::sync::Mutex<()>>,
    /// Fires to ask the current holder to finish early.
    holder: Mutex<Option<CancellationToken>>,
}

pub struct LocalLocks {
    slots: Arc<Mutex<HashMap<Uuid, Arc<Slot>>>>,
    wait: Duration,
    /// Parent of every holder's token: cancelled at shutdown.
    shutdown: CancellationToken,
}

#[derive(Debug)]
pub struct LockTimeout;

/// Held while a request works on an upload. `cancelled` tells the holder that
/// a newer request (or shutdown) wants the upload.
pub struct LocalLock {
    id: Uuid,
    slot: Arc<Slot>,
    slots: Arc<Mutex<HashMap<Uuid, Arc<Slot>>>>,
    guard: Option<OwnedMutexGuard<()>>,
    token: CancellationToken,
}

impl LocalLocks {
    pub fn new(wait: Duration, shutdown: CancellationToken) -> Self {
        LocalLocks { slots: Arc::default(), wait, shutdown }
    }

    pub async fn lock(&self, id: Uuid) -> Result<LocalLock, LockTimeout> {
        let slot = self.slots.lock().expect("lock map").entry(id).or_default().clone();
        let guard = match slot.mutex.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                let deadline = tokio::time::Instant::now() + self.wait;
                let wait = slot.mutex.clone().lock_owned();
                tokio::pin!(wait);
                loop {
                    // Asked again on every tick: the holder registers its token
                    // just after taking the lock, and we may have looked before.
                    if let Some(holder) = slot.holder.lock().expect("holder").as_ref() {
                        holder.cancel();
                    }
                    let tick = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
                    tokio::select! {
                        g = &mut wait => break g,
                        _ = tokio::time::sleep_until(tick) => {
                            if tokio::time::Instant::now() >= deadline {
                                drop(slot);
                                self.cleanup(id);
                                return Err(LockTimeout);
                            }
                        }
                    }
                }
            }
        };
        let token = self.shutdown.child_token();
        *slot.holder.lock().expect("holder") = Some(token.clone());
        Ok(LocalLock { id, slot, slots: self.slots.clone(), guard: Some(guard), token })
    }

    /// Non-blocking attempt, for background work that must never interrupt a client.
    pub fn try_lock(&self, id: Uuid) -> Option<LocalLock> {
        let slot = self.slots.lock().expect("lock map").entry(id).or_default().clone();
        match slot.mutex.clone().try_lock_owned() {
            Ok(guard) => {
                let token = self.shutdown.child_token();
                *slot.holder.lock().expect("holder") = Some(token.clone());
                Some(LocalLock { id, slot, slots: self.slots.clone(), guard: Some(guard), token })
            }
            Err(_) => {
                drop(slot);
                self.cleanup(id);
                None
            }
        }
    }

    fn cleanup(&self, id: Uuid) {
        remove_if_idle(&self.slots, id, 0);
    }

    /// Uploads currently locked (for tests and diagnostics).
    pub fn held(&self) -> usize {
        self.slots.lock().expect("lock map").len()
    }
}

/// Forgets the slot if nobody holds or waits for it: only the map and the
/// caller's `own` references (0 or 1) remain. Checked under the map's lock,
/// which every newcomer takes to find the slot, so none can slip in.
fn remove_if_idle(slots: &Mutex<HashMap<Uuid, Arc<Slot>>>, id: Uuid, own: usize) {
    let mut map = slots.lock().expect("lock map");
    if map.get(&id).is_some_and(|s| Arc::strong_count(s) == 1 + own) {
        map.remove(&id);
    }
}

impl LocalLock {
    pub fn cancelled(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        *self.slot.holder.lock().expect("holder") = None;
        self.guard.take();
        remove_if_idle(&self.slots, self.id, 1);
    }
}
