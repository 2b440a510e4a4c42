//! Where a record sits in the sled indexes (`index`) and what it has
//! settled into its project's usage: computed from a whole record or from
//! the few fields a stored one decodes to.

use serde::Deserialize;

use crate::asset::{AssetState, AssetType};
use crate::record::{Concat, Offset, UploadRecord, complete};
use crate::usage::Share;

/// Where a record sits in the metadata indexes and what it has settled into
/// its project's usage; `SledMeta::put` moves both when this changes, in one
/// transaction with the record. Computed alike from a whole record and from
/// the few fields [`PlacementView`] decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// [`group`] code: in flight, or the asset's state; `NOT_INDEXED` for a finished partial.
    pub group: u8,
    /// The sniffed type's code, `KIND_UNKNOWN` before sniffing, `KIND_PARTIAL` for partials.
    pub kind: u8,
    /// What the record counts in its project's usage once it is no longer in
    /// flight (counted at start-up from the stored counters, not by a scan).
    /// Zero while in flight: those are counted from their index entries.
    pub settled: Share,
    /// For the `IN_FLIGHT` group, what start-up needs of the upload, kept as
    /// the value of its index entry so start-up reads no record at all.
    pub entry: Option<InFlight>,
}

/// An `IN_FLIGHT` index entry's value: 8 bytes of offset, 1 of flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub offset: Offset,
    /// Every byte is in (an asset `pending_upload` whose processing has not started).
    pub complete: bool,
}

impl InFlight {
    pub fn encode(&self) -> [u8; 9] {
        let mut v = [0u8; 9];
        v[..8].copy_from_slice(&self.offset.0.to_be_bytes());
        v[8] = u8::from(self.complete);
        v
    }

    pub fn decode(v: &[u8]) -> Option<InFlight> {
        let offset = Offset(u64::from_be_bytes(v.get(..8)?.try_into().ok()?));
        Some(InFlight { offset, complete: *v.get(8)? & 1 == 1 })
    }
}

/// Index group codes: the first byte of a `by_state` key.
pub mod group {
    /// Unfinished uploads (assets waiting for bytes and partials) and assets
    /// still `pending_upload`: what start-up must look at.
    pub const IN_FLIGHT: u8 = 0;
    pub const PROCESSING: u8 = 1;
    pub const READY: u8 = 2;
    pub const FAILED: u8 = 3;
    pub const NOT_INDEXED: u8 = 0xFF;
}

pub const KIND_UNKNOWN: u8 = 0xF0;
pub const KIND_PARTIAL: u8 = 0xFE;

/// The group an asset in `state` is listed under.
pub fn state_group(state: AssetState) -> u8 {
    match state {
        AssetState::PendingUpload => group::IN_FLIGHT,
        AssetState::Processing => group::PROCESSING,
        AssetState::Ready => group::READY,
        AssetState::Failed => group::FAILED,
    }
}

pub fn kind_code(kind: AssetType) -> u8 {
    AssetType::ALL.iter().position(|k| *k == kind).expect("every type is in ALL") as u8
}

fn placement(
    complete: bool,
    refused: bool,
    offset: Offset,
    asset: Option<(AssetState, Option<AssetType>)>,
) -> Placement {
    let in_flight = !complete && !refused;
    let share = Share { bytes: offset.0, asset: asset.is_some(), in_flight };
    let group = match asset {
        _ if in_flight => group::IN_FLIGHT,
        Some((state, _)) => state_group(state),
        None => group::NOT_INDEXED,
    };
    let kind = match asset {
        None => KIND_PARTIAL,
        Some((_, None)) => KIND_UNKNOWN,
        Some((_, Some(k))) => kind_code(k),
    };
    let entry = (group == group::IN_FLIGHT).then_some(InFlight { offset, complete });
    Placement { group, kind, settled: if in_flight { Share::default() } else { share }, entry }
}

impl UploadRecord {
    pub fn placement(&self) -> Placement {
        placement(
            self.is_complete(),
            self.refused.is_some(),
            self.offset,
            self.asset.as_ref().map(|a| (a.state, a.sniffed.as_ref().map(|s| s.kind))),
        )
    }
}

/// The fields of a stored record that decide its [`Placement`], decoded
/// without the rest (each `put` reads the stored one to compare).
#[derive(Deserialize)]
pub struct PlacementView {
    length: Option<u64>,
    offset: Offset,
    #[serde(default)]
    concat: Concat,
    #[serde(default)]
    awaiting_completion: bool,
    #[serde(default)]
    refused: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    asset: Option<AssetView>,
}

#[derive(Deserialize)]
struct AssetView {
    state: AssetState,
    #[serde(default)]
    sniffed: Option<SniffedView>,
}

#[derive(Deserialize)]
struct SniffedView {
    kind: AssetType,
}

impl PlacementView {
    pub fn placement(&self) -> Placement {
        placement(
            complete(&self.concat, self.length, self.offset, self.awaiting_completion),
            self.refused.is_some(),
            self.offset,
            self.asset.as_ref().map(|a| (a.state, a.sniffed.as_ref().map(|s| s.kind))),
        )
    }
}
