//! MySQL (MariaDB) for Sluice: a connection pool, the forward-only migration
//! runner for `sql/`, and typed queries.
//!
//! Every query is parameterized. Migrations are compiled into the binary, so a
//! deployed service migrates without the source tree.

mod blocks;
mod earnings;
mod fees;
mod ledger;
mod migrate;
mod payouts;
mod recount;
mod status;
mod users;
mod work;
mod workers;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

pub use blocks::{BlockStatus, BlockWork, FoundBlock, ListedBlock, Unsettled};
pub use earnings::{EarnedBlock, UserEntry, UserPayout};
pub use fees::FeeRecord;
pub use ledger::{BlockToCredit, CreditedBlock, Settling};
pub use migrate::{MIGRATIONS, Migration};
pub use payouts::{Due, OpenPayout, PayoutRow};
pub use status::{DbStatus, TableSize};
pub use users::User;
pub use work::WorkBatch;
pub use workers::KnownWorker;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("invalid MySQL URL: {0}")]
    Url(String),
    /// The server refused or failed a request.
    #[error("mysql at {addr}: {source}")]
    Mysql {
        /// host:port the pool connects to.
        addr: String,
        /// The driver's error.
        source: mysql_async::Error,
    },
    /// An applied migration no longer matches its file.
    #[error(
        "migration {version} ({name}) was applied with checksum {applied} but the file now has {current}: migrations are forward-only, add a new one instead"
    )]
    ChecksumMismatch {
        /// Migration number.
        version: u32,
        /// Migration name.
        name: &'static str,
        /// Checksum recorded when applied.
        applied: String,
        /// Checksum of the compiled-in file.
        current: String,
    },
    /// The server did not answer in time.
    #[error("mysql at {addr}: no answer within {after:?}")]
    Timeout {
        /// host:port.
        addr: String,
        /// How long we waited.
        after: Duration,
    },
    /// Another process held the migration lock for too long.
    #[error("could not take the migration lock within {0:?}")]
    LockTimeout(Duration),
    /// Another writer changed what this write was based on (two payers at
    /// once): nothing was written.
    #[error("{0}: another writer got there first; nothing written")]
    Conflict(String),
    /// A stored value is not what the schema promises.
    #[error("{table}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// The `[mysql]` section of a service's configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/db`.
    pub url: String,
}

impl MysqlConfig {
    /// Checks that `url` parses, so a typo is a config error at start.
    pub fn validate(&self) -> Result<(), String> {
        Opts::from_url(&self.url)
            .map(|_| ())
            .map_err(|e| format!("mysql.url: {e}"))
    }
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            url: "mysql://sluice:sluice@127.0.0.1:3306/sluice".into(),
        }
    }
}

/// A pool of connections to one database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    addr: String,
}

impl Store {
    /// A pool for `url` (`mysql://user:pass@host:port/db`). Connects lazily:
    /// use [`Store::ping`] to find out whether the server answers.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let opts = Opts::from_url(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let addr = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let constraints = PoolConstraints::new(0, 16).expect("0 <= 16");
        let builder = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(constraints))
            .stmt_cache_size(Some(64));
        Ok(Store {
            pool: Pool::new(builder),
            addr,
        })
    }

    /// The underlying pool, for services' own typed queries.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// host:port of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn err(&self, source: mysql_async::Error) -> StoreError {
        StoreError::Mysql {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Round trip to the server, given up after 5 seconds.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let after = Duration::from_secs(5);
        let round_trip = async {
            let mut conn = self.pool.get_conn().await.map_err(|e| self.err(e))?;
            conn.ping().await.map_err(|e| self.err(e))
        };
        tokio::time::timeout(after, round_trip)
            .await
            .map_err(|_| StoreError::Timeout {
                addr: self.addr.clone(),
                after,
            })?
    }

    /// Closes every connection.
    pub async fn close(self) {
        if let Err(error) = self.pool.disconnect().await {
            tracing::warn!(%error, addr = %self.addr, "closing the mysql pool");
        }
    }
}
