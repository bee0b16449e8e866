//! The forward-only migration runner.
//!
//! `sql/NNNN_name.sql` files are compiled in. `schema_migrations` records each
//! applied number with a checksum of its text; an edited applied migration is
//! an error, not silently skipped. A MySQL advisory lock (`GET_LOCK`) makes
//! concurrent runners (several services starting at once) take turns.

use std::time::Duration;

use mysql_async::prelude::{Query, Queryable, WithParams};

use crate::{Store, StoreError};

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: the order it is applied in.
    pub version: u32,
    /// The file name without number and extension.
    pub name: &'static str,
    /// The SQL, possibly several statements.
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../../sql/", $file, "_", $name, ".sql")),
        }
    };
}

/// Every migration in `sql/`, in order. A test checks this list against the directory.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001", "users"),
    migration!(2, "0002", "mining_workers"),
    migration!(3, "0003", "found_blocks"),
    migration!(4, "0004", "stats"),
    migration!(5, "0005", "users_updated"),
    migration!(6, "0006", "block_status"),
    migration!(7, "0007", "payouts"),
    migration!(8, "0008", "fpps_fees"),
    migration!(9, "0009", "solo"),
];

const LOCK_NAME: &str = "sluice.schema_migrations";
const LOCK_WAIT: Duration = Duration::from_secs(60);

impl Migration {
    /// FNV-1a 64 of the SQL text, hex: enough to notice an edited file.
    pub fn checksum(&self) -> String {
        let hash = self.sql.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("{hash:016x}")
    }
}

impl Store {
    /// Applies every migration not yet applied; returns the numbers applied now.
    pub async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        self.migrate_with(MIGRATIONS).await
    }

    /// Numbers of compiled-in migrations the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<u32>, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let applied = self.applied_migrations(&mut conn).await?;
        Ok(pending_of(&applied))
    }

    /// Numbers of the migrations `schema_migrations` records (none before
    /// the first migration made it).
    pub(crate) async fn applied_migrations(
        &self,
        conn: &mut mysql_async::Conn,
    ) -> Result<Vec<u32>, StoreError> {
        let exists: Option<String> = conn
            .query_first("SHOW TABLES LIKE 'schema_migrations'")
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        conn.query("SELECT version FROM schema_migrations")
            .await
            .map_err(|e| self.err(e))
    }

    /// [`Store::migrate`] with an explicit list (tests use it to simulate edits).
    pub async fn migrate_with(&self, migrations: &[Migration]) -> Result<Vec<u32>, StoreError> {
        let mut conn = self.pool().get_conn().await.map_err(|e| self.err(e))?;
        let locked: Option<i64> = "SELECT GET_LOCK(?, ?)"
            .with((LOCK_NAME, LOCK_WAIT.as_secs()))
            .first(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if locked != Some(1) {
            return Err(StoreError::LockTimeout(LOCK_WAIT));
        }
        let result = self.apply(&mut conn, migrations).await;
        // The lock also dies with the connection; release it explicitly so the
        // pooled connection does not keep it.
        let _: Result<Option<i64>, _> = "SELECT RELEASE_LOCK(?)"
            .with((LOCK_NAME,))
            .first(&mut conn)
            .await;
        result
    }

    async fn apply(
        &self,
        conn: &mut mysql_async::Conn,
        migrations: &[Migration],
    ) -> Result<Vec<u32>, StoreError> {
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT UNSIGNED NOT NULL PRIMARY KEY,
                name VARCHAR(128) NOT NULL,
                checksum CHAR(16) NOT NULL,
                applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        .await
        .map_err(|e| self.err(e))?;
        let applied: Vec<(u32, String)> = conn
            .query("SELECT version, checksum FROM schema_migrations")
            .await
            .map_err(|e| self.err(e))?;
        let mut newly = Vec::new();
        for m in migrations {
            let current = m.checksum();
            match applied.iter().find(|(v, _)| *v == m.version) {
                Some((_, sum)) if *sum == current => continue,
                Some((_, sum)) => {
                    return Err(StoreError::ChecksumMismatch {
                        version: m.version,
                        name: m.name,
                        applied: sum.clone(),
                        current,
                    });
                }
                None => {}
            }
            tracing::info!(version = m.version, name = m.name, "applying migration");
            conn.query_drop(m.sql).await.map_err(|e| self.err(e))?;
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)"
                .with((m.version, m.name, &current))
                .ignore(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            newly.push(m.version);
        }
        Ok(newly)
    }
}

/// The compiled-in migrations not among `applied`.
pub(crate) fn pending_of(applied: &[u32]) -> Vec<u32> {
    MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect()
}
