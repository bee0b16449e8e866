//! `mining_workers` as statshttpd last flushed it: the workers a user has
//! had, online or not. (statshttpd writes the table; its live windows forget
//! a worker after an hour without a share, the table keeps it.)

use mysql_async::prelude::{FromRow, Query, WithParams};

use crate::{Store, StoreError};

/// A worker as its row last had it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct KnownWorker {
    /// Worker id (a hash of the name; 0 is the user's row, never listed).
    pub worker_id: i64,
    /// Its name.
    pub worker_name: String,
    /// Accepted shares it had when last flushed.
    pub accept_count: u64,
    /// Where its last share came from.
    pub last_share_ip: String,
    /// Unix seconds of its last share, if it ever had one.
    pub last_share_secs: Option<u64>,
}

impl Store {
    /// `user_id`'s workers whose last share is at or after unix second
    /// `since` (those never seen sharing are left out), newest first, at
    /// most `limit`.
    pub async fn known_workers(
        &self,
        user_id: u32,
        since: u64,
        limit: u32,
    ) -> Result<Vec<KnownWorker>, StoreError> {
        // TIMESTAMPDIFF from the epoch reads the DATETIME as the UTC it was
        // written in, whatever the session's time zone (UNIX_TIMESTAMP would
        // apply it).
        "SELECT worker_id, worker_name, accept_count, last_share_ip, \
         CAST(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', last_share_time) AS UNSIGNED) \
         AS last_share_secs \
         FROM mining_workers \
         WHERE user_id = ? AND worker_id <> 0 AND last_share_time IS NOT NULL \
           AND last_share_time >= TIMESTAMPADD(SECOND, ?, '1970-01-01 00:00:00') \
         ORDER BY last_share_time DESC LIMIT ?"
            .with((user_id, since, limit))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))
    }
}
