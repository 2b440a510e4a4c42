//! The persistent state of one upload.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetInfo;
use crate::asset::AssetType;
use crate::digest::Sha256Stream;
pub use crate::time::Timestamp;
use crate::usage::Share;

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

/// Limits kept with an upload (those of the credential or request that made it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// `None`: any type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<AssetType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<u64>,
}

impl UploadLimits {
    pub fn is_empty(&self) -> bool {
        *self == UploadLimits::default()
    }

    /// Both sets of limits at once.
    pub fn and(&self, other: &UploadLimits) -> UploadLimits {
        UploadLimits {
            max_size: min(self.max_size, other.max_size),
            allowed_types: match (&self.allowed_types, &other.allowed_types) {
                (Some(a), Some(b)) => Some(a.iter().filter(|t| b.contains(t)).copied().collect()),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
            max_duration: min(self.max_duration, other.max_duration),
        }
    }

    pub fn allows(&self, kind: AssetType) -> bool {
        self.allowed_types.as_ref().is_none_or(|t| t.contains(&kind))
    }

    /// "image, video" for messages.
    pub fn types_list(&self) -> String {
        match &self.allowed_types {
            None => "any type".into(),
            Some(t) if t.is_empty() => "no type".into(),
            Some(t) => t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
        }
    }
}

fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
    /// Limits it was created with (an upload token's, or `POST /v1/assets` fields).
    #[serde(default, skip_serializing_if = "UploadLimits::is_empty")]
    pub limits: UploadLimits,
    /// How long its signed upload URL lasts each time the asset is read
    /// (`expires_in` of `POST /v1/assets`); `--upload-url-ttl` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_ttl_secs: Option<u64>,
    /// The upload token that created it: only that token may continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Why its bytes were refused and removed (a type not allowed); every
    /// later request is answered with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Its offset was last stored without a flush of the metadata, riding on
    /// the sync of the data file instead (see `uploads::append`): after a
    /// crash the stored offset may be behind the bytes acknowledged, and
    /// start-up takes the synced file's length (`uploads::resume`). Made
    /// false, durably, before bytes that must be verified first are written
    /// past the offset, so unverified bytes are never taken that way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lazy: bool,
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
            limits: UploadLimits::default(),
            token_id: None,
            url_ttl_secs: None,
            refused: None,
            lazy: false,
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
        complete(&self.concat, self.length, self.offset, self.awaiting_completion)
    }

    pub fn is_final(&self) -> bool {
        matches!(self.concat, Concat::Final { .. })
    }

    pub fn is_partial(&self) -> bool {
        matches!(self.concat, Concat::Partial)
    }

    /// When an unfinished upload will be swept; `None` once complete (or
    /// refused: its failed asset stays).
    pub fn expires_at(&self, expire_after: Duration) -> Option<Timestamp> {
        (!self.is_complete() && self.refused.is_none()).then(|| self.updated_at.plus(expire_after))
    }
}

pub(crate) fn complete(
    concat: &Concat,
    length: Option<u64>,
    offset: Offset,
    awaiting_completion: bool,
) -> bool {
    match concat {
        Concat::Final { assembled, .. } => *assembled,
        _ => length == Some(offset.0) && !awaiting_completion,
    }
}

/// The part of an [`UploadRecord`] that HEAD answers from, decoded from the
/// same stored JSON without the digest state and the asset description
/// (those are skipped, not built: about a tenth of a HEAD's CPU).
#[derive(Clone, Debug, Deserialize)]
pub struct UploadStatus {
    #[serde(default)]
    pub project_id: Uuid,
    pub length: Option<u64>,
    pub offset: Offset,
    pub metadata: Option<String>,
    #[serde(default)]
    pub concat: Concat,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub awaiting_completion: bool,
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub refused: Option<String>,
}

impl UploadStatus {
    /// As [`UploadRecord::expires_at`].
    pub fn expires_at(&self, expire_after: Duration) -> Option<Timestamp> {
        let done = complete(&self.concat, self.length, self.offset, self.awaiting_completion);
        (!done && self.refused.is_none()).then(|| self.updated_at.plus(expire_after))
    }

    pub fn owner(&self) -> Owner {
        Owner { project_id: self.project_id, token_id: self.token_id.clone() }
    }
}

impl UploadRecord {
    pub fn owner(&self) -> Owner {
        Owner { project_id: self.project_id, token_id: self.token_id.clone() }
    }

    /// What it counts in its project's usage: its durable bytes, whether it
    /// is an asset, whether it is still in flight (refused ones are not).
    pub fn share(&self) -> Share {
        Share {
            bytes: self.offset.0,
            asset: self.asset.is_some(),
            in_flight: !self.is_complete() && self.refused.is_none(),
        }
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
    /// Whose upload it was: other projects get 404, as for an unknown id.
    /// `None` in tombstones written before it was kept (answered 404 too).
    #[serde(default)]
    pub project_id: Option<Uuid>,
}

/// Only the owner of a stored upload, decoded without the rest.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Owner {
    #[serde(default)]
    pub project_id: Uuid,
    /// The upload token that created it, if one did.
    #[serde(default)]
    pub token_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HEAD's partial decode reads the same values as the whole record, for
    /// every concatenation role and completion state.
    #[test]
    fn status_agrees_with_the_record() {
        let day = Duration::from_secs(86_400);
        let parts = vec![Uuid::now_v7(), Uuid::now_v7()];
        let roles = [
            Concat::None,
            Concat::Partial,
            Concat::Final { parts, header: "final;/files/a /files/b".into(), assembled: false },
        ];
        for concat in roles {
            for (length, offset, awaiting) in
                [(Some(10), 4, false), (Some(10), 10, false), (Some(10), 10, true), (None, 3, false)]
            {
                let mut rec = UploadRecord::new(
                    Uuid::now_v7(),
                    Uuid::now_v7(),
                    length,
                    Some("filename YS5iaW4=".into()),
                    concat.clone(),
                );
                rec.offset = Offset(offset);
                rec.awaiting_completion = awaiting;
                let json = serde_json::to_vec(&rec).unwrap();
                let st: UploadStatus = serde_json::from_slice(&json).unwrap();
                assert_eq!(st.project_id, rec.project_id);
                assert_eq!((st.length, st.offset, &st.metadata), (rec.length, rec.offset, &rec.metadata));
                assert_eq!(st.concat, rec.concat);
                assert_eq!(st.expires_at(day), rec.expires_at(day), "{rec:?}");
            }
        }
    }
}
