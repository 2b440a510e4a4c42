//! What each project has stored: bytes, assets and uploads in flight.
//!
//! Counted in memory from the records at start-up (so the figures are right
//! after a `kill -9`: a record's offset only counts durable bytes) and moved
//! by deltas as uploads grow, finish and are removed. Bytes a request is
//! streaming are counted as they arrive, through a [`Budget`], so that two
//! uploads racing toward a quota cannot both pass it; what a request does
//! not keep is handed back when it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One project's counters.
#[derive(Debug, Default)]
pub struct ProjectUsage {
    /// Durable bytes of every upload, plus bytes requests are streaming now.
    bytes: AtomicU64,
    assets: AtomicI64,
    in_flight: AtomicI64,
    /// Of `bytes`, those requests on this node are streaming now (taken by
    /// budgets, not yet settled): what `Usage::rebase` keeps on top of the
    /// stored figures.
    reserved: AtomicU64,
}

/// A point-in-time copy of one project's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFigures {
    pub bytes_stored: u64,
    pub assets: u64,
    pub uploads_in_flight: u64,
}

impl ProjectUsage {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn figures(&self) -> UsageFigures {
        UsageFigures {
            bytes_stored: self.bytes(),
            assets: self.assets.load(Ordering::Relaxed).max(0) as u64,
            uploads_in_flight: self.in_flight.load(Ordering::Relaxed).max(0) as u64,
        }
    }

    fn add_bytes(&self, delta: i64) {
        if delta >= 0 {
            self.bytes.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            let d = delta.unsigned_abs();
            // Never below zero, even if a delta was counted twice.
            let _ =
                self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(d)));
        }
    }

    /// Counts up to `n` more bytes, stopping at `quota`; returns how many fit.
    fn take(&self, n: u64, quota: Option<u64>) -> u64 {
        let granted = match quota {
            None => {
                self.bytes.fetch_add(n, Ordering::Relaxed);
                n
            }
            Some(quota) => {
                let mut granted = 0;
                let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    granted = n.min(quota.saturating_sub(b));
                    Some(b + granted)
                });
                granted
            }
        };
        self.reserved.fetch_add(granted, Ordering::Relaxed);
        granted
    }

    /// A budget ends: `n` bytes it took are no longer streaming.
    fn release(&self, n: u64) {
        let _ =
            self.reserved.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| Some(r.saturating_sub(n)));
    }
}

/// Every project's counters.
#[derive(Default)]
pub struct Usage {
    projects: RwLock<HashMap<Uuid, Arc<ProjectUsage>>>,
}

/// What an upload contributes to its project's counters (`UploadRecord::share`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub bytes: u64,
    pub asset: bool,
    pub in_flight: bool,
}

impl Usage {
    pub fn project(&self, id: Uuid) -> Arc<ProjectUsage> {
        if let Some(p) = self.projects.read().expect("usage").get(&id) {
            return p.clone();
        }
        self.projects.write().expect("usage").entry(id).or_default().clone()
    }

    pub fn figures(&self, id: Uuid) -> UsageFigures {
        self.project(id).figures()
    }

    /// Every project with something counted.
    pub fn all(&self) -> Vec<(Uuid, UsageFigures)> {
        let mut v: Vec<_> =
            self.projects.read().expect("usage").iter().map(|(id, p)| (*id, p.figures())).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// A record changed from `before` to `after` (either may be nothing).
    pub fn moved(&self, project: Uuid, before: Share, after: Share) {
        if before == after {
            return;
        }
        let p = self.project(project);
        p.add_bytes(after.bytes as i64 - before.bytes as i64);
        p.assets.fetch_add(i64::from(after.asset) - i64::from(before.asset), Ordering::Relaxed);
        p.in_flight.fetch_add(i64::from(after.in_flight) - i64::from(before.in_flight), Ordering::Relaxed);
    }

    /// A new upload: counted in flight until `uploads::on_complete` (or
    /// its assembly) says otherwise; its bytes are counted as they arrive.
    pub fn created(&self, project: Uuid, asset: bool, in_flight: bool) {
        self.moved(project, Share::default(), Share { bytes: 0, asset, in_flight });
    }

    /// Counts what is stored (start-up).
    pub fn load(&self, totals: impl IntoIterator<Item = (Uuid, UsageFigures)>) {
        for (project, t) in totals {
            let p = self.project(project);
            p.add_bytes(t.bytes_stored as i64);
            p.assets.fetch_add(t.assets as i64, Ordering::Relaxed);
            p.in_flight.fetch_add(t.uploads_in_flight as i64, Ordering::Relaxed);
        }
    }

    /// With several nodes on one database: the figures stored there (every
    /// node's uploads) replace this node's, keeping on top what requests
    /// here are streaming now. Called every second or so; a change made
    /// between the read and this is right again at the next.
    pub fn rebase(&self, stored: &HashMap<Uuid, UsageFigures>) {
        let known: Vec<Uuid> = self.projects.read().expect("usage").keys().copied().collect();
        for id in known.iter().chain(stored.keys().filter(|k| !known.contains(k))) {
            let p = self.project(*id);
            let s = stored.get(id).copied().unwrap_or_default();
            p.bytes.store(s.bytes_stored + p.reserved.load(Ordering::Relaxed), Ordering::Relaxed);
            p.assets.store(s.assets as i64, Ordering::Relaxed);
            p.in_flight.store(s.uploads_in_flight as i64, Ordering::Relaxed);
        }
    }

    /// A budget for one request that streams into an upload of `project`.
    pub fn budget(&self, project: Uuid, quota: Option<u64>) -> Budget {
        Budget { usage: self.project(project), quota, taken: 0, recorded: 0 }
    }
}

/// Bytes one request may add to its project; counted as they arrive. The
/// request tells it how many it kept ([`Budget::settle`]); what it took and
/// did not keep goes back when the budget is dropped.
#[derive(Debug)]
pub struct Budget {
    usage: Arc<ProjectUsage>,
    quota: Option<u64>,
    taken: u64,
    /// Of `taken`, the bytes already in the stored offset (a checkpoint
    /// mid-request): no longer streaming, so no longer `reserved`.
    recorded: u64,
}

impl Budget {
    /// Takes up to `n` bytes; fewer once the quota is reached.
    pub fn take(&mut self, n: u64) -> u64 {
        let granted = self.usage.take(n, self.quota);
        self.taken += granted;
        granted
    }

    /// The first `n` bytes this request took are in the upload's stored
    /// offset now (checkpointed while the body goes on): the stored figures
    /// count them, so a rebase must not count them again as streaming.
    pub fn recorded(&mut self, n: u64) {
        let n = n.min(self.taken);
        if n > self.recorded {
            self.usage.release(n - self.recorded);
            self.recorded = n;
        }
    }

    /// The request kept `kept` of the bytes it took (they are now counted
    /// through the record); the rest is handed back.
    pub fn settle(&mut self, kept: u64) {
        let back = self.taken.saturating_sub(kept);
        self.usage.add_bytes(-(back as i64));
        self.usage.release(self.taken - self.recorded);
        self.taken = 0;
        self.recorded = 0;
    }

    pub fn quota(&self) -> Option<u64> {
        self.quota
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        // Not settled: nothing taken is known to have been kept by this request.
        if self.taken > 0 {
            self.usage.add_bytes(-(self.taken as i64));
            self.usage.release(self.taken - self.recorded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_stops_at_the_quota_and_gives_back_what_was_not_kept() {
        let usage = Usage::default();
        let p = Uuid::now_v7();
        let mut a = usage.budget(p, Some(100));
        let mut b = usage.budget(p, Some(100));
        assert_eq!(a.take(60), 60);
        assert_eq!(b.take(60), 40, "the second request gets only what is left");
        assert_eq!(usage.figures(p).bytes_stored, 100);
        a.settle(10); // kept 10 of 60
        assert_eq!(usage.figures(p).bytes_stored, 50);
        drop(b); // kept nothing
        assert_eq!(usage.figures(p).bytes_stored, 10);
    }

    #[test]
    fn a_rebase_takes_the_stored_figures_and_keeps_what_is_streaming_here() {
        let usage = Usage::default();
        let (p, q) = (Uuid::now_v7(), Uuid::now_v7());
        usage.created(p, true, true);
        let mut a = usage.budget(p, Some(1000));
        assert_eq!(a.take(300), 300);
        // Other nodes stored 500 bytes of p and all of q.
        let stored = HashMap::from([
            (p, UsageFigures { bytes_stored: 500, assets: 3, uploads_in_flight: 2 }),
            (q, UsageFigures { bytes_stored: 7, assets: 1, uploads_in_flight: 0 }),
        ]);
        usage.rebase(&stored);
        assert_eq!(usage.figures(p), UsageFigures { bytes_stored: 800, assets: 3, uploads_in_flight: 2 });
        assert_eq!(usage.figures(q).bytes_stored, 7);
        assert_eq!(a.take(300), 200, "the quota counts every node's bytes");
        // A checkpoint stores 400 of the 500 taken: the database counts them now.
        a.recorded(400);
        let stored =
            HashMap::from([(p, UsageFigures { bytes_stored: 900, assets: 3, uploads_in_flight: 2 })]);
        usage.rebase(&stored);
        assert_eq!(usage.figures(p).bytes_stored, 1000, "checkpointed bytes are not counted twice");
        a.settle(0);
        assert_eq!(usage.figures(p).bytes_stored, 500);
        usage.rebase(&HashMap::from([(p, UsageFigures { bytes_stored: 500, ..Default::default() })]));
        assert_eq!(usage.figures(p).bytes_stored, 500, "nothing is left streaming");
        // Nothing streaming: the next rebase is the stored figures exactly.
        usage.rebase(&HashMap::new());
        assert_eq!(usage.figures(p), UsageFigures::default());
    }
}
