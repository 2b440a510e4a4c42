//! Digests: the whole-upload SHA-256 that rides along with every write, and
//! the per-request checksums clients send (`Upload-Checksum`, `Content-Digest`).

use serde::{Deserialize, Serialize};
use sha2::Digest;
use sha2::block_api::compress256;

const H0: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256 whose state can be stored next to the upload's offset.
///
/// `sha2`'s hasher cannot be serialised, and without that an upload resumed
/// after a restart would need its whole prefix re-read to finish the digest.
/// This keeps the eight state words, the partial block and the length, and
/// uses `sha2`'s (SHA-NI accelerated) compression function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sha256Stream {
    state: [u32; 8],
    #[serde(with = "hex_bytes")]
    pending: Vec<u8>,
    len: u64,
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Sha256Stream { state: H0, pending: Vec::with_capacity(64), len: 0 }
    }
}

impl Sha256Stream {
    /// Bytes absorbed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block: [u8; 64] = self.pending[..].try_into().expect("64 bytes");
            compress256(&mut self.state, &[block]);
            self.pending.clear();
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            compress256(&mut self.state, blocks);
        }
        self.pending.extend_from_slice(rest);
    }

    pub fn finalize(&self) -> [u8; 32] {
        let mut state = self.state;
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        let (blocks, rest) = tail.as_chunks::<64>();
        debug_assert!(rest.is_empty());
        compress256(&mut state, blocks);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    pub fn finalize_hex(&self) -> String {
        hex::encode(self.finalize())
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Algorithms accepted in `Upload-Checksum` (tus) and `Content-Digest` (RFC 9530).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
    Md5,
}

impl Algorithm {
    /// Advertised in `Tus-Checksum-Algorithm`.
    pub const TUS_LIST: &'static str = "sha1,sha256,sha512,md5";

    pub fn from_tus_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            "md5" => Some(Algorithm::Md5),
            _ => None,
        }
    }

    pub fn hasher(self) -> ChunkHasher {
        match self {
            Algorithm::Sha1 => ChunkHasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => ChunkHasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => ChunkHasher::Sha512(sha2::Sha512::new()),
            Algorithm::Md5 => ChunkHasher::Md5(md5::Md5::new()),
        }
    }
}

/// A digest of one request body, compared with what the client claimed.
#[derive(Clone)]
pub enum ChunkHasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Md5(md5::Md5),
}

impl ChunkHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            ChunkHasher::Sha1(h) => h.update(data),
            ChunkHasher::Sha256(h) => h.update(data),
            ChunkHasher::Sha512(h) => h.update(data),
            ChunkHasher::Md5(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Vec<u8> {
        match self {
            ChunkHasher::Sha1(h) => h.finalize().to_vec(),
            ChunkHasher::Sha256(h) => h.finalize().to_vec(),
            ChunkHasher::Sha512(h) => h.finalize().to_vec(),
            ChunkHasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// A claimed digest of a request body, checked once the body is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedDigest {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha2_for_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let want = sha2::Sha256::digest(&data);
        for split in [0, 1, 55, 56, 63, 64, 65, 127, 128, 500, 999, 1000] {
            let mut h = Sha256Stream::default();
            h.update(&data[..split]);
            // A round trip through JSON stands for a restart between the two writes.
            let mut h: Sha256Stream = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
            h.update(&data[split..]);
            assert_eq!(h.finalize()[..], want[..], "split at {split}");
        }
        assert_eq!(
            Sha256Stream::default().finalize_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
