//! How records and tombstones are stored: MessagePack with field names.
//!
//! Self-describing like the JSON it replaced, so the partial views (what
//! HEAD reads, the owner, the placement) decode from the same bytes without
//! building the rest, and a new optional field needs no migration; smaller
//! (uuids are 16 bytes instead of 38, numbers binary, no quotes), which is
//! what sled's cache and leaves are measured in.
//!
//! Values written before are JSON. They stay readable, told apart by their
//! first byte: a JSON object starts with `{` (0x7b, a positive fixint in
//! MessagePack, which no stored map starts with); they are rewritten in the
//! new form the next time the record changes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Result, SledError};

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v).map_err(|e| SledError::Corrupt(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(v: &[u8]) -> Result<T> {
    if v.first() == Some(&b'{') {
        serde_json::from_slice(v).map_err(|e| SledError::Corrupt(e.to_string()))
    } else {
        rmp_serde::from_slice(v).map_err(|e| SledError::Corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetInfo, AssetState, AssetType, Sniffed};
    use crate::record::{Concat, Offset, UploadRecord, UploadStatus};
    use uuid::Uuid;

    fn record() -> UploadRecord {
        let mut rec = UploadRecord::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            Some(1 << 20),
            Some("filename cGhvdG8uanBn".into()),
            Concat::Final {
                parts: vec![Uuid::now_v7(), Uuid::now_v7()],
                header: "final;a b".into(),
                assembled: true,
            },
        );
        rec.offset = Offset(4096);
        rec.sha256.update(&[7u8; 100]);
        let mut asset = AssetInfo::new(Some("photo.jpg".into()), Some("en".into()), Default::default());
        asset.sniffed = Some(Sniffed {
            kind: AssetType::Image,
            extension: Some("jpg".into()),
            content_type: "image/jpeg".into(),
        });
        asset.transition(AssetState::Processing).unwrap();
        asset.fail("bench", "failed for a test").unwrap();
        rec.asset = Some(asset);
        rec.token_id = Some("tok".into());
        rec.limits.max_size = Some(9);
        rec
    }

    #[test]
    fn round_trips_and_reads_what_json_wrote() {
        let rec = record();
        let packed = encode(&rec).unwrap();
        assert_eq!(decode::<UploadRecord>(&packed).unwrap(), rec);
        let json = serde_json::to_vec(&rec).unwrap();
        assert_eq!(decode::<UploadRecord>(&json).unwrap(), rec);
        assert!(packed.len() * 10 < json.len() * 8, "{} vs {} bytes", packed.len(), json.len());
        // A partial view decodes from either form alike.
        let a: UploadStatus = decode(&packed).unwrap();
        let b: UploadStatus = decode(&json).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert!(decode::<UploadRecord>(b"{not json").is_err());
        assert!(decode::<UploadRecord>(&[0xc1, 0x00]).is_err());
        assert!(decode::<UploadRecord>(&[]).is_err());
    }
}
