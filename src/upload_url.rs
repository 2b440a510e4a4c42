//! Signed upload URLs: the tus URL of one upload with a capability in its
//! query (`?access=…`), so a browser can continue (HEAD, PATCH) or cancel
//! (DELETE) that upload with no key. The capability names the upload, its
//! project, an expiry and the limits it was made with, all under one HMAC
//! of the server's signing key; changing any byte of it makes it invalid.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetType;
use crate::signing::Signer;

/// The query parameter that carries the capability.
pub const PARAM: &str = "access";
const DOMAIN: &str = "tusk upload url v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub id: Uuid,
    #[serde(rename = "p")]
    pub project_id: Uuid,
    /// Unix seconds.
    #[serde(rename = "exp")]
    pub expires: u64,
    #[serde(rename = "max", default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    #[serde(rename = "types", default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<AssetType>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// Not made by this server, or changed.
    Invalid,
    Expired,
}

impl Capability {
    /// The query value: `payload.signature`, both base64url.
    pub fn encode(&self, signer: &Signer) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("json"));
        let sig = URL_SAFE_NO_PAD.encode(signer.sign_bytes(DOMAIN, payload.as_bytes()));
        format!("{payload}.{sig}")
    }

    pub fn decode(signer: &Signer, value: &str, now_secs: u64) -> Result<Capability, CapabilityError> {
        let (payload, sig) = value.split_once('.').ok_or(CapabilityError::Invalid)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| CapabilityError::Invalid)?;
        if !signer.verify_bytes(DOMAIN, payload.as_bytes(), &sig) {
            return Err(CapabilityError::Invalid);
        }
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| CapabilityError::Invalid)?;
        let cap: Capability = serde_json::from_slice(&json).map_err(|_| CapabilityError::Invalid)?;
        if cap.expires <= now_secs {
            return Err(CapabilityError::Expired);
        }
        Ok(cap)
    }
}

/// The capability in a request's query, if there is one.
pub fn from_query(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(PARAM)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_capability_is_invalid_and_an_old_one_expired() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let cap = Capability {
            id: Uuid::now_v7(),
            project_id: Uuid::now_v7(),
            expires: 1000,
            max_size: Some(10),
            allowed_types: Some(vec![AssetType::Image]),
        };
        let v = cap.encode(&signer);
        assert_eq!(Capability::decode(&signer, &v, 999), Ok(cap.clone()));
        assert_eq!(Capability::decode(&signer, &v, 1000), Err(CapabilityError::Expired));
        let (payload, sig) = v.split_once('.').unwrap();
        let mut bigger = cap.clone();
        bigger.max_size = Some(10_000);
        let forged = format!("{}.{sig}", bigger.encode(&signer).split_once('.').unwrap().0);
        assert_eq!(Capability::decode(&signer, &forged, 0), Err(CapabilityError::Invalid));
        assert_eq!(Capability::decode(&signer, &format!("{payload}.AAAA"), 0), Err(CapabilityError::Invalid));
        assert_eq!(Capability::decode(&signer, "garbage", 0), Err(CapabilityError::Invalid));
        assert_eq!(from_query(Some("a=1&access=x.y")), Some("x.y"));
        assert_eq!(from_query(Some("accessible=1")), None);
    }
}
