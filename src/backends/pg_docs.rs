//! The document port on PostgreSQL: keys, upload tokens and project
//! policies as one row of JSON each, and the URL-signing secret, shared by
//! every node on the database (`ports::docs` dispatches here). The tables
//! are made by the metadata store's migrations (`pg_meta`), whose pool this
//! shares.

use deadpool_postgres::Pool;

use super::pg_meta::PgError;

type Result<T> = std::result::Result<T, PgError>;

pub struct PgDocs {
    pool: Pool,
}

impl PgDocs {
    pub fn new(pool: Pool) -> PgDocs {
        PgDocs { pool }
    }

    /// Every document of a collection, as stored (JSON text).
    pub async fn list(&self, collection: &str) -> Result<Vec<String>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT body FROM documents WHERE collection = $1 ORDER BY name")
                    .await?,
                &[&collection],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn get(&self, collection: &str, name: &str) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT body FROM documents WHERE collection = $1 AND name = $2")
                    .await?,
                &[&collection, &name],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores a document (replacing one of that name) under a new revision.
    pub async fn put(&self, collection: &str, name: &str, body: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO documents (collection, name, body) VALUES ($1, $2, $3)
                 ON CONFLICT (collection, name)
                 DO UPDATE SET body = EXCLUDED.body, revision = nextval('documents_revision')",
                    )
                    .await?,
                &[&collection, &name, &body],
            )
            .await?;
        Ok(())
    }

    /// The sum of the collection's revisions and its size: equal answers
    /// mean no document was added or replaced in between. A sum, not the
    /// newest: revisions are drawn when a write runs, not when it commits,
    /// so an older one can commit after a newer (every write still raises
    /// the sum, as documents are never deleted).
    pub async fn revision(&self, collection: &str) -> Result<(i64, i64)> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client.prepare_cached("SELECT COALESCE(SUM(revision), 0)::bigint, COUNT(*)::bigint FROM documents WHERE collection = $1").await?,
                &[&collection],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// The secret stored as `name`, storing `candidate` if there is none
    /// yet: nodes starting together all end up with the first one stored.
    pub async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    )
                    .await?,
                &[&name, &candidate],
            )
            .await?;
        let row = client
            .query_one(&client.prepare_cached("SELECT value FROM secrets WHERE name = $1").await?, &[&name])
            .await?;
        Ok(row.get(0))
    }
}
