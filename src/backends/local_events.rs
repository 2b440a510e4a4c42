//! The event bus port's in-process backend: live asset events for
//! `GET /v1/events` (Server-Sent Events) on one node.
//!
//! Producers never wait: events go into a broadcast channel and a bounded
//! history. A consumer that falls behind skips ahead and is told so, which
//! keeps slow readers from slowing uploads. Event ids carry a per-start
//! nonce, so a `Last-Event-ID` from before a restart is recognised as a gap.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::events::{Event, Kind, ProgressGate, Resume};
use crate::record::UploadRecord;

/// Events kept for `Last-Event-ID` replay: at most this many...
const HISTORY: usize = 4096;
/// ...and at most about this many bytes of records (metadata is up to 16 KiB
/// an asset; 4,096 copies of 64 KiB records once took 400 MiB).
const HISTORY_BYTES: usize = 8 << 20;

pub struct LocalEvents {
    boot: String,
    seq: AtomicU64,
    tx: broadcast::Sender<std::sync::Arc<Event>>,
    history: Mutex<History>,
    progress: ProgressGate,
}

#[derive(Default)]
struct History {
    events: VecDeque<(std::sync::Arc<Event>, usize)>,
    bytes: usize,
}

/// About what a record holds on the heap: its metadata twice (the header as
/// sent and the asset's map), names and a fixed part.
fn approx_size(rec: &UploadRecord) -> usize {
    let meta = rec.metadata.as_ref().map_or(0, String::len);
    let asset = rec.asset.as_ref().map_or(0, |a| {
        a.metadata.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>()
            + a.name.as_ref().map_or(0, String::len)
    });
    512 + meta + asset
}

impl Default for LocalEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalEvents {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        LocalEvents {
            boot: Uuid::now_v7().simple().to_string()[24..].to_string(),
            seq: AtomicU64::new(0),
            tx,
            history: Mutex::default(),
            progress: ProgressGate::default(),
        }
    }

    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    pub fn emit(&self, kind: Kind, rec: &UploadRecord) {
        if rec.asset.is_none() {
            return; // partial uploads are not assets
        }
        if kind != Kind::Progress {
            self.progress.forget(rec.id);
        }
        let mut history = self.history.lock().expect("history");
        // Numbered under the history lock so history stays in order.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // One copy of the record, shared by the history and every subscriber.
        let ev = std::sync::Arc::new(Event { seq, kind, project: rec.project_id, record: rec.clone() });
        let size = approx_size(rec);
        history.bytes += size;
        history.events.push_back((ev.clone(), size));
        while history.events.len() > HISTORY || (history.bytes > HISTORY_BYTES && history.events.len() > 1) {
            let (_, dropped) = history.events.pop_front().expect("not empty");
            history.bytes -= dropped;
        }
        drop(history);
        let _ = self.tx.send(ev); // no subscribers is fine
    }

    /// Bytes were stored; throttled per asset.
    pub fn progress(&self, rec: &UploadRecord) {
        if self.progress.due(rec) {
            self.emit(Kind::Progress, rec);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<Event>> {
        self.tx.subscribe()
    }

    /// LocalEvents after `last_id` (from `Last-Event-ID`).
    pub fn resume(&self, last_id: &str) -> Resume {
        let Some((boot, seq)) = last_id.trim().split_once('-') else { return Resume::Gap };
        let Ok(seq) = seq.parse::<u64>() else { return Resume::Gap };
        if boot != self.boot || seq > self.seq.load(Ordering::Relaxed) {
            return Resume::Gap;
        }
        let history = self.history.lock().expect("history");
        match history.events.front() {
            Some((first, _)) if first.seq > seq + 1 => Resume::Gap,
            _ => Resume::From(
                history.events.iter().filter(|(e, _)| e.seq > seq).map(|(e, _)| e.clone()).collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::AssetInfo;

    /// 4,096 events of assets with the largest metadata allowed stay within
    /// the byte budget (they took ~64 KiB each, 400 MiB in all, before),
    /// and a resume from before the kept history is a gap.
    #[test]
    fn history_is_bounded_in_bytes() {
        let events = LocalEvents::new();
        let value = "x".repeat(16 << 10);
        let first = events.event_id(1);
        for _ in 0..HISTORY {
            let mut rec = UploadRecord::new(
                Uuid::now_v7(),
                Uuid::now_v7(),
                Some(1),
                Some(value.clone()),
                Default::default(),
            );
            rec.asset = Some(AssetInfo::new(None, None, [("k".to_string(), value.clone())].into()));
            events.emit(Kind::Created, &rec);
        }
        let history = events.history.lock().unwrap();
        assert!(history.bytes <= HISTORY_BYTES, "{} bytes kept", history.bytes);
        assert!(
            history.events.len() < HISTORY && history.events.len() > 100,
            "{} events kept",
            history.events.len()
        );
        drop(history);
        assert!(matches!(events.resume(&first), Resume::Gap));
    }
}
