//! Who may mine: the `users` table, cached.
//!
//! The whole table is read at start; then every `refresh_secs` only the rows
//! changed since the last look (`users.updated_at`: new users, disabled
//! flags), and the whole table again every hour (to forget deleted rows). A
//! login not in the cache is looked up once in MySQL before it is refused, so
//! a user added a second ago can mine at once.
//! With auto-registration on, an unknown name is inserted. If MySQL is down,
//! cached users keep mining and unknown ones get a "try again" error instead
//! of "unknown user".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_service::Health;
use sluice_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// A user allowed to mine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Account {
    /// `users.id`.
    pub id: u32,
    /// `users.disabled`.
    pub disabled: bool,
    /// `users.solo`.
    pub solo: bool,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No such user (and no auto-registration).
    #[error("unknown user {0:?}")]
    Unknown(String),
    /// The account is disabled.
    #[error("user {0:?} is disabled")]
    Disabled(String),
    /// MySQL could not be asked.
    #[error("user database unavailable, try again")]
    Unavailable,
    /// An address no solo block may pay (another network's, or one anyone
    /// could spend).
    #[error("{0}")]
    BadAddress(String),
    /// An address logged in with before the first job arrived: whether it
    /// mines solo is not known yet.
    #[error("no job yet (whether solo mining is offered is not known): try again")]
    NoJobYet,
    /// A solo miner's address while the pool offers no solo mining.
    #[error("{0} mines solo, which this pool does not offer now")]
    SoloOff(String),
}

/// The cache, shared by connections (short locks, never across an await).
#[derive(Debug, Clone)]
pub struct Users {
    store: Store,
    cache: Arc<RwLock<HashMap<String, Account>>>,
    /// `users.updated_at` (unix seconds) of the newest change read.
    seen_until: Arc<AtomicU64>,
    auto_register: bool,
}

/// Incremental refreshes between two full reloads.
const FULL_RELOAD_EVERY: u32 = 120;

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl Users {
    /// Users from `store`.
    pub fn new(store: Store, auto_register: bool) -> Self {
        Users {
            store,
            cache: Arc::default(),
            seen_until: Arc::default(),
            auto_register,
        }
    }

    fn cached(&self, name: &str) -> Option<Account> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key(name))
            .copied()
    }

    fn remember(&self, name: &str, account: Account) {
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key(name), account);
    }

    /// The account for `name`, asking MySQL if it is not cached.
    pub async fn authorize(&self, name: &str) -> Result<u32, AuthError> {
        let account = self.enabled(name, false).await?;
        if account.solo {
            return Err(AuthError::SoloOff(name.to_owned()));
        }
        Ok(account.id)
    }

    /// The account of solo miner `address` (registered on its first
    /// login, whatever `auto_register` says) and whether it is solo: a
    /// pooled user of that name, registered before solo mining was on,
    /// stays pooled.
    pub async fn authorize_solo(&self, address: &str) -> Result<(u32, bool), AuthError> {
        let account = self.enabled(address, true).await?;
        Ok((account.id, account.solo))
    }

    /// The account called `name`, cached or from MySQL (registered if
    /// unknown: as a solo miner with `solo`, else when `auto_register`
    /// says so), unless disabled.
    async fn enabled(&self, name: &str, solo: bool) -> Result<Account, AuthError> {
        let account = match self.cached(name) {
            Some(a) => a,
            None => self.fetch(name, solo).await?,
        };
        if account.disabled {
            return Err(AuthError::Disabled(name.to_owned()));
        }
        Ok(account)
    }

    async fn fetch(&self, name: &str, solo: bool) -> Result<Account, AuthError> {
        let store = &self.store;
        let found = store.user_by_name(name).await.map_err(unavailable)?;
        let user = match found {
            Some(u) => u,
            None if solo => {
                let u = store.ensure_solo_user(name).await.map_err(unavailable)?;
                tracing::info!(
                    user = name,
                    id = u.id,
                    solo = u.solo,
                    "solo miner registered"
                );
                u
            }
            None if self.auto_register => {
                let u = store.ensure_user(name).await.map_err(unavailable)?;
                tracing::info!(user = name, id = u.id, "user registered");
                u
            }
            None => return Err(AuthError::Unknown(name.to_owned())),
        };
        let account = Account {
            id: user.id,
            disabled: user.disabled,
            solo: user.solo,
        };
        self.remember(&user.name, account);
        Ok(account)
    }

    /// Reads the whole table into the cache.
    pub async fn reload(&self) -> Result<usize, StoreError> {
        let (users, newest) = self.store.users_changed_since(0).await?;
        let fresh: HashMap<String, Account> = users.into_iter().map(entry).collect();
        let n = fresh.len();
        *self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        self.seen_until.store(newest, Ordering::Relaxed);
        Ok(n)
    }

    /// Reads the rows changed since the last look into the cache; returns
    /// how many users it holds.
    pub async fn update(&self) -> Result<usize, StoreError> {
        let since = self.seen_until.load(Ordering::Relaxed);
        let (users, newest) = self.store.users_changed_since(since).await?;
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.extend(users.into_iter().map(entry));
        self.seen_until.store(newest, Ordering::Relaxed);
        Ok(cache.len())
    }

    /// Refreshes every `every` until cancelled (changes only, the whole
    /// table every [`FULL_RELOAD_EVERY`] times), reporting in /health.
    pub async fn refresh(self, every: Duration, health: Health, token: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        let mut round = 0u32;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let result = if round.is_multiple_of(FULL_RELOAD_EVERY) {
                self.reload().await
            } else {
                self.update().await
            };
            round = round.wrapping_add(1);
            match result {
                Ok(n) => health.set("mysql", true, format!("{n} users")),
                Err(error) => {
                    health.set("mysql", false, error.to_string());
                    tracing::warn!(%error, "users not refreshed; serving the cached ones");
                }
            }
        }
    }
}

fn entry(u: sluice_store::User) -> (String, Account) {
    let account = Account {
        id: u.id,
        disabled: u.disabled,
        solo: u.solo,
    };
    (key(&u.name), account)
}

fn unavailable(error: StoreError) -> AuthError {
    tracing::warn!(%error, "user lookup failed");
    AuthError::Unavailable
}
