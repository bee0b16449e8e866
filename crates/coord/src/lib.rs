//! ZooKeeper for Sluice: unique small ids for sservers (the extranonce1
//! prefix) and leader election with an epoch for jobmaker.
//!
//! Paths live under a configurable root (default `/sluice`), so several pools
//! can share one ensemble:
//! - `<root>/<service>/ids/<id>`: ephemeral; the lowest free id in a range.
//! - `<root>/<service>/election/n-<seq>`: ephemeral sequential; the lowest
//!   sequence leads and its sequence number is the leader's epoch, which only
//!   grows, so followers can ignore a deposed leader's output.
//!
//! Ephemeral nodes vanish when the session ends: a crashed holder frees its id
//! and its leadership after the session timeout, a cleanly closed one at once.

mod election;
mod ids;

use std::time::Duration;

pub use zookeeper_client::SessionState;
use zookeeper_client::{Acls, Client, CreateMode};

pub use election::{Candidate, Leadership};
pub use ids::IdLease;

/// What can go wrong with ZooKeeper.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// Could not connect or keep a session.
    #[error("zookeeper at {addr}: {source}")]
    Connect {
        /// The connect string.
        addr: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
    /// A request failed.
    #[error("zookeeper {op} {path}: {source}")]
    Request {
        /// What was attempted.
        op: &'static str,
        /// On which node.
        path: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
    /// Every id in the range is held.
    #[error("no free id in {first}..={last} under {path}: every id is held by a live session")]
    NoFreeId {
        /// The ids directory.
        path: String,
        /// Lowest id tried.
        first: u32,
        /// Highest id tried.
        last: u32,
    },
    /// The session thread could not take the connect (it is gone).
    #[error("zookeeper at {addr}: the session thread is gone ({why})")]
    SessionThread {
        /// The connect string.
        addr: String,
        /// Why.
        why: String,
    },
    /// The root path is not absolute or ends with a slash.
    #[error("zookeeper root {0:?} must start with '/' and not end with one")]
    BadRoot(String),
}

/// How to reach ZooKeeper.
#[derive(Debug, Clone)]
pub struct CoordConfig {
    /// `host:port[,host:port...]`.
    pub connect: String,
    /// Prefix of every path (the "chroot"), e.g. `/sluice`.
    pub root: String,
    /// Session timeout: how long a crashed process keeps its ids and leadership.
    pub session_timeout: Duration,
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            connect: "127.0.0.1:2181".to_owned(),
            root: "/sluice".to_owned(),
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// The `[zookeeper]` section of a service's configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZkConfig {
    /// `host:port[,…]`.
    pub connect: String,
    /// Path prefix shared by the pool's services.
    pub root: String,
    /// How long a crashed process keeps its ids and leadership.
    pub session_timeout_ms: u64,
}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            connect: "127.0.0.1:2181".into(),
            root: "/sluice".into(),
            session_timeout_ms: 6_000,
        }
    }
}

impl ZkConfig {
    /// Checks what ZooKeeper itself would refuse.
    pub fn validate(&self) -> Result<(), String> {
        if self.session_timeout_ms < 2_000 {
            return Err("zookeeper.session_timeout_ms must be at least 2000".into());
        }
        if !self.root.starts_with('/') || self.root.ends_with('/') {
            return Err(format!(
                "zookeeper.root {:?} must start with '/' and not end with one",
                self.root
            ));
        }
        Ok(())
    }

    /// The connection settings.
    pub fn coord(&self) -> CoordConfig {
        CoordConfig {
            connect: self.connect.clone(),
            root: self.root.clone(),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
        }
    }
}

/// One ZooKeeper session.
#[derive(Debug, Clone)]
pub struct Coord {
    client: Client,
    root: String,
}

/// The runtime every session's client runs on: one thread of its own, so a
/// service busy with thousands of miners (sserver accepting a reconnect
/// storm: thousands of handshakes queued on its runtime) never delays its
/// ZooKeeper pings past the session timeout and loses its id to load.
fn session_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = tx.send(Some(runtime.handle().clone()));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(error) => {
                        tracing::error!(%error, "no runtime for ZooKeeper sessions; they share the service's");
                        let _ = tx.send(None);
                    }
                }
            })
            .ok()
            .and_then(|_| rx.recv().ok().flatten())
            .unwrap_or_else(tokio::runtime::Handle::current)
    })
}

impl Coord {
    /// Opens a session.
    pub async fn connect(config: &CoordConfig) -> Result<Self, CoordError> {
        if !config.root.starts_with('/') || config.root.ends_with('/') {
            return Err(CoordError::BadRoot(config.root.clone()));
        }
        let (addr, timeout) = (config.connect.clone(), config.session_timeout);
        // The client serves its session (pings, reconnects) on the runtime
        // it is connected from: this one has a thread to itself.
        let connecting = session_runtime().spawn(async move {
            Client::connector()
                .with_session_timeout(timeout)
                .with_connection_timeout(Duration::from_secs(5))
                .with_fail_eagerly()
                .connect(&addr)
                .await
        });
        let client = connecting
            .await
            .map_err(|e| CoordError::SessionThread {
                addr: config.connect.clone(),
                why: e.to_string(),
            })?
            .map_err(|source| CoordError::Connect {
                addr: config.connect.clone(),
                source,
            })?;
        Ok(Coord {
            client,
            root: config.root.clone(),
        })
    }

    /// The session's current state.
    pub fn state(&self) -> SessionState {
        self.client.state()
    }

    /// Resolves when the session can no longer be used (expired, closed or
    /// refused): every id and leadership it held is gone, and the caller must
    /// connect again.
    pub async fn session_ended(&self) -> SessionState {
        let mut watcher = self.client.state_watcher();
        let mut state = watcher.state();
        while !state.is_terminated() {
            state = watcher.changed().await;
        }
        state
    }

    /// Resolves when `path` no longer exists or the session has ended (an
    /// ended session has lost its ephemeral nodes). A lost *connection* is
    /// not the end: the client reconnects within the session timeout and the
    /// ephemeral nodes survive, so this waits for the reconnect and looks again.
    async fn wait_gone(&self, path: &str) {
        let mut state = self.client.state_watcher();
        loop {
            match self.client.check_and_watch_stat(path).await {
                Ok((Some(_), watcher)) => {
                    watcher.changed().await;
                }
                Ok((None, _)) => return,
                Err(error) => {
                    if state.peek_state().is_terminated() {
                        return;
                    }
                    tracing::debug!(%path, %error, "zookeeper unreachable; waiting for the session to reconnect");
                    // A state change (reconnected, expired) is worth another
                    // look; so is a second, in case the change came first.
                    let _ = tokio::time::timeout(Duration::from_secs(1), state.changed()).await;
                }
            }
        }
    }

    /// `<root>/<service>/<leaf>`, created (persistent) if missing.
    async fn dir(&self, service: &str, leaf: &str) -> Result<String, CoordError> {
        let path = format!("{}/{service}/{leaf}", self.root);
        let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
        self.client
            .mkdir(&path, &options)
            .await
            .map_err(|source| CoordError::Request {
                op: "mkdir",
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}
