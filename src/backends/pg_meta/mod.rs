//! The metadata port on PostgreSQL: upload records, tombstones, token use
//! counts, the expiry queue and waiting finals in tables that several tusk
//! nodes can share (`ports::meta` dispatches here).
//!
//! Every call is one statement or one transaction, committed before it
//! returns, so `flush` has nothing left to do: what the sled backend makes
//! durable in batches, PostgreSQL makes durable per commit. A record is
//! stored as the same MessagePack as in sled (`sled_meta::codec`), beside
//! the columns that lists, start-up and expiry select on, computed from the
//! record's placement (`sled_meta::placement`) in the same statement: no
//! index entry can disagree with its record.
//!
//! The schema is created and migrated at start from the versioned
//! migrations below (embedded in the binary), under an advisory lock so
//! that nodes starting together migrate once; a database migrated by a
//! newer tusk is refused rather than misread.

use std::collections::HashMap;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::asset::{AssetState, AssetType};
use crate::backends::sled_meta::codec;
use crate::backends::sled_meta::placement::{group, kind_code, state_group};
use crate::record::{Concat, GoneReason, Offset, Owner, Timestamp, Tombstone, UploadRecord, UploadStatus};
use crate::usage::UsageFigures;

/// The migrations, in order: the schema's version is how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_uploads.sql"),
    include_str!("migrations/0002_documents.sql"),
    include_str!("migrations/0003_usage.sql"),
    include_str!("migrations/0004_head.sql"),
];

/// Taken (for the transaction) by a node migrating the schema.
const MIGRATION_LOCK: i64 = 0x7475_736b_0001;

/// Connections one node keeps to the database.
const POOL_SIZE: usize = 16;
/// A database that does not answer a connection within this is away.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a statement may run before the database cancels it: a query on
/// a connection that stopped answering must fail, not hang a request.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// The settings every PostgreSQL backend connects with: a connection that
/// is not answered, or goes quiet (a network cut rather than a refusal),
/// fails within seconds instead of hanging for the kernel's TCP timeout.
pub fn client_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::from_str(url)?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(5))
        .keepalives_interval(std::time::Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(std::time::Duration::from_secs(15))
        .options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
    Ok(config)
}

#[derive(Debug)]
pub enum PgError {
    /// The database answered with an error, or the connection failed.
    Db(tokio_postgres::Error),
    /// No connection could be had from the pool.
    Pool(String),
    /// A stored value does not decode.
    Corrupt(String),
    /// The database's schema is not one this tusk can use.
    Schema(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Db(e) => write!(f, "PostgreSQL: {e}"),
            PgError::Pool(e) => write!(f, "PostgreSQL connection: {e}"),
            PgError::Corrupt(e) => write!(f, "corrupt record: {e}"),
            PgError::Schema(e) => write!(f, "PostgreSQL schema: {e}"),
        }
    }
}

impl std::error::Error for PgError {}

impl PgError {
    /// The database cannot be reached (or no connection is free): a
    /// client's retry can work once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PgError::Pool(_) => true,
            PgError::Db(e) => {
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                    || e.code().is_some_and(|c| passing(c.code()))
            }
            _ => false,
        }
    }
}

/// SQLSTATEs that mean "not now" (a retry can work), not "wrong": the
/// connection failed (class 08), the server is shutting down or starting
/// (57P01-57P03), out of connections or resources (53), a statement
/// cancelled by its timeout (57014), a conflict with another transaction
/// (40001, 40P01, 55P03).
fn passing(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01" | "55P03")
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(e)
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::Db(e),
            e => PgError::Pool(e.to_string()),
        }
    }
}

impl From<crate::backends::sled_meta::SledError> for PgError {
    fn from(e: crate::backends::sled_meta::SledError) -> Self {
        PgError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = PgError> = std::result::Result<T, E>;

/// The advisory lock key of an upload (`pg_locks`): its id's halves folded.
pub fn lock_key(id: Uuid) -> i64 {
    let (hi, lo) = id.as_u64_pair();
    (hi ^ lo) as i64
}

/// What start-up finds, as `SledMeta::resume` returns it.
#[derive(Debug, Default)]
pub struct Resumed {
    pub usage: HashMap<Uuid, UsageFigures>,
    pub not_started: Vec<Uuid>,
    pub with_bytes: Vec<(Uuid, Offset)>,
}

pub struct PgMeta {
    pool: Pool,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A record's row, new or changed (`PgMeta::put`).
macro_rules! upsert {
    () => {
        "INSERT INTO uploads (id, project_id, record, grp, kind, is_asset, offset_bytes, in_flight,
                              not_started, settled_bytes, settled_asset, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET
             project_id = EXCLUDED.project_id, record = EXCLUDED.record, grp = EXCLUDED.grp,
             kind = EXCLUDED.kind, is_asset = EXCLUDED.is_asset, offset_bytes = EXCLUDED.offset_bytes,
             in_flight = EXCLUDED.in_flight, not_started = EXCLUDED.not_started,
             settled_bytes = EXCLUDED.settled_bytes, settled_asset = EXCLUDED.settled_asset,
             updated_at = EXCLUDED.updated_at"
    };
}
const UPSERT: &str = upsert!();
/// The same, and filed for expiry, in one statement.
const UPSERT_AND_FILE: &str = concat!(
    "WITH stored AS (",
    upsert!(),
    " RETURNING id) INSERT INTO expiry (id, at) SELECT id, $12 FROM stored
     ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at"
);

impl PgMeta {
    /// Connects to `url` (`postgres://…`), then creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<PgMeta> {
        let meta = PgMeta::with_pool(url)?;
        meta.migrate().await?;
        Ok(meta)
    }

    /// A pool for `url`, its connections made when first used, without
    /// looking at the schema (which `connect` made): for a store reopened
    /// where no runtime can wait on the migration.
    #[cfg(test)]
    pub(crate) fn connect_lazily(url: &str) -> Result<PgMeta> {
        PgMeta::with_pool(url)
    }

    /// The connection pool, for the other stores on the same database
    /// (`pg_docs`), so one node keeps one set of connections.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// A pool for `url`; connections are made when first used.
    fn with_pool(url: &str) -> Result<PgMeta> {
        let config = client_config(url).map_err(PgError::Db)?;
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // Every wait bounded: a busy or unreachable database is a 503, not a hang.
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        Ok(PgMeta { pool })
    }

    /// Brings the schema to the newest version this binary knows.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS tusk_schema (version integer NOT NULL)").await?;
        let version: i32 = match tx.query_opt("SELECT version FROM tusk_schema", &[]).await? {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO tusk_schema (version) VALUES (0)", &[]).await?;
                0
            }
        };
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(PgError::Schema(format!(
                "the database's schema is version {version}, made by a newer tusk (this one knows up to \
                 {known}): upgrade this node"
            )));
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.batch_execute(migration).await?;
        }
        tx.execute("UPDATE tusk_schema SET version = $1", &[&known]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<UploadRecord>> {
        match self.record_bytes(id).await? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    async fn record_bytes(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(&client.prepare_cached("SELECT record FROM uploads WHERE id = $1").await?, &[&id])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// What HEAD needs of an upload, decoded without the rest of its record.
    pub async fn status(&self, id: Uuid) -> Result<Option<UploadStatus>> {
        match self.record_bytes(id).await? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// HEAD's status, if no node holds the upload's lock (`pg_locks`, same
    /// keys) at this instant, read after that was known (migration 4 says
    /// why a function): `None` if one holds it.
    pub async fn status_unless_locked(&self, id: Uuid) -> Result<Option<Option<UploadStatus>>> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client.prepare_cached("SELECT quiet, record FROM tusk_status_unless_locked($1, $2)").await?,
                &[&id, &lock_key(id)],
            )
            .await?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        match row.get::<_, Option<Vec<u8>>>(1) {
            Some(v) => Ok(Some(Some(codec::decode(&v)?))),
            None => Ok(Some(None)),
        }
    }

    pub async fn owner(&self, id: Uuid) -> Result<Option<Owner>> {
        match self.record_bytes(id).await? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Counts one use of a token allowing `max`, in one statement (so two
    /// nodes never both take the last one); false once all are used.
    pub async fn take_token_use(&self, token_id: &str, max: u64) -> Result<bool> {
        if max == 0 {
            return Ok(false);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "INSERT INTO token_uses (token_id, uses) VALUES ($1, 1)
                 ON CONFLICT (token_id) DO UPDATE SET uses = token_uses.uses + 1
                 WHERE token_uses.uses < $2
                 RETURNING uses",
                    )
                    .await?,
                &[&token_id, &i(max)],
            )
            .await?;
        Ok(row.is_some())
    }

    pub async fn token_uses(&self, token_id: &str) -> Result<u64> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client.prepare_cached("SELECT uses FROM token_uses WHERE token_id = $1").await?,
                &[&token_id],
            )
            .await?;
        Ok(row.map_or(0, |r| u(r.get(0))))
    }

    /// Stores a record (new or changed) with the columns its placement
    /// gives, and files an unfinished one for expiry: one statement (one
    /// round trip, its own transaction), so a project's usage row, which
    /// the statement's trigger moves, is held only while it commits.
    pub async fn put(&self, rec: &UploadRecord) -> Result<()> {
        let bytes = codec::encode(rec)?;
        let p = rec.placement();
        let in_flight = p.entry.is_some_and(|e| !e.complete);
        let not_started = p.entry.is_some_and(|e| e.complete);
        let (grp, kind) = (i16::from(p.group), i16::from(p.kind));
        let client = self.pool.get().await?;
        // Unfinished: filed for expiry in the same statement.
        let statement = if rec.is_complete() { UPSERT } else { UPSERT_AND_FILE };
        client
            .execute(
                &client.prepare_cached(statement).await?,
                &[
                    &rec.id,
                    &rec.project_id,
                    &bytes,
                    &grp,
                    &kind,
                    &rec.asset.is_some(),
                    &i(rec.offset.0),
                    &in_flight,
                    &not_started,
                    &i(p.settled.bytes),
                    &p.settled.asset,
                    &i(rec.updated_at.0),
                ],
            )
            .await?;
        Ok(())
    }

    /// Every write is committed when it returns.
    pub async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Takes from the expiry queue every upload filed before `now -
    /// expire_after` and returns those whose records say they expired; one
    /// touched since is filed again under its last change, a finished or
    /// removed one dropped. Taken in one statement: two nodes sweeping at
    /// once never both take an upload.
    pub async fn take_expired(&self, now: Timestamp, expire_after: std::time::Duration) -> Result<Vec<Uuid>> {
        let cutoff = i(now.0.saturating_sub(expire_after.as_millis() as u64));
        let mut client = self.pool.get().await?;
        // One transaction: an error takes nothing out of the queue. Decided
        // from the columns (`in_flight` is "may expire": unfinished and not
        // refused), so no record is read.
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "WITH taken AS (DELETE FROM expiry WHERE at <= $1 RETURNING id)
                 SELECT uploads.id, uploads.updated_at FROM taken
                 JOIN uploads ON uploads.id = taken.id AND uploads.in_flight",
                &[&cutoff],
            )
            .await?;
        let (mut due, mut later): (Vec<Uuid>, Vec<(Uuid, i64)>) = (Vec::new(), Vec::new());
        for row in rows {
            let (id, updated): (Uuid, i64) = (row.get(0), row.get(1));
            if updated <= cutoff { due.push(id) } else { later.push((id, updated)) }
        }
        if !later.is_empty() {
            // Touched since they were filed: filed again under their last change.
            let (ids, ats): (Vec<Uuid>, Vec<i64>) = later.into_iter().unzip();
            tx.execute(
                "INSERT INTO expiry (id, at) SELECT * FROM unnest($1::uuid[], $2::bigint[])
                 ON CONFLICT (id) DO UPDATE SET at = GREATEST(expiry.at, EXCLUDED.at)",
                &[&ids, &ats],
            )
            .await?;
        }
        tx.commit().await?;
        due.sort_unstable();
        Ok(due)
    }

    async fn file_for_expiry(&self, at: Timestamp, id: Uuid) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("INSERT INTO expiry (id, at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at").await?,
                &[&id, &i(at.0)],
            )
            .await?;
        Ok(())
    }

    /// Files `id` for expiry again, as last changed at `at`.
    pub async fn expire_later(&self, at: Timestamp, id: Uuid) {
        if let Err(e) = self.file_for_expiry(at, id).await {
            // Filed again by the next start (`resume`) at the latest.
            tracing::warn!(upload = %id, error = %e, "could not file the upload for expiry again");
        }
    }

    pub async fn contains(&self, id: Uuid) -> Result<bool> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(&client.prepare_cached("SELECT 1 FROM uploads WHERE id = $1").await?, &[&id])
            .await?
            .is_some())
    }

    pub async fn tombstone(&self, id: Uuid) -> Result<Option<Tombstone>> {
        let client = self.pool.get().await?;
        match client
            .query_opt(&client.prepare_cached("SELECT stone FROM tombstones WHERE id = $1").await?, &[&id])
            .await?
        {
            Some(row) => Ok(Some(codec::decode(&row.get::<_, Vec<u8>>(0))?)),
            None => Ok(None),
        }
    }

    /// Removes a record and leaves its tombstone, in one transaction; a
    /// second removal finds nothing and leaves the tombstone as it was.
    pub async fn remove(&self, id: Uuid, reason: GoneReason) -> Result<Option<UploadRecord>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.query_opt("DELETE FROM uploads WHERE id = $1 RETURNING record", &[&id]).await?
        else {
            return Ok(None);
        };
        let rec: UploadRecord = codec::decode(&row.get::<_, Vec<u8>>(0))?;
        let stone = Tombstone { reason, at: Timestamp::now(), project_id: Some(rec.project_id) };
        tx.execute(
            "INSERT INTO tombstones (id, at, stone) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, stone = EXCLUDED.stone",
            &[&id, &i(stone.at.0), &codec::encode(&stone)?],
        )
        .await?;
        tx.execute("DELETE FROM expiry WHERE id = $1", &[&id]).await?;
        tx.execute("DELETE FROM waiting_finals WHERE final_id = $1", &[&id]).await?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    pub async fn prune_tombstones(&self, before: Timestamp) -> Result<usize> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(&client.prepare_cached("DELETE FROM tombstones WHERE at < $1").await?, &[&i(before.0)])
            .await? as usize)
    }

    /// A project's assets newest first, older than `cursor`, in `state` and
    /// of `kind` if given; the page and the cursor of the next one.
    pub async fn list_assets(
        &self,
        project: Uuid,
        cursor: Option<Uuid>,
        limit: usize,
        state: Option<AssetState>,
        kind: Option<AssetType>,
    ) -> Result<(Vec<UploadRecord>, Option<Uuid>)> {
        let grp: Option<i16> = state.map(|s| i16::from(state_group(s)));
        let kind: Option<i16> = kind.map(|k| i16::from(kind_code(k)));
        let client = self.pool.get().await?;
        // One more than the page: whether another page follows.
        let rows = client
            .query(
                // 255: not listed (a finished partial), 254: a partial
                // (`sled_meta::placement`); the index `uploads_listed`.
                "SELECT record FROM uploads
                 WHERE project_id = $1 AND grp <> 255 AND kind <> 254
                   AND ($2::uuid IS NULL OR id < $2)
                   AND ($3::smallint IS NULL OR grp = $3)
                   AND ($4::smallint IS NULL OR kind = $4)
                 ORDER BY id DESC LIMIT $5",
                &[&project, &cursor, &grp, &kind, &(limit as i64 + 1)],
            )
            .await?;
        let mut page = Vec::with_capacity(limit);
        for row in rows.iter().take(limit) {
            page.push(codec::decode::<UploadRecord>(&row.get::<_, Vec<u8>>(0))?);
        }
        let next = (rows.len() > limit).then(|| page.last().map(|r| r.id)).flatten();
        Ok((page, next))
    }

    /// Files a final upload as waiting for its parts (idempotent).
    pub async fn add_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        let Concat::Final { parts, .. } = &rec.concat else { return Ok(()) };
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("INSERT INTO waiting_finals (final_id, parts) VALUES ($1, $2) ON CONFLICT (final_id) DO NOTHING").await?,
                &[&rec.id, parts],
            )
            .await?;
        Ok(())
    }

    pub async fn remove_waiting_final(&self, rec: &UploadRecord) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("DELETE FROM waiting_finals WHERE final_id = $1").await?,
                &[&rec.id],
            )
            .await?;
        Ok(())
    }

    pub async fn finals_waiting_for(&self, part: Uuid) -> Result<Vec<Uuid>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT final_id FROM waiting_finals WHERE parts @> ARRAY[$1::uuid] ORDER BY final_id").await?,
                &[&part],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn waiting_finals(&self) -> Result<Vec<Uuid>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT final_id FROM waiting_finals ORDER BY final_id").await?,
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Start-up: each project's usage, the complete uploads whose
    /// processing never started, the unfinished ones with bytes (to check
    /// against the byte store), and every unfinished upload filed for expiry.
    pub async fn resume(&self) -> Result<Resumed> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO expiry (id, at) SELECT id, updated_at FROM uploads WHERE in_flight
                 ON CONFLICT (id) DO NOTHING",
                    )
                    .await?,
                &[],
            )
            .await?;
        // The expiry queue names only uploads: one left by nothing (a
        // record removed since) is dropped by the sweeper when due.
        let mut resumed = Resumed { usage: usage_totals(&client).await?, ..Resumed::default() };
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT id FROM uploads WHERE grp = 0 AND not_started ORDER BY id")
                    .await?,
                &[],
            )
            .await?;
        resumed.not_started = rows.iter().map(|r| r.get(0)).collect();
        let rows = client
            .query(
                &client.prepare_cached("SELECT id, offset_bytes FROM uploads WHERE in_flight AND offset_bytes > 0 ORDER BY id").await?,
                &[],
            )
            .await?;
        resumed.with_bytes = rows.iter().map(|r| (r.get(0), Offset(u(r.get(1))))).collect();
        Ok(resumed)
    }

    /// Every project's usage, counting unfinished uploads at their offsets.
    pub async fn usage_totals(&self) -> Result<HashMap<Uuid, UsageFigures>> {
        usage_totals(&self.pool.get().await?).await
    }

    /// Assets left `processing` (by a crash or a stop).
    pub async fn processing(&self) -> Result<Vec<Uuid>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT id FROM uploads WHERE grp = $1 ORDER BY id").await?,
                &[&i16::from(group::PROCESSING)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// What a crash could leave of a creation here: nothing of the record
    /// (its writes are one transaction), an expiry entry at most, as a
    /// sweep that took it and died before filing it back would not (for
    /// the conformance suite).
    #[cfg(test)]
    pub(crate) async fn leave_entry_without_record(&self, rec: &UploadRecord) {
        self.file_for_expiry(rec.updated_at, rec.id).await.unwrap();
    }
}

/// Every project's usage as the database keeps it (`project_usage`,
/// moved by a trigger with every record change).
async fn usage_totals(client: &deadpool_postgres::Client) -> Result<HashMap<Uuid, UsageFigures>> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT project_id, SUM(bytes)::bigint, SUM(assets)::bigint, SUM(in_flight)::bigint
             FROM project_usage GROUP BY project_id
             HAVING SUM(bytes) <> 0 OR SUM(assets) <> 0 OR SUM(in_flight) <> 0",
                )
                .await?,
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let figures = UsageFigures {
                bytes_stored: u(row.get(1)),
                assets: u(row.get(2)),
                uploads_in_flight: u(row.get(3)),
            };
            (row.get(0), figures)
        })
        .collect())
}
