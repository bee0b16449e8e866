//! Empty-block jobs at the node's announcement (issue 30).
//!
//! A new block's full template takes the node milliseconds (nodesim) to
//! hundreds of milliseconds (Bitcoin Core with a full mempool), then RawGbt's
//! hop. The leader itself subscribes to each node's ZMQ `rawblock` (else its
//! `hashblock`): when the node whose template it mines on announces a block,
//! it makes the template of an empty block on it (`sluice_node`: height,
//! subsidy, bits, earliest time) from the block's header alone where the
//! block extends the tip being mined, else from what the node says of the
//! block (`getblockheader`, and at a retarget height the period's first
//! block), and judges it like any template (`select.rs`: more chain work is
//! a new tip). The clean job goes out on the Job topic with the leader's
//! epoch and the next job id, as every job does, one broker hop after the
//! announcement; the full template follows through RawGbt and fills it
//! (`Verdict::Fill`). Only the followed node's announcements count: it
//! passed the gate (network, `[[nodes]]`), and a block another node
//! announces reaches the leader as that node's template.

use std::time::Duration;

use sluice_core::BlockTemplate;
use sluice_node::zmq::{HashBlock, Topic, subscribe};
use sluice_node::{NodeConfig, NodeRpc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How long the node has to describe the announced block: past it the
/// full template is waited for as before.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// A block a node announced.
#[derive(Debug, Clone)]
pub(crate) struct Announced {
    pub(crate) node: String,
    pub(crate) block: HashBlock,
}

/// Subscribes for the term to every node's `rawblock` (its `zmq_rawblock`),
/// or else its `hashblock` (`zmq_hashblock`).
pub(crate) fn listen(nodes: &[NodeConfig], term: &CancellationToken) -> mpsc::Receiver<Announced> {
    let (tx, rx) = mpsc::channel(64);
    for node in nodes {
        let (endpoint, topic) = match (&node.zmq_rawblock, &node.zmq_hashblock) {
            (Some(raw), _) => (raw.clone(), Topic::RawBlock),
            (None, Some(hash)) => (hash.clone(), Topic::HashBlock),
            (None, None) => continue,
        };
        let (blocks, mut from_node) = mpsc::channel(16);
        // Nothing here finds missed announcements (gbtmaker does, by
        // polling): the socket reconnects on its errors only.
        let never = std::sync::Arc::new(Notify::new());
        tokio::spawn(subscribe(
            node.name.clone(),
            endpoint,
            topic,
            blocks,
            never,
            term.clone(),
        ));
        let (tx, name) = (tx.clone(), node.name.clone());
        tokio::spawn(async move {
            while let Some(block) = from_node.recv().await {
                let announced = Announced {
                    node: name.clone(),
                    block,
                };
                if tx.send(announced).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// The template of an empty block on `announced`, from `node`, on
/// `current`'s network with its version: from the announced header alone
/// when it extends `current`'s tip ([`sluice_node::empty_template_after`]),
/// else from what the node says of the block; `None` (logged) when the node
/// does not describe it in time or its next bits are unknown. With it,
/// where it came from (`header` or `node`).
pub(crate) async fn empty_template(
    node: &NodeConfig,
    current: &BlockTemplate,
    network: bitcoin::Network,
    announced: &Announced,
) -> Option<(BlockTemplate, &'static str)> {
    if let Some(header) = &announced.block.header
        && let Some(t) =
            sluice_node::empty_template_after(current, header, sluice_service::now_ms())
    {
        return Some((t, "header"));
    }
    let asked = async {
        NodeRpc::new(node, ASK_TIMEOUT)?
            .empty_template_on(network, announced.block.hash, current.version)
            .await
    };
    match tokio::time::timeout(ASK_TIMEOUT, asked).await {
        Ok(Ok((_, template))) => template.map(|t| (t, "node")),
        Ok(Err(error)) => {
            tracing::warn!(node = node.name, block = %announced.block.hash, %error,
                "no empty-block job: the node did not describe its block");
            None
        }
        Err(_) => {
            tracing::warn!(node = node.name, block = %announced.block.hash,
                "no empty-block job: the node did not describe its block in time");
            None
        }
    }
}
