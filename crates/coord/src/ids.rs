//! Unique small ids: the lowest free integer in a range, held by an ephemeral node.

use std::ops::RangeInclusive;

use zookeeper_client::{Acls, CreateMode, Error as ZkError};

use crate::{Coord, CoordError};

/// An id held by this session.
#[derive(Debug)]
pub struct IdLease {
    coord: Coord,
    id: u32,
    path: String,
}

impl Coord {
    /// Takes the lowest id in `range` that no live session holds under
    /// `<root>/<service>/ids`, storing `info` (e.g. host and pid) in its node.
    pub async fn acquire_id(
        &self,
        service: &str,
        range: RangeInclusive<u32>,
        info: &[u8],
    ) -> Result<IdLease, CoordError> {
        let dir = self.dir(service, "ids").await?;
        let taken =
            self.client
                .list_children(&dir)
                .await
                .map_err(|source| CoordError::Request {
                    op: "list",
                    path: dir.clone(),
                    source,
                })?;
        let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        for id in range.clone() {
            if taken.iter().any(|t| t.parse() == Ok(id)) {
                continue;
            }
            let path = format!("{dir}/{id}");
            match self.client.create(&path, info, &options).await {
                Ok(_) => {
                    tracing::info!(%path, id, "acquired id");
                    return Ok(IdLease {
                        coord: self.clone(),
                        id,
                        path,
                    });
                }
                // Another process took it since the listing: try the next.
                Err(ZkError::NodeExists) => continue,
                Err(source) => {
                    return Err(CoordError::Request {
                        op: "create",
                        path,
                        source,
                    });
                }
            }
        }
        Err(CoordError::NoFreeId {
            path: dir,
            first: *range.start(),
            last: *range.end(),
        })
    }
}

impl IdLease {
    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolves when the id is no longer held by this session (node deleted or
    /// session ended). A server must stop handing out work under it then.
    pub async fn lost(&self) {
        self.coord.wait_gone(&self.path).await;
    }

    /// Gives the id back now instead of at session end.
    pub async fn release(self) -> Result<(), CoordError> {
        match self.coord.client.delete(&self.path, None).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(source) => Err(CoordError::Request {
                op: "delete",
                path: self.path,
                source,
            }),
        }
    }
}
