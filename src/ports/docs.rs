//! The document port: the few small records an operator manages beside the
//! uploads (API keys, upload tokens, project policies) and the secret that
//! signs URLs. In a data directory they are one JSON file each, so that
//! `tusk keys …` works while a server holds the metadata database; on
//! PostgreSQL they are rows every node reads, so a key made through one node
//! (or by `tusk keys … --database-url`) is honoured by all.
//!
//! Readers keep the documents in memory and ask for the collection's
//! `revision` to learn cheaply whether to read them again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backends::pg_docs::PgDocs;
use crate::backends::pg_meta::PgError;
use crate::secrets::{read_json_dir, write_file_atomic};

#[derive(Clone)]
pub enum Docs {
    /// Files under the data directory.
    Dir(PathBuf),
    Postgres(Arc<PgDocs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    Keys,
    Tokens,
    Projects,
}

impl Collection {
    /// The folder (and the database's collection name).
    fn name(self) -> &'static str {
        match self {
            Collection::Keys => "keys",
            Collection::Tokens => "tokens",
            Collection::Projects => "projects",
        }
    }

    /// What one document is, for messages.
    fn what(self) -> &'static str {
        match self {
            Collection::Keys => "key",
            Collection::Tokens => "token",
            Collection::Projects => "project",
        }
    }
}

/// A collection's state at one look: the same value twice means nothing
/// was added or replaced in between (`None`: it cannot tell, read again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// The folder's modification time.
    Folder(Option<SystemTime>),
    /// The newest row revision and the row count.
    Rows(i64, i64),
}

/// Written in the keys folder before the first key: this data directory has
/// used keys, so open mode stays off even if every key file goes.
const IN_USE_MARKER: &str = ".keys-in-use";

fn db_error(e: PgError) -> io::Error {
    let kind = if e.is_unavailable() { io::ErrorKind::NotConnected } else { io::ErrorKind::Other };
    io::Error::new(kind, e.to_string())
}

fn decode<T: DeserializeOwned>(c: Collection, body: &str) -> Option<T> {
    match serde_json::from_str(body) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable {} document", c.what());
            None
        }
    }
}

/// Runs file work on the blocking pool, off the request threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

impl Docs {
    fn folder(dir: &Path, c: Collection) -> PathBuf {
        dir.join(c.name())
    }

    /// Shared by several nodes (so nothing about it is kept in one node's files).
    pub fn is_shared(&self) -> bool {
        matches!(self, Docs::Postgres(_))
    }

    /// Where a collection lives, for messages.
    pub fn place(&self, c: Collection) -> String {
        match self {
            Docs::Dir(dir) => Docs::folder(dir, c).display().to_string(),
            Docs::Postgres(_) => format!("the database's {} documents", c.what()),
        }
    }

    /// Every document of a collection that decodes (one that does not is
    /// logged and skipped).
    pub async fn list<T: DeserializeOwned + Send + 'static>(&self, c: Collection) -> io::Result<Vec<T>> {
        match self {
            Docs::Dir(dir) => {
                let folder = Docs::folder(dir, c);
                blocking(move || read_json_dir(&folder, c.what())).await
            }
            Docs::Postgres(p) => {
                let bodies = p.list(c.name()).await.map_err(db_error)?;
                Ok(bodies.iter().filter_map(|b| decode(c, b)).collect())
            }
        }
    }

    /// One document by name (names are checked by the caller: ids, project names).
    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        c: Collection,
        name: &str,
    ) -> io::Result<Option<T>> {
        match self {
            Docs::Dir(dir) => {
                let path = Docs::folder(dir, c).join(format!("{name}.json"));
                blocking(move || match std::fs::read(&path) {
                    Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(io::Error::other)?)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                })
                .await
            }
            Docs::Postgres(p) => match p.get(c.name(), name).await.map_err(db_error)? {
                Some(body) => Ok(Some(serde_json::from_str(&body).map_err(io::Error::other)?)),
                None => Ok(None),
            },
        }
    }

    /// Stores a document, durably, replacing one of the same name.
    pub async fn put<T: Serialize>(&self, c: Collection, name: &str, doc: &T) -> io::Result<()> {
        match self {
            Docs::Dir(dir) => {
                let folder = Docs::folder(dir, c);
                let body = serde_json::to_vec_pretty(doc).map_err(io::Error::other)?;
                let name = name.to_string();
                blocking(move || {
                    std::fs::create_dir_all(&folder)?;
                    write_file_atomic(&folder.join(format!("{name}.json")), &body)
                })
                .await
            }
            Docs::Postgres(p) => {
                let body = serde_json::to_string(doc).map_err(io::Error::other)?;
                p.put(c.name(), name, &body).await.map_err(db_error)
            }
        }
    }

    pub async fn revision(&self, c: Collection) -> io::Result<Revision> {
        match self {
            Docs::Dir(dir) => {
                let folder = Docs::folder(dir, c);
                blocking(move || {
                    Ok(Revision::Folder(std::fs::metadata(folder).and_then(|m| m.modified()).ok()))
                })
                .await
            }
            Docs::Postgres(p) => {
                let (rev, count) = p.revision(c.name()).await.map_err(db_error)?;
                Ok(Revision::Rows(rev, count))
            }
        }
    }

    /// A key has existed here (open mode is over for good).
    pub async fn keys_in_use(&self) -> io::Result<bool> {
        match self {
            Docs::Dir(dir) => {
                let marker = Docs::folder(dir, Collection::Keys).join(IN_USE_MARKER);
                blocking(move || Ok(marker.exists())).await
            }
            // Keys are never deleted from the database, only revoked.
            Docs::Postgres(p) => Ok(p.revision(Collection::Keys.name()).await.map_err(db_error)?.1 > 0),
        }
    }

    /// Remembers that keys are in use, before the first is stored.
    pub async fn mark_keys_in_use(&self) -> io::Result<()> {
        match self {
            Docs::Dir(dir) => {
                let folder = Docs::folder(dir, Collection::Keys);
                blocking(move || {
                    std::fs::create_dir_all(&folder)?;
                    let marker = folder.join(IN_USE_MARKER);
                    if marker.exists() {
                        return Ok(());
                    }
                    std::fs::write(
                        &marker,
                        b"API keys have been used in this data directory; open mode stays off.\n",
                    )?;
                    std::fs::File::open(&folder)?.sync_all()
                })
                .await
            }
            Docs::Postgres(_) => Ok(()),
        }
    }

    /// The secret that signs upload and download URLs, made on first use;
    /// every node on one database gets the same.
    pub async fn signing_secret(&self) -> io::Result<Vec<u8>> {
        match self {
            Docs::Dir(dir) => {
                let dir = dir.clone();
                blocking(move || crate::secrets::load_or_create_secret(&dir.join("signing.key"))).await
            }
            Docs::Postgres(p) => {
                let mut candidate = vec![0u8; 32];
                getrandom::fill(&mut candidate).map_err(|e| io::Error::other(e.to_string()))?;
                p.secret("signing", &candidate).await.map_err(db_error)
            }
        }
    }
}
