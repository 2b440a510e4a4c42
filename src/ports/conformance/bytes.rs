//! What every byte store must do, run in-process against each backend:
//! files in a temporary directory, and a bucket in a real Garage that the
//! test starts (`scripts/garage-start`). Crash points are simulated the way they
//! happen: bytes written past the last commit and never synced or
//! recorded (a process killed mid-append, a write that failed half way),
//! which the next append must cut off.

use std::sync::Arc;

use uuid::Uuid;

use crate::backends::s3::store::{Layout, S3Store};
use crate::backends::s3::tests::Garage;
use crate::blocks::{BLOCK_SIZE, Blocks};
use crate::digest::{Algorithm, Sha256Stream};
use crate::ports::bytes::{ByteStore, Loc, Sink};
use tokio::task::block_in_place;

/// What keeps a store alive: its directory, or its Garage.
#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Garage(Garage),
}

/// Parts of 5 MiB (the least S3 allows), so a few MiB cross parts.
const PART: u64 = 5 << 20;

/// Every backend. Must run on a multi-threaded runtime: a bucket's blocking
/// calls wait on it (`block_in_place`).
fn stores() -> Vec<(Keep, ByteStore)> {
    let dir = tempfile::tempdir().unwrap();
    let files = crate::backends::files::Files::open(dir.path()).unwrap();
    let garage = Garage::start();
    let client = garage.client();
    let s3 =
        S3Store::new(client, Layout { prefix: "conformance/".into(), part_size: PART, buffer: 4 * PART });
    vec![
        (Keep::Dir(dir), ByteStore::Files(Arc::new(files))),
        (Keep::Garage(garage), ByteStore::S3(Arc::new(s3))),
    ]
}

fn loc() -> Loc {
    Loc { project: Uuid::now_v7(), id: Uuid::now_v7() }
}

fn sha_hex(bytes: &[u8]) -> String {
    let mut h = Sha256Stream::default();
    h.update(bytes);
    h.finalize_hex()
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// Appends `bytes` at `start` as the upload pipeline does (blocks, then a
/// sync), and returns the sink for the caller to drop or truncate.
async fn append(store: &ByteStore, id: Loc, start: u64, bytes: &[u8], sync: bool) -> Sink {
    // The body's length declared, as a PATCH with Content-Length does: a
    // bucket streams the parts it fills.
    append_declared(store, id, start, bytes, Some(start + bytes.len() as u64), sync).await
}

/// As [`append`], with the body declaring `declared_end` (it may stop short of it).
async fn append_declared(
    store: &ByteStore,
    id: Loc,
    start: u64,
    bytes: &[u8],
    declared_end: Option<u64>,
    sync: bool,
) -> Sink {
    let (mut sink, head) = block_in_place(|| store.open_append_blocking(id, start, declared_end)).unwrap();
    let blocks = Blocks::default();
    let mut block = blocks.first(start, &head).await.unwrap();
    for chunk in bytes.chunks(7_919) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = block.fill(rest);
            rest = &rest[n..];
            if block.is_full() {
                let next = block.offset() + BLOCK_SIZE as u64;
                block_in_place(|| sink.write_run(&[Arc::new(block)])).unwrap();
                block = blocks.next(next).await.unwrap();
            }
        }
    }
    if !block.unhashed().is_empty() {
        block_in_place(|| sink.write_run(&[Arc::new(block)])).unwrap();
    }
    if sync {
        block_in_place(|| sink.sync()).unwrap();
    }
    sink
}

async fn read_all(store: &ByteStore, id: Loc, start: u64, len: u64) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut stream = store.read(id, start, len).await.unwrap();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_resume_at_the_committed_end_and_cut_what_came_after() {
    for (_dir, store) in stores() {
        let id = loc();
        assert_eq!(store.len(id).await.unwrap(), 0, "nothing stored yet is zero bytes");
        let all = data(700_001, 1);
        drop(append(&store, id, 0, &all[..300_003], true).await);
        assert_eq!(store.len(id).await.unwrap(), 300_003);
        // Killed mid-append: bytes past the committed 300,003 were written, not recorded.
        drop(append(&store, id, 300_003, &data(500_000, 9), false).await);
        // The next append starts at the committed end; what followed is gone.
        drop(append(&store, id, 300_003, &all[300_003..], true).await);
        assert_eq!(store.len(id).await.unwrap(), all.len() as u64);
        // Sniffing reads the first bytes before the upload is finished.
        assert_eq!(store.read_prefix(id, 8_192).await.unwrap(), &all[..8_192]);
        store.finish(id, all.len() as u64, "application/pdf", &sha_hex(&all)).await.unwrap();
        assert_eq!(store.len(id).await.unwrap(), all.len() as u64);
        assert!(read_all(&store, id, 0, all.len() as u64).await == all);
        assert!(read_all(&store, id, 4_095, 10_000).await == all[4_095..14_095]);
        if let ByteStore::S3(s3) = &store {
            // Less than a part: the object is its tail, copied with the metadata.
            let key = s3.key(id.project, id.id);
            let headers = s3.client().head_headers(&key).await.unwrap().expect("the object");
            assert_eq!(headers["content-type"], "application/pdf");
            assert_eq!(headers["x-amz-meta-sha256"].to_str().unwrap(), sha_hex(&all));
            let left: Vec<_> =
                s3.client().list_objects(&key).await.unwrap().into_iter().map(|o| o.0).collect();
            assert_eq!(left, vec![key.clone()], "only the object is left, no tail");
        }
        assert_eq!(store.read_prefix(id, 8_192).await.unwrap(), &all[..8_192]);
        let mut h = Sha256Stream::default();
        h.update(&all[..250_000]);
        assert_eq!(
            block_in_place(|| store.hash_prefix_blocking(id, 250_000)).unwrap().finalize_hex(),
            h.finalize_hex()
        );
        let md5 = store.digest(id, 100, 1_000, Algorithm::Md5).await.unwrap();
        let mut expected = Algorithm::Md5.hasher();
        expected.update(&all[100..1_100]);
        assert_eq!(md5, expected.finalize());
        // Asking for more than is stored is an error, not a short answer.
        assert!(store.read_prefix(id, all.len() + 1).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_append_leaves_the_committed_bytes() {
    for (_dir, store) in stores() {
        let id = loc();
        let first = data(5_000, 2);
        drop(append(&store, id, 0, &first, true).await);
        let mut sink = append(&store, id, 5_000, &data(20_000, 3), true).await;
        block_in_place(|| sink.truncate(5_000)).unwrap();
        drop(sink);
        assert_eq!(store.len(id).await.unwrap(), 5_000);
        store.finish(id, 5_000, "application/octet-stream", &sha_hex(&first)).await.unwrap();
        assert!(read_all(&store, id, 0, 5_000).await == first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concatenation_joins_exactly_the_parts_or_stores_nothing() {
    for (_dir, store) in stores() {
        let project = Uuid::now_v7();
        let at = |id| Loc { project, id };
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (da, db) = (data(70_000, 4), data(1_234, 5));
        drop(append(&store, at(a), 0, &da, true).await);
        drop(append(&store, at(b), 0, &db, true).await);
        // Partial uploads are finished when their last byte arrives.
        store.finish(at(a), 70_000, "application/octet-stream", &sha_hex(&da)).await.unwrap();
        store.finish(at(b), 1_234, "application/octet-stream", &sha_hex(&db)).await.unwrap();
        let sha = store.concatenate(at(c), vec![(a, 70_000), (b, 1_234)], 0).await.unwrap();
        let joined = [da.clone(), db.clone()].concat();
        let mut h = Sha256Stream::default();
        h.update(&joined);
        assert_eq!(sha.finalize_hex(), h.finalize_hex());
        store
            .finish(at(c), joined.len() as u64, "application/octet-stream", &sha.finalize_hex())
            .await
            .unwrap();
        assert!(read_all(&store, at(c), 0, joined.len() as u64).await == joined);
        // A part with fewer bytes than its length: refused, and the final has none.
        let d = Uuid::now_v7();
        assert!(store.concatenate(at(d), vec![(a, 70_000), (b, 5_000)], 0).await.is_err());
        assert!(!block_in_place(|| store.exists_blocking(at(d))).unwrap());
        store.delete(at(c)).await.unwrap();
        store.delete(at(c)).await.unwrap();
        assert_eq!(store.len(at(c)).await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_across_parts_resume_after_a_crash_and_finish_whole() {
    for (_keep, store) in stores() {
        let id = loc();
        // 2.4 parts, in appends that end inside parts and on a part's edge.
        let all = data((PART * 2 + PART * 2 / 5) as usize, 6);
        let cuts = [0, 3_000_001, PART as usize, PART as usize * 2 - 17, all.len()];
        for w in cuts.windows(2) {
            drop(append(&store, id, w[0] as u64, &all[w[0]..w[1]], true).await);
            // A bucket's parts written past a commit stay until written
            // again, so only a file's length is the offset before the end.
            if store.length_is_offset() {
                assert_eq!(store.len(id).await.unwrap(), w[1] as u64, "after appending up to {}", w[1]);
            }
            if w[1] < all.len() {
                // Killed mid-append, past the next part's edge: nothing recorded.
                drop(append(&store, id, w[1] as u64, &data(PART as usize + 10, 7), false).await);
            }
        }
        assert_eq!(store.read_prefix(id, 8_192).await.unwrap(), &all[..8_192]);
        store.finish(id, all.len() as u64, "video/mp4", &sha_hex(&all)).await.unwrap();
        // Repeating it (a retry after a crash) changes nothing.
        store.finish(id, all.len() as u64, "video/mp4", &sha_hex(&all)).await.unwrap();
        assert_eq!(store.len(id).await.unwrap(), all.len() as u64);
        assert!(read_all(&store, id, 0, all.len() as u64).await == all);
        let middle = PART - 100;
        assert!(read_all(&store, id, middle, 200).await == all[middle as usize..middle as usize + 200]);
        if let ByteStore::S3(s3) = &store {
            let key = s3.key(id.project, id.id);
            let headers = s3.client().head_headers(&key).await.unwrap().expect("the object");
            assert_eq!(headers["content-type"], "video/mp4");
            assert_eq!(headers["x-amz-meta-sha256"].to_str().unwrap(), sha_hex(&all));
            let left: Vec<_> =
                s3.client().list_objects(&key).await.unwrap().into_iter().map(|o| o.0).collect();
            assert_eq!(left, vec![key.clone()], "only the object is left, no tails");
            assert!(s3.client().list_multipart(&key).await.unwrap().is_empty());
        }
        store.delete(id).await.unwrap();
        assert!(!block_in_place(|| store.exists_blocking(id)).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_stop_short_of_their_length_keep_what_arrived() {
    for (_keep, store) in stores() {
        let id = loc();
        let all = data((PART * 3 + 1234) as usize, 8);
        // A body declared to bring everything, cut 1.5 parts in (a client
        // gone mid-PATCH): what arrived is kept, in a part and a tail.
        let cut = (PART + PART / 2) as usize;
        let end = Some(all.len() as u64);
        drop(append_declared(&store, id, 0, &all[..cut], end, true).await);
        // The retry declares the rest and stops again, 7 bytes short of a
        // part's edge; then one without a length (chunked) brings a part and
        // a bit; then the last.
        let second = (PART * 2) as usize - 7;
        drop(append_declared(&store, id, cut as u64, &all[cut..second], end, true).await);
        let third = (PART * 3) as usize + 5;
        drop(append_declared(&store, id, second as u64, &all[second..third], None, true).await);
        drop(append(&store, id, third as u64, &all[third..], true).await);
        store.finish(id, all.len() as u64, "application/octet-stream", &sha_hex(&all)).await.unwrap();
        assert_eq!(store.len(id).await.unwrap(), all.len() as u64);
        assert!(read_all(&store, id, 0, all.len() as u64).await == all, "the bytes, exactly");
        store.delete(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_upload_finishes_as_an_empty_object() {
    for (_keep, store) in stores() {
        let id = loc();
        store.finish(id, 0, "application/octet-stream", &sha_hex(b"")).await.unwrap();
        assert_eq!(store.len(id).await.unwrap(), 0);
        assert!(read_all(&store, id, 0, 0).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concatenation_of_parts_larger_than_a_part_size() {
    for (_keep, store) in stores() {
        let project = Uuid::now_v7();
        let at = |id| Loc { project, id };
        // Whole parts (copied on a bucket's side), a part and a bit, a bit.
        let sizes = [2 * PART as usize, PART as usize + 100, 3_000];
        let mut pieces = Vec::new();
        let mut joined = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let id = Uuid::now_v7();
            let bytes = data(*n, 20 + i as u32);
            drop(append(&store, at(id), 0, &bytes, true).await);
            store.finish(at(id), *n as u64, "application/octet-stream", &sha_hex(&bytes)).await.unwrap();
            joined.extend_from_slice(&bytes);
            pieces.push((id, *n as u64));
        }
        let c = Uuid::now_v7();
        let sha = store.concatenate(at(c), pieces, 0).await.unwrap();
        assert_eq!(sha.finalize_hex(), sha_hex(&joined));
        assert_eq!(
            store.read_prefix(at(c), 8_192).await.unwrap(),
            &joined[..8_192],
            "readable before finish"
        );
        store
            .finish(at(c), joined.len() as u64, "application/octet-stream", &sha.finalize_hex())
            .await
            .unwrap();
        assert!(read_all(&store, at(c), 0, joined.len() as u64).await == joined);
    }
}
