//! What every metadata store must do (`MetaStore::Sled` and
//! `MetaStore::Postgres`, on a cluster each test starts), through the port
//! alone. Crash points are simulated where a backend can be left
//! half-way: a creation whose index entry was written without its record,
//! and a store reopened after its writes were flushed.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::postgres::PgCluster;
use crate::asset::sniff::Sniffed;
use crate::asset::{AssetInfo, AssetState, AssetType};
use crate::backends::pg_meta::PgMeta;
use crate::backends::sled_meta::SledMeta;
use crate::ports::meta::MetaStore;
use crate::record::{Concat, GoneReason, Offset, UploadRecord};
use crate::time::Timestamp;

type HalfCreated = for<'a> fn(&'a MetaStore, &'a UploadRecord) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One backend under test: how to (re)open it on the same storage, and how
/// to leave a creation half done as a crash between its writes would.
struct Backend {
    _dir: tempfile::TempDir,
    _cluster: Option<PgCluster>,
    open: Box<dyn Fn() -> MetaStore>,
    half_created: HalfCreated,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let sled = Backend {
        _dir: dir,
        _cluster: None,
        open: Box::new(move || MetaStore::Sled(Arc::new(SledMeta::open(&path).unwrap()))),
        half_created: |meta, rec| {
            Box::pin(async move {
                if let MetaStore::Sled(s) = meta {
                    s.leave_entry_without_record(rec)
                }
            })
        },
    };
    // The schema made once, on a runtime of its own (the tests' `open` is
    // not async); each open is then a new pool on the same database.
    let cluster = PgCluster::start();
    let url = cluster.url.clone();
    std::thread::spawn({
        let url = url.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(PgMeta::connect(&url)).map(drop).map_err(|e| e.to_string())
        }
    })
    .join()
    .unwrap()
    .unwrap();
    let postgres = Backend {
        _dir: tempfile::tempdir().unwrap(),
        _cluster: Some(cluster),
        open: Box::new(move || MetaStore::Postgres(Arc::new(PgMeta::connect_lazily(&url).unwrap()))),
        half_created: |meta, rec| {
            Box::pin(async move {
                if let MetaStore::Postgres(p) = meta {
                    p.leave_entry_without_record(rec).await
                }
            })
        },
    };
    vec![sled, postgres]
}

fn asset(project: Uuid, length: u64) -> UploadRecord {
    let mut rec = UploadRecord::new(Uuid::now_v7(), project, Some(length), None, Concat::None);
    rec.asset = Some(AssetInfo::new(Some("a.bin".into()), None, [("k".to_string(), "v".to_string())].into()));
    rec
}

fn sniff(rec: &mut UploadRecord, kind: AssetType) {
    let content_type = "application/octet-stream".into();
    rec.asset.as_mut().unwrap().sniffed = Some(Sniffed { kind, extension: None, content_type });
}

/// Moves an asset to `state` the way the server does (all bytes first).
fn reach(rec: &mut UploadRecord, state: AssetState) {
    rec.offset = Offset(rec.length.unwrap());
    let a = rec.asset.as_mut().unwrap();
    match state {
        AssetState::PendingUpload => {}
        AssetState::Processing => a.transition(AssetState::Processing).unwrap(),
        AssetState::Ready | AssetState::Failed => {
            a.transition(AssetState::Processing).unwrap();
            a.transition(state).unwrap();
        }
    }
}

async fn list_all(
    meta: &MetaStore,
    project: Uuid,
    state: Option<AssetState>,
    kind: Option<AssetType>,
) -> Vec<Uuid> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let page = meta.list_assets(project, cursor, 4, state, kind).await.unwrap();
        assert!(page.assets.len() <= 4);
        out.extend(page.assets.iter().map(|r| r.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn records_round_trip_and_survive_a_reopen() {
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let mut rec = asset(project, 100);
        rec.token_id = Some("tok".into());
        meta.insert_new(&rec).await.unwrap();
        assert_eq!(meta.get(rec.id).await.unwrap().as_ref(), Some(&rec));
        rec.offset = Offset(40);
        rec.updated_at = Timestamp::now();
        meta.put(&rec).await.unwrap();
        meta.flush().await.unwrap();

        let status = meta.status(rec.id).await.unwrap().unwrap();
        assert_eq!((status.project_id, status.offset, status.length), (project, Offset(40), Some(100)));
        let owner = meta.owner(rec.id).await.unwrap().unwrap();
        assert_eq!((owner.project_id, owner.token_id.as_deref()), (project, Some("tok")));
        assert!(meta.contains(rec.id).await.unwrap());
        assert_eq!(meta.get(Uuid::now_v7()).await.unwrap(), None);

        drop(meta);
        let meta = (b.open)();
        assert_eq!(meta.get(rec.id).await.unwrap(), Some(rec), "flushed writes outlive the store");
    }
}

#[tokio::test]
async fn a_removal_leaves_a_tombstone_until_it_is_pruned() {
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let rec = asset(project, 10);
        meta.insert_new(&rec).await.unwrap();
        let removed = meta.remove(rec.id, GoneReason::Terminated).await.unwrap();
        assert_eq!(removed.map(|r| r.id), Some(rec.id));
        assert_eq!(meta.get(rec.id).await.unwrap(), None);
        assert!(!meta.contains(rec.id).await.unwrap());
        assert!(meta.remove(rec.id, GoneReason::Terminated).await.unwrap().is_none(), "idempotent");
        let stone = meta.tombstone(rec.id).await.unwrap().unwrap();
        assert_eq!((stone.reason, stone.project_id), (GoneReason::Terminated, Some(project)));
        assert!(meta.list_assets(project, None, 10, None, None).await.unwrap().assets.is_empty());

        assert_eq!(meta.prune_tombstones(Timestamp(stone.at.0)).await.unwrap(), 0, "not older yet");
        assert_eq!(meta.prune_tombstones(Timestamp(stone.at.0 + 1)).await.unwrap(), 1);
        assert_eq!(meta.tombstone(rec.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn lists_are_newest_first_filtered_by_state_and_type_and_paged() {
    for b in backends() {
        let meta = (b.open)();
        let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
        let mut all: Vec<UploadRecord> = Vec::new();
        let states = AssetState::ALL;
        let kinds = [AssetType::Image, AssetType::Video, AssetType::Audio];
        for i in 0..30usize {
            let mut rec = asset(if i % 6 == 5 { theirs } else { mine }, 8);
            meta.insert_new(&rec).await.unwrap();
            if i % 4 != 3 {
                sniff(&mut rec, kinds[i % kinds.len()]);
            }
            if i % 7 == 0 {
                rec.offset = Offset(3); // still uploading
            } else {
                reach(&mut rec, states[i % states.len()]);
            }
            meta.put(&rec).await.unwrap();
            all.push(rec);
        }
        // Partials are not assets: never listed.
        let partial = UploadRecord::new(Uuid::now_v7(), mine, Some(5), None, Concat::Partial);
        meta.insert_new(&partial).await.unwrap();

        for state in states.map(Some).into_iter().chain([None]) {
            for kind in kinds.map(Some).into_iter().chain([None]) {
                let mut want: Vec<Uuid> = all
                    .iter()
                    .filter(|r| r.project_id == mine)
                    .filter(|r| {
                        let a = r.asset.as_ref().unwrap();
                        state.is_none_or(|s| a.state == s)
                            && kind.is_none_or(|k| a.sniffed.as_ref().is_some_and(|x| x.kind == k))
                    })
                    .map(|r| r.id)
                    .collect();
                want.sort_unstable_by(|a, b| b.cmp(a));
                assert_eq!(list_all(&meta, mine, state, kind).await, want, "{state:?} {kind:?}");
            }
        }
        let theirs_listed = list_all(&meta, theirs, None, None).await;
        assert_eq!(theirs_listed.len(), all.iter().filter(|r| r.project_id == theirs).count());
        assert!(meta.list_assets(Uuid::now_v7(), None, 10, None, None).await.unwrap().assets.is_empty());
    }
}

#[tokio::test]
async fn start_up_names_only_what_must_be_resumed() {
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let fresh = asset(project, 10);
        let mut started = asset(project, 10);
        let mut complete = asset(project, 10);
        let mut processing = asset(project, 10);
        let mut ready = asset(project, 10);
        for rec in [&fresh, &started, &complete, &processing, &ready] {
            meta.insert_new(rec).await.unwrap();
        }
        started.offset = Offset(4);
        reach(&mut complete, AssetState::PendingUpload);
        reach(&mut processing, AssetState::Processing);
        reach(&mut ready, AssetState::Ready);
        for rec in [&started, &complete, &processing, &ready] {
            meta.put(rec).await.unwrap();
        }
        meta.flush().await.unwrap();
        drop(meta);

        let meta = (b.open)();
        let resumed = meta.resume().await.unwrap();
        assert_eq!(resumed.with_bytes, vec![(started.id, Offset(4))], "only unfinished uploads with bytes");
        assert_eq!(resumed.not_started, vec![complete.id]);
        assert_eq!(meta.processing().await.unwrap(), vec![processing.id]);
        let figures = resumed.usage.get(&project).copied().unwrap_or_default();
        assert_eq!(figures.bytes_stored, 4 + 10 + 10 + 10);
        assert_eq!(figures.assets, 5);
        assert_eq!(figures.uploads_in_flight, 2, "the fresh and the started upload");
    }
}

#[tokio::test]
async fn expiry_takes_only_unfinished_uploads_that_are_due() {
    let hour = Duration::from_secs(3600);
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let long_ago = Timestamp(Timestamp::now().0 - 2 * 3_600_000);
        let mut stale = asset(project, 10);
        let mut done = asset(project, 10);
        let mut refused = asset(project, 10);
        let fresh = asset(project, 10);
        reach(&mut done, AssetState::Ready);
        refused.refused = Some("type_not_allowed".into());
        refused.asset.as_mut().unwrap().fail("type_not_allowed", "refused").unwrap();
        for rec in [&mut stale, &mut done, &mut refused] {
            rec.updated_at = long_ago;
        }
        for rec in [&stale, &done, &refused, &fresh] {
            meta.insert_new(rec).await.unwrap();
        }
        let now = Timestamp::now();
        assert_eq!(meta.take_expired(now, hour).await.unwrap(), vec![stale.id]);
        assert!(meta.take_expired(now, hour).await.unwrap().is_empty(), "taken once");
        meta.expire_later(stale.updated_at, stale.id).await;
        assert_eq!(meta.take_expired(now, hour).await.unwrap(), vec![stale.id], "filed again");

        // After a restart every unfinished upload is found again.
        meta.flush().await.unwrap();
        drop(meta);
        let meta = (b.open)();
        meta.resume().await.unwrap();
        let later = now.plus(2 * hour);
        let due: BTreeSet<Uuid> = meta.take_expired(later, hour).await.unwrap().into_iter().collect();
        assert_eq!(due, BTreeSet::from([stale.id, fresh.id]));
    }
}

#[tokio::test]
async fn waiting_finals_are_found_by_their_parts() {
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let parts = vec![Uuid::now_v7(), Uuid::now_v7()];
        let concat = Concat::Final { parts: parts.clone(), header: String::new(), assembled: false };
        let fin = UploadRecord::new(Uuid::now_v7(), project, None, None, concat);
        meta.insert_new(&fin).await.unwrap();
        meta.add_waiting_final(&fin).await.unwrap();
        meta.add_waiting_final(&fin).await.unwrap();
        assert_eq!(meta.finals_waiting_for(parts[1]).await.unwrap(), vec![fin.id]);
        assert!(meta.finals_waiting_for(Uuid::now_v7()).await.unwrap().is_empty());
        assert_eq!(meta.waiting_finals().await.unwrap(), vec![fin.id]);
        meta.remove_waiting_final(&fin).await.unwrap();
        assert!(meta.finals_waiting_for(parts[0]).await.unwrap().is_empty());
        assert!(meta.waiting_finals().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn token_uses_stop_at_the_limit_and_are_kept() {
    for b in backends() {
        let meta = (b.open)();
        let taken: Vec<bool> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(meta.take_token_use("tok", 2).await.unwrap());
            }
            v
        };
        assert_eq!(taken, [true, true, false]);
        assert_eq!(meta.token_uses("tok").await.unwrap(), 2);
        assert_eq!(meta.token_uses("other").await.unwrap(), 0);
        meta.flush().await.unwrap();
        drop(meta);
        let meta = (b.open)();
        assert_eq!(meta.token_uses("tok").await.unwrap(), 2);
    }
}

/// A crash between a creation's writes leaves an index entry without its
/// record: lists skip it, start-up does not resume it, expiry drops it.
#[tokio::test]
async fn a_creation_cut_short_is_never_taken_for_an_upload() {
    for b in backends() {
        let meta = (b.open)();
        let project = Uuid::now_v7();
        let real = asset(project, 10);
        meta.insert_new(&real).await.unwrap();
        let ghost = asset(project, 10);
        (b.half_created)(&meta, &ghost).await;
        meta.flush().await.unwrap();
        drop(meta);

        let meta = (b.open)();
        let resumed = meta.resume().await.unwrap();
        assert!(resumed.with_bytes.is_empty() && resumed.not_started.is_empty());
        assert_eq!(list_all(&meta, project, None, None).await, vec![real.id]);
        assert_eq!(meta.get(ghost.id).await.unwrap(), None);
        let later = Timestamp::now().plus(Duration::from_secs(7200));
        let due = meta.take_expired(later, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(due, vec![real.id], "the ghost is dropped, not expired");
        assert_eq!(list_all(&meta, project, None, None).await, vec![real.id]);
    }
}

/// PostgreSQL only: nodes starting together on a fresh database make the
/// schema once (the others wait for it, then find it made), and a node
/// finding a schema newer than it knows refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_made_once_and_a_newer_one_is_refused() {
    let cluster = PgCluster::start();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = cluster.url.clone();
            tokio::spawn(async move { PgMeta::connect(&url).await.map(drop).map_err(|e| e.to_string()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.query("SELECT version FROM tusk_schema", &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "one schema version row");
    let made: i32 = rows[0].get(0);
    assert!(made >= 1);
    client.execute("UPDATE tusk_schema SET version = version + 1", &[]).await.unwrap();
    let refused = PgMeta::connect(&cluster.url).await.err().expect("a newer schema is refused").to_string();
    assert!(refused.contains("newer tusk") && refused.contains("upgrade"), "{refused}");
}
