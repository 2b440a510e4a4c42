//! Assets: what an upload *is*. Every upload (except the partial pieces of a
//! concatenation) is an asset with the same id, sniffed from its first bytes,
//! measured once complete, and read through the `/v1` API.

mod bytes;
pub mod lang;
pub mod probe;
pub mod sniff;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
pub use sniff::{AssetType, Sniffed};

/// Sniffing waits for this many bytes (or the whole upload): formats such as
/// DOCX and TAR are told apart only beyond the first few bytes.
pub const SNIFF_BYTES: u64 = 8192;

/// `pending_upload → processing → ready | failed`, or `pending_upload → failed`
/// for bytes refused as they arrive; no other moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    PendingUpload,
    Processing,
    Ready,
    Failed,
}

impl AssetState {
    pub const ALL: [AssetState; 4] =
        [AssetState::PendingUpload, AssetState::Processing, AssetState::Ready, AssetState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetState::PendingUpload => "pending_upload",
            AssetState::Processing => "processing",
            AssetState::Ready => "ready",
            AssetState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn can_become(self, next: AssetState) -> bool {
        use AssetState::*;
        // An upload refused at its first bytes fails without processing.
        matches!(
            (self, next),
            (PendingUpload, Processing)
                | (PendingUpload, Failed)
                | (Processing, Ready)
                | (Processing, Failed)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetError {
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub struct IllegalTransition {
    pub from: AssetState,
    pub to: AssetState,
}

/// The asset part of an upload record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetInfo {
    pub state: AssetState,
    pub name: Option<String>,
    /// ISO 639-1 hint given at creation; immutable.
    pub language: Option<String>,
    /// The client's metadata as a string map, exactly as sent.
    pub metadata: BTreeMap<String, String>,
    pub sniffed: Option<Sniffed>,
    pub duration_seconds: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub error: Option<AssetError>,
    pub updated_at: Timestamp,
}

impl AssetInfo {
    pub fn new(name: Option<String>, language: Option<String>, metadata: BTreeMap<String, String>) -> Self {
        AssetInfo {
            state: AssetState::PendingUpload,
            name,
            language,
            metadata,
            sniffed: None,
            duration_seconds: None,
            width: None,
            height: None,
            error: None,
            updated_at: Timestamp::now(),
        }
    }

    pub fn transition(&mut self, next: AssetState) -> Result<(), IllegalTransition> {
        if !self.state.can_become(next) {
            return Err(IllegalTransition { from: self.state, to: next });
        }
        self.state = next;
        self.updated_at = Timestamp::now();
        Ok(())
    }

    pub fn fail(&mut self, code: &str, message: impl Into<String>) -> Result<(), IllegalTransition> {
        self.transition(AssetState::Failed)?;
        self.error = Some(AssetError { code: code.to_string(), message: message.into() });
        Ok(())
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T08:39:23.123Z`.
pub fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_millis(t.to_system_time()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use AssetState::*;
        assert!(PendingUpload.can_become(Processing));
        assert!(Processing.can_become(Ready) && Processing.can_become(Failed));
        assert!(
            !Failed.can_become(Processing) && !Ready.can_become(Failed) && !PendingUpload.can_become(Ready)
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Timestamp(1_795_336_763_123)), "2026-11-22T08:39:23.123Z");
        assert_eq!(rfc3339(Timestamp(951_782_400_000)), "2000-02-29T00:00:00.000Z");
    }
}
