//! The index and the settled counters are shortcuts: these tests drive a
//! store through random histories and check each answer against the
//! brute-force one computed from every record.

use std::collections::HashMap;

use uuid::Uuid;

use super::*;
use crate::asset::sniff::Sniffed;
use crate::asset::{AssetInfo, AssetState, AssetType};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to pick moves.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sniffed(kind: AssetType) -> Sniffed {
    Sniffed { kind, extension: None, content_type: "application/octet-stream".into() }
}

/// Applies one random change to `rec` the way the server would.
fn step(rng: &mut Rng, rec: &mut UploadRecord) {
    let len = rec.length.unwrap_or(0);
    match (rec.asset.as_ref().map(|a| a.state), rng.below(4)) {
        (_, 0) if rec.offset.0 < len => rec.offset = Offset((rec.offset.0 + 1 + rng.below(len)).min(len)),
        (Some(AssetState::PendingUpload), 1) => {
            let kind = AssetType::ALL[rng.below(6) as usize];
            rec.asset.as_mut().unwrap().sniffed = Some(sniffed(kind));
        }
        (Some(AssetState::PendingUpload), 2) if rec.is_complete() => {
            rec.asset.as_mut().unwrap().transition(AssetState::Processing).unwrap();
        }
        (Some(AssetState::PendingUpload), 3) if !rec.is_complete() => {
            // Refused at the first bytes: removed, failed, never in flight again.
            rec.offset = Offset(0);
            rec.refused = Some("type_not_allowed".into());
            rec.asset.as_mut().unwrap().fail("type_not_allowed", "refused").unwrap();
        }
        (Some(AssetState::Processing), _) => {
            let next = if rng.below(2) == 0 { AssetState::Ready } else { AssetState::Failed };
            rec.asset.as_mut().unwrap().transition(next).unwrap();
        }
        _ => {}
    }
}

fn brute_usage(store: &SledMeta) -> HashMap<Uuid, UsageFigures> {
    let mut totals: HashMap<Uuid, UsageFigures> = HashMap::new();
    for rec in store.records() {
        let rec = rec.unwrap();
        let share = rec.share();
        let t = totals.entry(rec.project_id).or_default();
        t.bytes_stored += share.bytes;
        t.assets += u64::from(share.asset);
        t.uploads_in_flight += u64::from(share.in_flight);
    }
    totals.retain(|_, t| *t != UsageFigures::default());
    totals
}

fn without_zeros(mut m: HashMap<Uuid, UsageFigures>) -> HashMap<Uuid, UsageFigures> {
    m.retain(|_, t| *t != UsageFigures::default());
    m
}

/// Every page of a filtered list, followed through its cursors.
fn list_all(
    store: &SledMeta,
    project: Uuid,
    state: Option<AssetState>,
    kind: Option<AssetType>,
) -> Vec<Uuid> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = store.list_assets(project, cursor, 7, state, kind).unwrap();
        out.extend(page.iter().map(|r| r.id));
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn brute_list(
    store: &SledMeta,
    project: Uuid,
    state: Option<AssetState>,
    kind: Option<AssetType>,
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = store
        .records()
        .map(Result::unwrap)
        .filter(|r| r.project_id == project)
        .filter(|r| {
            r.asset.as_ref().is_some_and(|a| {
                state.is_none_or(|s| a.state == s)
                    && kind.is_none_or(|k| a.sniffed.as_ref().is_some_and(|x| x.kind == k))
            })
        })
        .map(|r| r.id)
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

fn check(store: &SledMeta, projects: &[Uuid]) {
    assert_eq!(without_zeros(store.usage_totals().unwrap()), brute_usage(store), "usage");
    for &p in projects {
        let states = AssetState::ALL.map(Some).into_iter().chain([None]);
        for state in states {
            let kinds = AssetType::ALL.map(Some).into_iter().chain([None]);
            for kind in kinds {
                assert_eq!(
                    list_all(store, p, state, kind),
                    brute_list(store, p, state, kind),
                    "{state:?} {kind:?}"
                );
            }
        }
    }
    let processing = store.processing().unwrap();
    let resumed = store.resume().unwrap();
    assert_eq!(without_zeros(resumed.usage), brute_usage(store), "usage at start-up");
    let not_started = resumed.not_started;
    for rec in store.records().map(Result::unwrap) {
        let state = rec.asset.as_ref().map(|a| a.state);
        assert_eq!(processing.contains(&rec.id), state == Some(AssetState::Processing));
        let due = state == Some(AssetState::PendingUpload) && rec.is_complete();
        assert_eq!(not_started.contains(&rec.id), due);
    }
}

#[test]
fn lists_usage_and_queues_agree_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledMeta::open(dir.path()).unwrap();
    let projects = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut live: Vec<UploadRecord> = Vec::new();
    for round in 0..600 {
        match rng.below(10) {
            0..=3 => {
                let project = projects[rng.below(3) as usize];
                let partial = rng.below(5) == 0;
                let concat = if partial { Concat::Partial } else { Concat::None };
                let mut rec = UploadRecord::new(Uuid::now_v7(), project, Some(rng.below(40)), None, concat);
                if !partial {
                    rec.asset = Some(AssetInfo::new(None, None, Default::default()));
                }
                store.insert_new(&rec).unwrap();
                live.push(rec);
            }
            4 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let rec = live.swap_remove(i);
                store.remove(rec.id, GoneReason::Terminated).unwrap();
            }
            _ if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                step(&mut rng, &mut live[i]);
                store.put(&live[i]).unwrap();
            }
            _ => {}
        }
        if round % 100 == 99 {
            check(&store, &projects);
        }
    }
    check(&store, &projects);

    // A directory of the layout before the index is rebuilt to the same answers.
    let expected: Vec<_> = projects.iter().map(|p| brute_list(&store, *p, None, None)).collect();
    store.by_state.clear().unwrap();
    store.settled.clear().unwrap();
    store.info.clear().unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    let store = SledMeta::open(dir.path()).unwrap();
    check(&store, &projects);
    let again: Vec<_> = projects.iter().map(|p| brute_list(&store, *p, None, None)).collect();
    assert_eq!(again, expected);
}

#[test]
fn a_key_left_without_its_record_is_skipped_and_removed_once_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledMeta::open(dir.path()).unwrap();
    let project = Uuid::now_v7();
    let mut rec = UploadRecord::new(Uuid::now_v7(), project, Some(10), None, Concat::None);
    rec.asset = Some(AssetInfo::new(None, None, Default::default()));
    store.insert_new(&rec).unwrap();
    // As after a crash between a creation's two inserts.
    let ghost = Uuid::now_v7();
    let key = index::key(&rec.placement(), project, ghost).unwrap();
    store.by_state.insert(key, index::value(&rec.placement())).unwrap();
    let (page, next) = store.list_assets(project, None, 10, None, None).unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![rec.id]);
    assert_eq!(next, None);
    store.resume().unwrap();
    // The sweeper takes both (filed under their creation times) and finds
    // no record for the ghost.
    let due = store.take_touched_before(Timestamp(u64::MAX / 2));
    assert!(due.contains(&ghost) && due.contains(&rec.id), "{due:?}");
    assert_eq!(store.get(ghost).unwrap(), None);
    store.forget_unrecorded(ghost).unwrap();
    assert!(!store.by_state.contains_key(key).unwrap(), "the stale key is gone");
    store.forget_unrecorded(rec.id).unwrap();
    let real = index::key(&rec.placement(), project, rec.id).unwrap();
    assert!(store.by_state.contains_key(real).unwrap(), "a key with its record stays");
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledMeta::open(dir.path()).unwrap();
    store.info.insert(b"schema", &(SCHEMA + 1).to_be_bytes()).unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    let err = SledMeta::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("newer tusk"), "{err}");
}

#[test]
fn a_layout_4_directory_keeps_its_json_records_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let project = Uuid::now_v7();
    let mut rec = UploadRecord::new(Uuid::now_v7(), project, Some(10), None, Concat::None);
    rec.asset = Some(AssetInfo::new(Some("a.txt".into()), None, Default::default()));
    {
        // What tusk wrote at layout 4: the same index, the record as JSON.
        let store = SledMeta::open(dir.path()).unwrap();
        store.insert_new(&rec).unwrap();
        store.uploads.insert(rec.id.as_bytes(), serde_json::to_vec(&rec).unwrap()).unwrap();
        store.info.insert(b"schema", &4u32.to_be_bytes()).unwrap();
        store.by_state.insert(b"untouched", &[]).unwrap();
        store.flush_blocking().unwrap();
    }
    let store = SledMeta::open(dir.path()).unwrap();
    assert!(store.by_state.contains_key(b"untouched").unwrap(), "no re-index for 4 -> 5");
    assert_eq!(store.get(rec.id).unwrap(), Some(rec.clone()));
    assert_eq!(store.owner(rec.id).unwrap().map(|o| o.project_id), Some(project));
    rec.offset = Offset(3);
    store.put(&rec).unwrap();
    let raw = store.uploads.get(rec.id.as_bytes()).unwrap().unwrap();
    assert_ne!(raw.first(), Some(&b'{'), "rewritten as MessagePack");
    assert_eq!(store.get(rec.id).unwrap(), Some(rec));
    assert_eq!(store.info.get(b"schema").unwrap().unwrap().as_ref(), &SCHEMA.to_be_bytes());
}
