//! The event bus port: asset changes to every subscriber, with replay from
//! a `Last-Event-ID`. Producers never wait (`emit` returns at once), so a
//! slow subscriber cannot slow uploads. The in-process backend keeps a
//! bounded history per start; a multi-node one shares it through the
//! database.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::backends::local_events::LocalEvents;
use crate::backends::pg_events::PgEvents;
use crate::events::{Event, Kind, Resume};
use crate::record::UploadRecord;

#[derive(Clone)]
pub enum EventBus {
    Local(Arc<LocalEvents>),
    /// Every node's events in one order, through PostgreSQL.
    Cluster(Arc<PgEvents>),
}

impl EventBus {
    pub fn emit(&self, kind: Kind, rec: &UploadRecord) {
        match self {
            EventBus::Local(e) => e.emit(kind, rec),
            EventBus::Cluster(e) => e.emit(kind, rec),
        }
    }

    /// Bytes were stored (throttled per asset).
    pub fn progress(&self, rec: &UploadRecord) {
        match self {
            EventBus::Local(e) => e.progress(rec),
            EventBus::Cluster(e) => e.progress(rec),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        match self {
            EventBus::Local(e) => e.subscribe(),
            EventBus::Cluster(e) => e.subscribe(),
        }
    }

    /// Events after `last_id` (from `Last-Event-ID`), or a gap.
    pub fn resume(&self, last_id: &str) -> Resume {
        match self {
            EventBus::Local(e) => e.resume(last_id),
            EventBus::Cluster(e) => e.resume(last_id),
        }
    }

    /// The SSE `id:` of an event.
    pub fn event_id(&self, seq: u64) -> String {
        match self {
            EventBus::Local(e) => e.event_id(seq),
            EventBus::Cluster(e) => e.event_id(seq),
        }
    }
}
