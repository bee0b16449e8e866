//! Leader election: ephemeral sequential candidates, lowest sequence leads.
//!
//! Each candidate watches only its predecessor (no herd effect). The leader's
//! sequence number is its epoch: ZooKeeper hands out sequence numbers in
//! increasing order, so a later leader always has a higher epoch.

use zookeeper_client::{Acls, CreateMode, Error as ZkError};

use crate::{Coord, CoordError};

const PREFIX: &str = "n-";

/// A registered candidate, waiting for or holding leadership.
#[derive(Debug)]
pub struct Candidate {
    coord: Coord,
    dir: String,
    node: String,
    epoch: u64,
}

/// Proof of leadership: the epoch to stamp on everything the leader produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// Strictly greater than every earlier leader's.
    pub epoch: u64,
}

impl Coord {
    /// Registers as a candidate for `<root>/<service>/election`, with `info`
    /// (host, pid) in the node for operators.
    pub async fn candidate(&self, service: &str, info: &[u8]) -> Result<Candidate, CoordError> {
        let dir = self.dir(service, "election").await?;
        let prefix = format!("{dir}/{PREFIX}");
        let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
        let (_, seq) = self
            .client
            .create(&prefix, info, &options)
            .await
            .map_err(|source| CoordError::Request {
                op: "create",
                path: prefix.clone(),
                source,
            })?;
        let epoch = u64::try_from(seq.into_i64()).expect("ZooKeeper sequences are non-negative");
        let node = format!("{PREFIX}{seq}");
        tracing::info!(%dir, %node, epoch, "registered as leader candidate");
        Ok(Candidate {
            coord: self.clone(),
            dir,
            node,
            epoch,
        })
    }
}

impl Candidate {
    /// This candidate's epoch, should it lead.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This candidate's node.
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir, self.node)
    }

    /// Waits until every candidate before this one is gone.
    pub async fn leadership(&self) -> Result<Leadership, CoordError> {
        loop {
            let mut children =
                self.coord
                    .client
                    .list_children(&self.dir)
                    .await
                    .map_err(|source| CoordError::Request {
                        op: "list",
                        path: self.dir.clone(),
                        source,
                    })?;
            children.retain(|c| c.starts_with(PREFIX));
            children.sort_by_key(|c| sequence(c));
            let Some(pos) = children.iter().position(|c| *c == self.node) else {
                // Our node is gone: the session ended under us.
                return Err(CoordError::Request {
                    op: "campaign",
                    path: format!("{}/{}", self.dir, self.node),
                    source: ZkError::NoNode,
                });
            };
            if pos == 0 {
                tracing::info!(epoch = self.epoch, "elected leader");
                return Ok(Leadership { epoch: self.epoch });
            }
            let predecessor = format!("{}/{}", self.dir, children[pos - 1]);
            match self.coord.client.check_and_watch_stat(&predecessor).await {
                Ok((Some(_), watcher)) => {
                    watcher.changed().await;
                }
                Ok((None, _)) => {}
                Err(source) => {
                    return Err(CoordError::Request {
                        op: "watch",
                        path: predecessor,
                        source,
                    });
                }
            }
        }
    }

    /// Resolves when this candidate's node is gone (session ended or resigned):
    /// a leader must stop producing then.
    pub async fn lost(&self) {
        self.coord.wait_gone(&self.path()).await;
    }

    /// Leaves the election (a standby takes over at once).
    pub async fn resign(self) -> Result<(), CoordError> {
        let path = format!("{}/{}", self.dir, self.node);
        match self.coord.client.delete(&path, None).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(source) => Err(CoordError::Request {
                op: "delete",
                path,
                source,
            }),
        }
    }
}

fn sequence(node: &str) -> u64 {
    node.strip_prefix(PREFIX)
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}
