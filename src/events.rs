//! Asset events: what changed, for `GET /v1/events` (and later webhooks).
//! The event bus port (`ports::events`) carries them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::record::UploadRecord;

/// At most one progress event per asset this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Throttles progress events per asset, for every event bus alike.
#[derive(Default)]
pub struct ProgressGate {
    last: Mutex<HashMap<Uuid, Instant>>,
}

impl ProgressGate {
    /// Whether a progress event for `rec` is due now (and counts it sent).
    pub fn due(&self, rec: &UploadRecord) -> bool {
        if rec.asset.is_none() || rec.is_complete() {
            return false;
        }
        let mut last = self.last.lock().expect("progress");
        let now = Instant::now();
        if last.get(&rec.id).is_some_and(|t| now.duration_since(*t) < PROGRESS_EVERY) {
            return false;
        }
        last.insert(rec.id, now);
        true
    }

    /// Another kind of event for the asset: its throttle starts over.
    pub fn forget(&self, id: Uuid) {
        self.last.lock().expect("progress").remove(&id);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Created,
    Progress,
    Processing,
    Ready,
    Failed,
    Deleted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Created => "asset.created",
            Kind::Progress => "asset.progress",
            Kind::Processing => "asset.processing",
            Kind::Ready => "asset.ready",
            Kind::Failed => "asset.failed",
            Kind::Deleted => "asset.deleted",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: Kind,
    pub project: Uuid,
    /// The asset as it was when the event happened (rendered per subscriber,
    /// since URLs depend on how the subscriber reached the server).
    pub record: UploadRecord,
}

/// Where a resumed stream starts.
pub enum Resume {
    /// Replay these, then go live.
    From(Vec<std::sync::Arc<Event>>),
    /// The id is unknown or too old: the client must refetch the list.
    Gap,
    /// The id is a little newer than this node has read so far (another
    /// node made the event a moment ago): nothing to replay, and live
    /// events up to it were seen already.
    Ahead(u64),
}
