//! One node's loop: fetch a template when the poll interval elapses, at once
//! when ZMQ announces a block (or a long poll returns, where ZMQ is not
//! configured), publish it, and back off while the node or Kafka fails.
//!
//! Every template carries what jobmaker needs to tell the best tip and the
//! right chain: the node's network (`getblockchaininfo`, asked once per
//! connection) and the chain work of the block it builds on
//! (`getblockheader`, once per tip: on a ZMQ announcement asked together
//! with the template, so it costs the new block's path no time).

use std::sync::Arc;
use std::time::Duration;

use bitcoin::pow::Work;
use bitcoin::{BlockHash, Network};
use sluice_bus::{Producer, Topic};
use sluice_core::BlockTemplate;
use sluice_service::{Backoff, Health};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::GbtMetrics;
use sluice_node::zmq::{self, HashBlock, subscribe};
use sluice_node::{NodeConfig, NodeRpc, to_template};

/// What every node loop shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) producer: Producer,
    pub(crate) topic: Topic<BlockTemplate>,
    pub(crate) health: Health,
    pub(crate) metrics: GbtMetrics,
    pub(crate) poll_interval: Duration,
    pub(crate) rpc_timeout: Duration,
    pub(crate) empty_block_jobs: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a fetch was made, and since when the news is waiting.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Poll,
    Block(HashBlock),
}

pub(crate) async fn run(node: NodeConfig, shared: Shared, token: CancellationToken) {
    let component = format!("node:{}", node.name);
    shared.health.set(&component, false, "starting");
    let (tx, mut rx) = mpsc::channel::<HashBlock>(64);
    let reconnect = Arc::new(Notify::new());
    if let Some(endpoint) = node.zmq_hashblock.clone() {
        tokio::spawn(subscribe(
            node.name.clone(),
            endpoint,
            zmq::Topic::HashBlock,
            tx,
            reconnect.clone(),
            token.clone(),
        ));
    } else {
        tokio::spawn(long_poll(node.clone(), shared.clone(), tx, token.clone()));
    }

    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    let mut next = Duration::ZERO;
    let mut last_prev: Option<BlockHash> = None;
    let mut announced: Option<BlockHash> = None;
    let mut chain = Chain::default();
    loop {
        let trigger = tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(next) => Trigger::Poll,
            Some(hb) = rx.recv() => Trigger::Block(hb),
        };
        if let Trigger::Block(hb) = trigger {
            announced = Some(hb.hash);
            if shared.empty_block_jobs {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = chain.publish_empty(&node, &shared, hb) => {}
                }
            }
        }
        let fetched = tokio::select! {
            () = token.cancelled() => return,
            fetched = fetch_and_publish(&node, &shared, trigger, &mut chain) => fetched,
        };
        match fetched {
            Ok(template) => {
                shared.health.set(
                    &component,
                    true,
                    format!("template for height {}", template.height),
                );
                backoff.reset();
                next = shared.poll_interval;
                // A new tip found by polling that ZMQ never announced: the
                // subscription is silently dead.
                let new_tip = last_prev.is_some_and(|p| p != template.prev_blockhash);
                if new_tip
                    && node.zmq_hashblock.is_some()
                    && announced != Some(template.prev_blockhash)
                {
                    shared.metrics.zmq_misses.inc();
                    reconnect.notify_one();
                }
                last_prev = Some(template.prev_blockhash);
                chain.version = Some(template.version);
            }
            Err(error) => {
                // The node may come back as another one (another network).
                chain.network = None;
                shared.health.set(&component, false, error.to_string());
                // Only a scheduled retry backs off further: announcements
                // queued while the node was away, each failing at once, took
                // the backoff to its 30 s in milliseconds, and a node back
                // (or replaced, with another chain) waited that long.
                if matches!(trigger, Trigger::Poll) || next == shared.poll_interval {
                    next = backoff.take();
                }
                tracing::warn!(node = %node.name, %error, retry_in = ?next, "no template");
            }
        }
    }
}

/// What is known of a node's chain: its network (asked once), the work of
/// the last tip a template built on, and the version its last template had
/// (what an empty-block template needs besides the announced header).
#[derive(Default)]
struct Chain {
    network: Option<Network>,
    tip_work: Option<(BlockHash, Work)>,
    version: Option<bitcoin::block::Version>,
}

impl Chain {
    /// The node's network, asked once (`None` for a chain this build does
    /// not know, or a node that does not answer: told, not fatal).
    async fn network(&mut self, node: &NodeConfig, rpc: &NodeRpc) -> Option<Network> {
        if self.network.is_none() {
            match rpc.chain().await {
                Ok(chain) => {
                    self.network = sluice_node::network_of_chain(&chain);
                    if self.network.is_none() {
                        tracing::warn!(node = %node.name, chain, "unknown chain: templates go out without a network");
                    }
                }
                Err(error) => {
                    tracing::warn!(node = %node.name, %error, "cannot ask the node's chain")
                }
            }
        }
        self.network
    }

    /// Remembers the work of a header the node described.
    fn learn(&mut self, header: &sluice_node::HeaderInfo) {
        self.tip_work = Some((header.hash, header.chain_work));
    }

    /// The chain work of `tip`, asked of the node unless known (`None`,
    /// told, when it does not answer: the template goes out without it).
    async fn work_of(&mut self, node: &NodeConfig, rpc: &NodeRpc, tip: BlockHash) -> Option<Work> {
        if self.tip_work.is_none_or(|(hash, _)| hash != tip) {
            match rpc.header(tip).await {
                Ok(header) => self.learn(&header),
                Err(error) => {
                    tracing::warn!(node = %node.name, %tip, %error, "cannot ask the tip's chain work");
                    return None;
                }
            }
        }
        self.tip_work
            .filter(|(hash, _)| *hash == tip)
            .map(|(_, work)| work)
    }

    /// Publishes a template for an empty block on the announced one, unless
    /// its `bits` cannot be known or nothing is known of the node yet. A
    /// failure only costs the head start: the full template follows.
    async fn publish_empty(&mut self, node: &NodeConfig, shared: &Shared, hb: HashBlock) {
        let Some(version) = self.version else { return };
        let made = async {
            let rpc = NodeRpc::new(node, shared.rpc_timeout)?;
            let Some(network) = self.network(node, &rpc).await else {
                return Ok(None);
            };
            let (tip, template) = rpc.empty_template_on(network, hb.hash, version).await?;
            self.learn(&tip);
            let Some(template) = template else {
                return Ok(None);
            };
            shared
                .producer
                .send(&shared.topic, &template.id.0, &template)
                .await?;
            anyhow::Ok(Some(template))
        };
        match made.await {
            Ok(Some(t)) => {
                shared.metrics.empty_published.inc();
                tracing::debug!(node = %node.name, height = t.height, latency = ?hb.at.elapsed(),
                    "empty-block template published");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(node = %node.name, %error, "no empty-block template; the full one follows");
            }
        }
    }
}

async fn fetch_and_publish(
    node: &NodeConfig,
    shared: &Shared,
    trigger: Trigger,
    chain: &mut Chain,
) -> anyhow::Result<BlockTemplate> {
    let since = match trigger {
        Trigger::Poll => Instant::now(),
        Trigger::Block(hb) => hb.at,
    };
    // A fresh client per fetch re-reads a cookie file a restarted node rewrote.
    let rpc = NodeRpc::new(node, shared.rpc_timeout)?;
    let gbt = match trigger {
        // The announced block's work is asked beside its template.
        Trigger::Block(hb) if chain.tip_work.is_none_or(|(h, _)| h != hb.hash) => {
            let (gbt, header) = tokio::join!(rpc.template(None), rpc.header(hb.hash));
            if let Ok(header) = header {
                chain.learn(&header);
            }
            gbt?
        }
        _ => rpc.template(None).await?,
    };
    let mut template = to_template(&node.name, gbt, sluice_service::now_ms())?;
    template.network = chain.network(node, &rpc).await;
    template.chain_work = chain.work_of(node, &rpc, template.prev_blockhash).await;
    publish(node, shared, template, since).await
}

/// Publishes keyed by template id, records the latency from `since`.
async fn publish(
    node: &NodeConfig,
    shared: &Shared,
    template: BlockTemplate,
    since: Instant,
) -> anyhow::Result<BlockTemplate> {
    // While the broker is away this waits; /health reports it (lib.rs).
    shared
        .producer
        .send(&shared.topic, &template.id.0, &template)
        .await?;
    let latency = since.elapsed();
    shared.metrics.published.inc();
    shared.metrics.latency.observe(latency.as_secs_f64());
    tracing::debug!(node = %node.name, height = template.height, txs = template.transactions.len(),
        id = %template.id, ?latency, "template published");
    Ok(template)
}

/// Without ZMQ: long-poll `getblocktemplate` and announce each new tip.
async fn long_poll(
    node: NodeConfig,
    shared: Shared,
    out: mpsc::Sender<HashBlock>,
    token: CancellationToken,
) {
    let mut longpoll_id: Option<String> = None;
    let mut prev: Option<BlockHash> = None;
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    while !token.is_cancelled() {
        let rpc = match NodeRpc::new(&node, shared.rpc_timeout.max(Duration::from_secs(120))) {
            Ok(rpc) => rpc,
            Err(_) => {
                if !backoff.wait(&token).await {
                    return;
                }
                continue;
            }
        };
        let answer = tokio::select! {
            () = token.cancelled() => return,
            answer = rpc.template(longpoll_id.clone()) => answer,
        };
        match answer {
            Ok(gbt) => {
                backoff.reset();
                longpoll_id = Some(gbt.longpollid.clone());
                if prev.is_some_and(|p| p != gbt.previous_block_hash) {
                    let _ = out
                        .send(HashBlock {
                            hash: gbt.previous_block_hash,
                            header: None,
                            at: Instant::now(),
                        })
                        .await;
                }
                prev = Some(gbt.previous_block_hash);
            }
            Err(error) => {
                tracing::debug!(node = %node.name, %error, "long poll failed");
                longpoll_id = None;
                if !backoff.wait(&token).await {
                    return;
                }
            }
        }
    }
}
