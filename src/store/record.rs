//! The persistent state of one upload.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetInfo;
use crate::digest::Sha256Stream;

/// A byte position in an upload. The stored offset only ever counts bytes that
/// are durable on disk: it is written after the bytes are synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch; compact and ordered in the database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp::from(SystemTime::now())
    }
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }
    /// RFC 9110 IMF-fixdate, as `Upload-Expires` wants it.
    pub fn http_date(self) -> String {
        httpdate::fmt_http_date(self.to_system_time())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Timestamp(t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
    }
}

/// The concatenation role of an upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Concat {
    #[default]
    None,
    /// A piece of a later final upload; not an asset of its own.
    Partial,
    /// The concatenation of `parts`, in order. Its bytes exist once `assembled`.
    Final { parts: Vec<Uuid>, header: String, assembled: bool },
}

/// The protocol state of an upload, as stored in sled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: Uuid,
    /// The project whose key created it; requests from other projects get 404.
    #[serde(default)]
    pub project_id: Uuid,
    /// Declared total length; `None` while deferred (creation-defer-length).
    pub length: Option<u64>,
    pub offset: Offset,
    /// The `Upload-Metadata` header exactly as received (validated at creation).
    pub metadata: Option<String>,
    #[serde(default)]
    pub concat: Concat,
    pub created_at: Timestamp,
    /// Last change; unfinished uploads expire relative to it.
    pub updated_at: Timestamp,
    /// SHA-256 of the bytes `[0, offset)`.
    pub sha256: Sha256Stream,
    /// IETF draft uploads complete only when the client says so
    /// (`Upload-Complete: ?1`), not by reaching their length. A tus 1.0
    /// request on the upload clears this: tus completes implicitly.
    #[serde(default)]
    pub awaiting_completion: bool,
    /// What the bytes are. `None` for partial uploads, which are not assets.
    #[serde(default)]
    pub asset: Option<AssetInfo>,
}

impl UploadRecord {
    pub fn new(
        id: Uuid,
        project_id: Uuid,
        length: Option<u64>,
        metadata: Option<String>,
        concat: Concat,
    ) -> Self {
        let now = Timestamp::now();
        UploadRecord {
            id,
            project_id,
            asset: None,
            awaiting_completion: false,
            length,
            offset: Offset(0),
            metadata,
            concat,
            created_at: now,
            updated_at: now,
            sha256: Sha256Stream::default(),
        }
    }

    /// All bytes are stored (for a final upload: the parts are assembled).
    pub fn is_complete(&self) -> bool {
        match &self.concat {
            Concat::Final { assembled, .. } => *assembled,
            _ => self.length == Some(self.offset.0) && !self.awaiting_completion,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.concat, Concat::Final { .. })
    }

    pub fn is_partial(&self) -> bool {
        matches!(self.concat, Concat::Partial)
    }

    /// When an unfinished upload will be swept; `None` once complete.
    pub fn expires_at(&self, expire_after: Duration) -> Option<Timestamp> {
        (!self.is_complete()).then(|| self.updated_at.plus(expire_after))
    }
}

/// Why an upload id answers 410 Gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    Expired,
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub reason: GoneReason,
    pub at: Timestamp,
}
