//! Signed download URLs: HMAC-SHA256 over the asset id and an expiry, with a
//! server secret generated once and kept in the data directory (or, for
//! several nodes, in their database). The signature
//! alone grants access, so the URL can be handed to a browser or a worker.

use std::io;
use std::path::Path;

use hmac::{KeyInit, Mac};
use uuid::Uuid;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub struct Signer {
    secret: Vec<u8>,
}

impl Signer {
    /// Signs with `secret` (from `ports::docs::Docs::signing_secret`: the
    /// data directory's `signing.key`, or the database's for every node).
    pub fn new(secret: Vec<u8>) -> Signer {
        Signer { secret }
    }

    /// Loads `<data-dir>/signing.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Signer> {
        crate::secrets::load_or_create_secret(&data_dir.join("signing.key")).map(Signer::new)
    }

    fn mac(&self, id: Uuid, expires: u64) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{id}:{expires}").as_bytes());
        mac
    }

    pub fn sign(&self, id: Uuid, expires: u64) -> String {
        hex::encode(self.mac(id, expires).finalize().into_bytes())
    }

    /// HMAC of `data` for one purpose (`domain`), so a signature made for
    /// one kind of URL is never valid for another.
    pub fn sign_bytes(&self, domain: &str, data: &[u8]) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Constant-time check of [`Signer::sign_bytes`].
    pub fn verify_bytes(&self, domain: &str, data: &[u8], signature: &[u8]) -> bool {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.verify_slice(signature).is_ok()
    }

    /// Constant-time check of a signature.
    pub fn verify(&self, id: Uuid, expires: u64, signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(sig) => self.mac(id, expires).verify_slice(&sig).is_ok(),
            Err(_) => false,
        }
    }
}
