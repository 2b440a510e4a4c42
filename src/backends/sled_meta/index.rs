//! The `by_state` index: one key per upload, `group ++ project ++ kind ++ id`
//! (34 bytes; in-flight entries carry the offset and a completion flag), so
//! every question the server asks of its metadata reads only the records
//! that answer it, and start-up reads none.
//!
//! - A project's assets in one state and of one type are one key range; a
//!   list filtered by state and/or type merges the ranges it names (at most
//!   4 × 7) newest first, since UUIDv7 ids sort by creation time. A page
//!   costs what it returns, whatever else is stored.
//! - The group comes first, so the uploads start-up must look at (in
//!   flight, or assets still `pending_upload`) and the assets left
//!   `processing` are each one contiguous range across all projects.
//!
//! A key is moved in the same sled transaction as the record it indexes
//! (`SledMeta::put`). Two writes go without one: a creation writes its key just
//! before its record (a crash between leaves a key without a record, which
//! readers skip, since every key read is checked against its record, and
//! the sweeper removes), and an append writes its in-flight entry's new
//! offset just before the record (after a crash the entry may count bytes
//! synced but never acknowledged). A record is never missing from the index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use uuid::Uuid;

use super::placement::{Placement, group};

pub const KEY_LEN: usize = 34;

/// The key of a record placed as `p`; `None` if it is not indexed.
pub fn key(p: &Placement, project: Uuid, id: Uuid) -> Option<[u8; KEY_LEN]> {
    (p.group != group::NOT_INDEXED).then(|| raw_key(p.group, project, p.kind, id))
}

pub fn raw_key(group: u8, project: Uuid, kind: u8, id: Uuid) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[0] = group;
    k[1..17].copy_from_slice(project.as_bytes());
    k[17] = kind;
    k[18..].copy_from_slice(id.as_bytes());
    k
}

/// The value stored under a record's key: what start-up needs of an
/// upload in flight (`Placement::entry`), nothing for the others.
pub fn value(p: &Placement) -> Vec<u8> {
    p.entry.map(|e| e.encode().to_vec()).unwrap_or_default()
}

/// The upload id at the end of a key.
pub fn id_of(key: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(key.get(18..KEY_LEN)?).ok()
}

/// Ids under every `(group, kind)` pair for `project`, older than `before`
/// (all if `None`), newest first: a k-way merge of the ranges' reverse
/// iterators.
pub struct Newest {
    iters: Vec<std::iter::Rev<sled::Iter>>,
    heads: BinaryHeap<(Uuid, Reverse<usize>, sled::IVec)>,
    /// A range's first read failed: answered by the first `next`.
    failed: Option<sled::Error>,
}

impl Newest {
    pub fn new(tree: &sled::Tree, project: Uuid, groups: &[u8], kinds: &[u8], before: Option<Uuid>) -> Self {
        let mut iters = Vec::with_capacity(groups.len() * kinds.len());
        for &g in groups {
            for &k in kinds {
                let lo = raw_key(g, project, k, Uuid::nil());
                let hi = raw_key(g, project, k, before.unwrap_or(Uuid::max()));
                iters.push(tree.range(lo..hi).rev());
            }
        }
        let mut newest = Newest { heads: BinaryHeap::with_capacity(iters.len()), iters, failed: None };
        for i in 0..newest.iters.len() {
            if let Some(e) = newest.advance(i) {
                newest.failed.get_or_insert(e);
            }
        }
        newest
    }

    fn advance(&mut self, i: usize) -> Option<sled::Error> {
        match self.iters[i].next()? {
            Ok((k, _)) => {
                if let Some(id) = id_of(&k) {
                    self.heads.push((id, Reverse(i), k));
                }
                None
            }
            Err(e) => Some(e),
        }
    }
}

impl Iterator for Newest {
    /// The id and the key it was found under.
    type Item = Result<(Uuid, sled::IVec), sled::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let (id, Reverse(i), key) = self.heads.pop()?;
        if let Some(e) = self.advance(i) {
            return Some(Err(e));
        }
        Some(Ok((id, key)))
    }
}
