//! The nodes jobmaker mines on (`[[nodes]]`, the same entries as
//! gbtmaker's), asked for their best block where a template's tip must be
//! confirmed: when a term starts (RawGbt's tail may hold another chain's
//! templates: the pool ran on another node before) and when a rival tip
//! arrives (the current tip's node may have been replaced or reorganized).

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::BlockHash;
use sluice_node::{NodeConfig, NodeRpc};

/// How long a node has to answer: the term's first job waits for it.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The configured nodes.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    configs: Vec<NodeConfig>,
    names: Vec<String>,
}

impl Nodes {
    pub(crate) fn new(configs: &[NodeConfig]) -> Self {
        Nodes {
            configs: configs.to_vec(),
            names: configs.iter().map(|n| n.name.clone()).collect(),
        }
    }

    /// The entry of node `name`.
    pub(crate) fn config(&self, name: &str) -> Option<&NodeConfig> {
        self.configs.iter().find(|n| n.name == name)
    }

    /// Their names, as RawGbt's `node_id` gives them.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The best block of node `name` (`getblockchaininfo`), or `None` when
    /// it is not configured or does not answer in time (logged).
    pub(crate) async fn best_block(&self, name: &str) -> Option<BlockHash> {
        let node = self.config(name)?;
        let asked = async { NodeRpc::new(node, ASK_TIMEOUT)?.tip().await };
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Ok(tip)) => Some(tip.best),
            Ok(Err(error)) => {
                tracing::warn!(node = name, %error, "cannot ask the node for its best block");
                None
            }
            Err(_) => {
                tracing::warn!(node = name, timeout = ?ASK_TIMEOUT, "the node did not say its best block in time");
                None
            }
        }
    }

    /// Every node's best block, asked at once; nodes that do not answer are
    /// left out.
    pub(crate) async fn best_blocks(&self) -> HashMap<String, BlockHash> {
        let asks = self.names.iter().map(|name| async move {
            self.best_block(name).await.map(|best| (name.clone(), best))
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
