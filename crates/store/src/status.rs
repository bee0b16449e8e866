//! What the operator asks of the database: which server, how long up, which
//! schema, how big the pool's tables are.

use mysql_async::prelude::Queryable;

use crate::{Store, StoreError};

/// The database as the operator sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DbStatus {
    /// `SELECT VERSION()`.
    pub version: String,
    /// The server's uptime, seconds.
    pub uptime_secs: u64,
    /// The newest migration applied (`schema_migrations`), 0 if none.
    pub schema_version: u32,
    /// Migrations the code has that the database has not.
    pub pending_migrations: Vec<u32>,
    /// The pool's tables, largest first.
    pub tables: Vec<TableSize>,
}

/// One table's size (InnoDB's estimate of its rows).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableSize {
    pub name: String,
    pub rows: u64,
    /// Data and indexes.
    pub bytes: u64,
}

impl Store {
    /// The server's version and uptime, the schema version and the size of
    /// each table of the pool's database.
    pub async fn status(&self) -> Result<DbStatus, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.err(e))?;
        let uptime: Option<(String, String)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Uptime'")
            .await
            .map_err(|e| self.err(e))?;
        let tables: Vec<(String, Option<u64>, Option<u64>)> = conn
            .query(
                "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
                 ORDER BY DATA_LENGTH + INDEX_LENGTH DESC, TABLE_NAME",
            )
            .await
            .map_err(|e| self.err(e))?;
        let applied = self.applied_migrations(&mut conn).await?;
        Ok(DbStatus {
            version: version.unwrap_or_default(),
            uptime_secs: uptime.and_then(|(_, v)| v.parse().ok()).unwrap_or(0),
            schema_version: applied.iter().copied().max().unwrap_or(0),
            pending_migrations: crate::migrate::pending_of(&applied),
            tables: tables
                .into_iter()
                .map(|(name, rows, bytes)| TableSize {
                    name,
                    rows: rows.unwrap_or(0),
                    bytes: bytes.unwrap_or(0),
                })
                .collect(),
        })
    }
}
