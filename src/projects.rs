//! Per-project policy: size and type limits, a storage quota, a longest
//! duration. Set with `tusk projects set NAME …` as one JSON file per project
//! under `<data-dir>/projects/` (like keys, so it works while a server runs),
//! and honoured by a running server within a second.
//!
//! A running server also writes its usage figures to `<data-dir>/usage.json`
//! every second they change, so `tusk projects show` can report them while
//! the metadata database is held by the server.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetType;
use crate::auth::{project_id, valid_project_name};
use crate::ports::docs::{Collection, Docs};
use crate::record::Timestamp;
use crate::record::UploadLimits;
use crate::usage::{Usage, UsageFigures};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub project_id: Uuid,
    #[serde(default)]
    pub max_size: Option<u64>,
    #[serde(default)]
    pub allowed_types: Option<Vec<AssetType>>,
    /// Bytes the project may store in all.
    #[serde(default)]
    pub quota: Option<u64>,
    #[serde(default)]
    pub max_duration: Option<u64>,
    #[serde(default)]
    pub updated_at: Timestamp,
}

impl Policy {
    pub fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_size: self.max_size,
            allowed_types: self.allowed_types.clone(),
            max_duration: self.max_duration,
        }
    }
}

/// A change to one setting: keep it, clear it, or set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Setting<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> Setting<T> {
    fn apply(&self, current: &mut Option<T>) {
        match self {
            Setting::Keep => {}
            Setting::Clear => *current = None,
            Setting::Set(v) => *current = Some(v.clone()),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PolicyChange {
    pub max_size: Setting<u64>,
    pub allowed_types: Setting<Vec<AssetType>>,
    pub quota: Setting<u64>,
    pub max_duration: Setting<u64>,
}

fn usage_file(data_dir: &Path) -> PathBuf {
    data_dir.join("usage.json")
}

pub async fn read_policy(docs: &Docs, name: &str) -> io::Result<Option<Policy>> {
    if !valid_project_name(name) {
        return Ok(None);
    }
    docs.get(Collection::Projects, name).await
}

/// Applies `change` to the project's policy (made on first use) and stores it.
pub async fn set_policy(docs: &Docs, name: &str, change: &PolicyChange) -> io::Result<Policy> {
    if !valid_project_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "project names are 1-64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let mut p = read_policy(docs, name).await?.unwrap_or_else(|| Policy {
        name: name.to_string(),
        project_id: project_id(name),
        ..Policy::default()
    });
    change.max_size.apply(&mut p.max_size);
    change.allowed_types.apply(&mut p.allowed_types);
    change.quota.apply(&mut p.quota);
    change.max_duration.apply(&mut p.max_duration);
    p.updated_at = Timestamp::now();
    docs.put(Collection::Projects, name, &p).await?;
    Ok(p)
}

pub async fn list_policies(docs: &Docs) -> io::Result<Vec<Policy>> {
    let mut out: Vec<Policy> = docs.list(Collection::Projects).await?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The policies as the server sees them.
pub struct Projects {
    docs: Docs,
    by_id: RwLock<HashMap<Uuid, Arc<Policy>>>,
}

impl Projects {
    pub async fn open(docs: Docs) -> io::Result<Projects> {
        let p = Projects { docs, by_id: RwLock::default() };
        p.reload().await?;
        Ok(p)
    }

    /// For tests and tools that have no data directory to read.
    pub fn empty() -> Projects {
        Projects { docs: Docs::Dir(PathBuf::new()), by_id: RwLock::default() }
    }

    pub fn policy(&self, id: Uuid) -> Option<Arc<Policy>> {
        self.by_id.read().expect("projects").get(&id).cloned()
    }

    pub fn name(&self, id: Uuid) -> Option<String> {
        self.policy(id).map(|p| p.name.clone())
    }

    /// Re-reads the policies (one per project); true if anything changed.
    pub async fn reload(&self) -> io::Result<bool> {
        let map: HashMap<Uuid, Arc<Policy>> =
            list_policies(&self.docs).await?.into_iter().map(|p| (p.project_id, Arc::new(p))).collect();
        let mut cur = self.by_id.write().expect("projects");
        let changed = cur.len() != map.len() || map.iter().any(|(k, v)| cur.get(k) != Some(v));
        *cur = map;
        Ok(changed)
    }

    /// Polls the policies and, in a data directory, writes the usage
    /// figures (`tusk projects` reads them from the database otherwise),
    /// each about every second.
    pub async fn watch(self: Arc<Self>, usage: Arc<Usage>, stop: tokio_util::sync::CancellationToken) {
        let mut last: Vec<(Uuid, UsageFigures)> = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(400)) => {}
                _ = stop.cancelled() => return,
            }
            let now = usage.all();
            if let (Docs::Dir(dir), true) = (&self.docs, now != last) {
                let (dir, figures) = (dir.clone(), now.clone());
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || write_usage(&dir, &figures)).await {
                    tracing::warn!(error = %e, "writing usage figures");
                }
            }
            match self.reload().await {
                Ok(true) => tracing::info!("project policies reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "reading project policies"),
            }
            last = now;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct UsageSnapshot {
    written_at: Timestamp,
    projects: HashMap<Uuid, UsageFigures>,
}

fn write_usage(data_dir: &Path, figures: &[(Uuid, UsageFigures)]) -> io::Result<()> {
    let snap = UsageSnapshot { written_at: Timestamp::now(), projects: figures.iter().copied().collect() };
    let path = usage_file(data_dir);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(&snap).map_err(io::Error::other)?)?;
    fs::rename(&tmp, &path)
}

/// Usage figures as the running server last wrote them, with when.
pub fn read_usage(data_dir: &Path) -> io::Result<Option<(Timestamp, HashMap<Uuid, UsageFigures>)>> {
    match fs::read(usage_file(data_dir)) {
        Ok(b) => {
            let s: UsageSnapshot = serde_json::from_slice(&b).map_err(io::Error::other)?;
            Ok(Some((s.written_at, s.projects)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
