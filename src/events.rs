//! Asset events: what changed, for `GET /v1/events` (and later webhooks).
//! The event bus port (`ports::events`) carries them.

use uuid::Uuid;

use crate::record::UploadRecord;

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
}
