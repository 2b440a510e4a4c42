//! What every byte store must do, run in-process against each backend
//! (`ByteStore::Files` today). Crash points are simulated the way they
//! happen: bytes written past the last commit and never synced or
//! recorded (a process killed mid-append, a write that failed half way),
//! which the next append must cut off.

use std::sync::Arc;

use uuid::Uuid;

use crate::blocks::{BLOCK_SIZE, Blocks};
use crate::digest::{Algorithm, Sha256Stream};
use crate::ports::bytes::{ByteStore, Sink};

fn stores() -> Vec<(tempfile::TempDir, ByteStore)> {
    let dir = tempfile::tempdir().unwrap();
    let files = crate::backends::files::Files::open(dir.path()).unwrap();
    vec![(dir, ByteStore::Files(Arc::new(files)))]
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// Appends `bytes` at `start` as the upload pipeline does (blocks, then a
/// sync), and returns the sink for the caller to drop or truncate.
async fn append(store: &ByteStore, id: Uuid, start: u64, bytes: &[u8], sync: bool) -> Sink {
    let (mut sink, head) = store.open_append_blocking(id, start).unwrap();
    let blocks = Blocks::default();
    let mut block = blocks.first(start, &head).await.unwrap();
    for chunk in bytes.chunks(7_919) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = block.fill(rest);
            rest = &rest[n..];
            if block.is_full() {
                let next = block.offset() + BLOCK_SIZE as u64;
                sink.write_run(&[Arc::new(block)]).unwrap();
                block = blocks.next(next).await.unwrap();
            }
        }
    }
    if !block.unhashed().is_empty() {
        sink.write_run(&[Arc::new(block)]).unwrap();
    }
    if sync {
        sink.sync().unwrap();
    }
    sink
}

async fn read_all(store: &ByteStore, id: Uuid, start: u64, len: u64) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut stream = store.read(id, start, len).await.unwrap();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn appends_resume_at_the_committed_end_and_cut_what_came_after() {
    for (_dir, store) in stores() {
        let id = Uuid::now_v7();
        assert_eq!(store.len(id).await.unwrap(), 0, "nothing stored yet is zero bytes");
        let all = data(700_001, 1);
        drop(append(&store, id, 0, &all[..300_003], true).await);
        assert_eq!(store.len(id).await.unwrap(), 300_003);
        // Killed mid-append: bytes past the committed 300,003 were written, not recorded.
        drop(append(&store, id, 300_003, &data(500_000, 9), false).await);
        // The next append starts at the committed end; what followed is gone.
        drop(append(&store, id, 300_003, &all[300_003..], true).await);
        assert_eq!(store.len(id).await.unwrap(), all.len() as u64);
        assert!(read_all(&store, id, 0, all.len() as u64).await == all);
        assert!(read_all(&store, id, 4_095, 10_000).await == all[4_095..14_095]);
        assert_eq!(store.read_prefix(id, 8_192).await.unwrap(), &all[..8_192]);
        let mut h = Sha256Stream::default();
        h.update(&all[..250_000]);
        assert_eq!(store.hash_prefix_blocking(id, 250_000).unwrap().finalize_hex(), h.finalize_hex());
        let md5 = store.digest(id, 100, 1_000, Algorithm::Md5).await.unwrap();
        let mut expected = Algorithm::Md5.hasher();
        expected.update(&all[100..1_100]);
        assert_eq!(md5, expected.finalize());
        // Asking for more than is stored is an error, not a short answer.
        assert!(store.read_prefix(id, all.len() + 1).await.is_err());
    }
}

#[tokio::test]
async fn a_discarded_append_leaves_the_committed_bytes() {
    for (_dir, store) in stores() {
        let id = Uuid::now_v7();
        let first = data(5_000, 2);
        drop(append(&store, id, 0, &first, true).await);
        let sink = append(&store, id, 5_000, &data(20_000, 3), false).await;
        sink.truncate(5_000).unwrap();
        assert_eq!(store.len(id).await.unwrap(), 5_000);
        assert!(read_all(&store, id, 0, 5_000).await == first);
    }
}

#[tokio::test]
async fn concatenation_joins_exactly_the_parts_or_stores_nothing() {
    for (_dir, store) in stores() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (da, db) = (data(70_000, 4), data(1_234, 5));
        drop(append(&store, a, 0, &da, true).await);
        drop(append(&store, b, 0, &db, true).await);
        let sha = store.concatenate(c, vec![(a, 70_000), (b, 1_234)], 0).await.unwrap();
        let joined = [da.clone(), db.clone()].concat();
        let mut h = Sha256Stream::default();
        h.update(&joined);
        assert_eq!(sha.finalize_hex(), h.finalize_hex());
        assert!(read_all(&store, c, 0, joined.len() as u64).await == joined);
        // A part with fewer bytes than its length: refused, and the final has none.
        let d = Uuid::now_v7();
        assert!(store.concatenate(d, vec![(a, 70_000), (b, 5_000)], 0).await.is_err());
        assert!(!store.exists_blocking(d).unwrap());
        store.delete(c).await.unwrap();
        store.delete(c).await.unwrap();
        assert_eq!(store.len(c).await.unwrap(), 0);
    }
}
