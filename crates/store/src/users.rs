//! The `users` table: who may mine.

use mysql_async::prelude::{FromRow, Query, WithParams};

use crate::{Store, StoreError};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct User {
    /// Account id, carried in every share.
    pub id: u32,
    /// Account name (the part of a login before the dot).
    pub name: String,
    /// Disabled accounts may not authorize.
    pub disabled: bool,
    /// A solo miner: its name is the address its blocks pay.
    pub solo: bool,
}

impl Store {
    /// The user called `name` (case-insensitive), if any.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        "SELECT id, name, disabled, solo FROM users WHERE name = ?"
            .with((name,))
            .first(self.pool())
            .await
            .map_err(|e| self.err(e))
    }

    /// Users whose row changed at or after unix second `since` (0: all),
    /// and the newest change among them (`since` if none): the next call's
    /// `since`. Rows changed within that same second are read again, never
    /// missed.
    pub async fn users_changed_since(&self, since: u64) -> Result<(Vec<User>, u64), StoreError> {
        let rows: Vec<(u32, String, bool, bool, u64)> = "SELECT id, name, disabled, solo, \
             CAST(UNIX_TIMESTAMP(updated_at) AS UNSIGNED) FROM users \
             WHERE updated_at >= FROM_UNIXTIME(?)"
            .with((since,))
            .fetch(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        let newest = rows.iter().map(|r| r.4).max().unwrap_or(since).max(since);
        let users = rows
            .into_iter()
            .map(|(id, name, disabled, solo, _)| User {
                id,
                name,
                disabled,
                solo,
            })
            .collect();
        Ok((users, newest))
    }

    /// Adds a user, or returns the existing one of that name.
    pub async fn ensure_user(&self, name: &str) -> Result<User, StoreError> {
        self.insert_user(name, false).await
    }

    /// Adds a solo miner named by its address, or returns the existing user
    /// of that name (solo or not: a pooled user keeps its kind).
    pub async fn ensure_solo_user(&self, address: &str) -> Result<User, StoreError> {
        self.insert_user(address, true).await
    }

    async fn insert_user(&self, name: &str, solo: bool) -> Result<User, StoreError> {
        "INSERT INTO users (name, solo) VALUES (?, ?) ON DUPLICATE KEY UPDATE id = id"
            .with((name, solo))
            .ignore(self.pool())
            .await
            .map_err(|e| self.err(e))?;
        self.user_by_name(name).await?.ok_or_else(|| {
            self.err(mysql_async::Error::Other(
                format!("user {name:?} vanished after insert").into(),
            ))
        })
    }
}
