//! blkmaker: solved shares become blocks on every node, and rows in
//! `found_blocks`; none is lost on the way.
//!
//! - Templates: the last `templates_kept` RawGbt messages, by id, followed
//!   from the tail (`templates.rs`). A SolvedShare names its template, so no
//!   job lookup is needed (btcpool needed job → gbthash).
//! - Shares: SolvedShare in a consumer group of this instance's own
//!   (`sluice-blkmaker-<instance>` unless configured), so each blkmaker sees
//!   every block. A share's offset is stored only once its block has been
//!   submitted and its row written, and in order (`offsets.rs`): a crash or
//!   SIGKILL anywhere before that replays the share.
//! - Assembly (`assemble.rs`): header + coinbase (with the witness reserved
//!   value when it commits to witnesses) + the template's raw transactions,
//!   checked against the header's merkle root and proof of work first. If the
//!   template is unknown it says so (ERROR, metric, event, /health) and still
//!   tries: an empty block needs no template, and a node's current template
//!   may hold exactly the transactions the header commits to.
//! - Submission (`submit.rs`): `submitblock` to every node in parallel;
//!   unreachable nodes are retried for `retry_window_secs`; Core's answers
//!   are kept per node.
//! - Recording: the row is written at the first node's answer and again at
//!   each later one, idempotent on the block hash (per-node results merge), so
//!   replays and a second blkmaker never duplicate it. MySQL being down
//!   delays the row (retried with backoff), never the submission.
//! - The chain (`chain.rs`): a block every node refuses as
//!   `prev-blk-not-found` means the pool mines on a chain its nodes do not
//!   hold: `wrong_chain` in /health until it is seen mining on theirs.

mod assemble;
mod chain;
mod confirm;
mod metrics;
mod offsets;
mod submit;
mod templates;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bitcoin::hex::DisplayHex;
use serde::Deserialize;
use sluice_bus::{BusConfig, GroupConsumer, Producer, Record, Topic, start_heartbeat};
use sluice_core::SolvedShare;
use sluice_core::record::{BlockFound, Event, EventKind, Figure};
pub use sluice_node::NodeConfig;
use sluice_node::{NodeRpc, to_template};
use sluice_service::{Backoff, CommonConfig, Context, Health, Validate};
pub use sluice_store::MysqlConfig;
use sluice_store::{FoundBlock, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::assemble::{AssembleError, Assembled, assemble, is_coinbase_only};
use crate::metrics::BlkMetrics;
use crate::offsets::Offsets;
use crate::submit::{Outcome, submit};
use crate::templates::Templates;

/// blkmaker's configuration (deploy/config/blkmaker.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9104>")]
    pub service: CommonConfig,
    /// `[kafka]`.
    #[serde(default)]
    pub kafka: BusConfig,
    /// `[mysql]`.
    #[serde(default)]
    pub mysql: MysqlConfig,
    /// Every node a block goes to (`[[nodes]]`, as in gbtmaker.toml).
    pub nodes: Vec<NodeConfig>,
    /// Consumer group of SolvedShare; empty means `sluice-blkmaker-<instance>`,
    /// so that every blkmaker instance submits every block.
    #[serde(default)]
    pub group: String,
    /// Templates kept for assembly (btcpool kept 100).
    #[serde(default = "default_templates_kept")]
    pub templates_kept: usize,
    /// How long a share waits for its template to arrive before it is
    /// declared unknown.
    #[serde(default = "default_template_wait")]
    pub template_wait_ms: u64,
    /// How long an unreachable node is retried.
    #[serde(default = "default_retry_window")]
    pub retry_window_secs: u64,
    /// Timeout of one RPC call.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_secs: u64,
    /// Solved shares older than this are not submitted (a new consumer group
    /// starts at the oldest retained share).
    #[serde(default = "default_max_age")]
    pub max_share_age_secs: u64,
    /// How often found blocks are looked up on the nodes (pending and
    /// recently orphaned ones).
    #[serde(default = "default_confirm_interval")]
    pub confirm_interval_secs: u64,
    /// Confirmations that make a block confirmed: 101, when Bitcoin Core's
    /// wallet can spend its coinbase (`COINBASE_MATURITY` 100 blocks on top).
    #[serde(default = "default_mature")]
    pub mature_confirmations: u32,
    /// How long after it was found a block is watched (pending ones until
    /// confirmed, orphaned ones in case they come back).
    #[serde(default = "default_watch_hours")]
    pub watch_hours: u32,
}

fn default_templates_kept() -> usize {
    100
}
fn default_template_wait() -> u64 {
    3_000
}
fn default_retry_window() -> u64 {
    120
}
fn default_rpc_timeout() -> u64 {
    10
}
fn default_max_age() -> u64 {
    3_600
}
fn default_confirm_interval() -> u64 {
    30
}
fn default_mature() -> u32 {
    101
}
fn default_watch_hours() -> u32 {
    7 * 24
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        sluice_node::validate_nodes(&self.nodes)?;
        self.mysql.validate()?;
        if self.templates_kept == 0 {
            return Err("templates_kept must be at least 1".into());
        }
        if self.retry_window_secs == 0 || self.rpc_timeout_secs == 0 {
            return Err("retry_window_secs and rpc_timeout_secs must be positive".into());
        }
        if self.confirm_interval_secs == 0
            || self.mature_confirmations == 0
            || self.watch_hours == 0
        {
            return Err(
                "confirm_interval_secs, mature_confirmations and watch_hours must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The SolvedShare consumer group.
    pub fn group(&self) -> String {
        if self.group.is_empty() {
            format!("sluice-blkmaker-{}", self.service.instance)
        } else {
            self.group.clone()
        }
    }
}

/// Block hashes this process has taken (in flight or finished), so a replay
/// is not submitted again, even one that arrives while the first is in flight.
#[derive(Default)]
struct Recent {
    set: HashSet<bitcoin::BlockHash>,
    order: VecDeque<bitcoin::BlockHash>,
}

const RECENT_KEPT: usize = 1_000;

impl Recent {
    /// True if `hash` was not taken yet (and now is).
    fn claim(&mut self, hash: bitcoin::BlockHash) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > RECENT_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Gives `hash` back: its share was abandoned and is replayed later.
    fn release(&mut self, hash: bitcoin::BlockHash) {
        if self.set.remove(&hash) {
            self.order.retain(|h| *h != hash);
        }
    }
}

/// What every share's task shares.
struct Blkmaker {
    config: Config,
    templates: Arc<Templates>,
    store: Store,
    consumer: GroupConsumer<SolvedShare>,
    events: Producer,
    event_topic: Topic<Event>,
    offsets: Mutex<Offsets>,
    recent: Mutex<Recent>,
    health: Health,
    metrics: BlkMetrics,
    /// Raised while the pool mines on a chain the nodes do not hold.
    wrong_chain: AtomicBool,
    /// Cancelled only when the drain gives up: unfinished shares stay
    /// unacknowledged and are replayed at the next start.
    abandon: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The service: follow templates, handle solved shares until shutdown, then
/// finish what is in flight within the grace period.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let metrics = BlkMetrics::register(&ctx.metrics);
    let templates = Arc::new(Templates::new(config.templates_kept));
    ctx.shutdown.tracker().spawn(templates::follow(
        config.kafka.clone(),
        templates.clone(),
        metrics.templates.clone(),
        ctx.health.clone(),
        token.clone(),
    ));
    let events = Producer::new(&config.kafka, 0)?;
    let event_topic = Topic::new(config.kafka.topics.event.clone());
    let group = config.group();
    let consumer = GroupConsumer::new(
        &config.kafka,
        &Topic::new(config.kafka.topics.solved_share.clone()),
        &group,
    )?;
    let blk = Arc::new(Blkmaker {
        store: Store::new(&config.mysql.url)?,
        templates,
        consumer,
        events: events.clone(),
        event_topic: event_topic.clone(),
        offsets: Mutex::default(),
        recent: Mutex::default(),
        health: ctx.health.clone(),
        metrics: metrics.clone(),
        wrong_chain: AtomicBool::new(false),
        abandon: CancellationToken::new(),
        config,
    });
    ctx.health
        .set("solved", true, format!("waiting in group {group}"));
    ctx.health.set(
        chain::COMPONENT,
        true,
        "no block refused for a parent the nodes lack",
    );
    start_heartbeat(
        &ctx,
        events,
        &blk.config.kafka,
        "blkmaker",
        &blk.config.service.instance,
        {
            let (health, m) = (ctx.health.clone(), metrics.clone());
            move || {
                (
                    health.is_healthy(),
                    vec![
                        Figure::new("templates", m.templates.get() as f64),
                        Figure::new("in_flight", m.in_flight.get() as f64),
                        Figure::new("blocks_accepted", m.accepted.get() as f64),
                    ],
                )
            }
        },
    );
    tracing::info!(
        group,
        nodes = blk.config.nodes.len(),
        "blkmaker consuming solved shares"
    );
    // Awaited before the end: it holds the service's state too.
    let watch = tokio::spawn(confirm::watch(blk.clone(), token.clone()));

    let tasks = TaskTracker::new();
    loop {
        let record = tokio::select! {
            () = token.cancelled() => break,
            r = blk.consumer.next() => r,
        };
        match record {
            Ok(record) => {
                lock(&blk.offsets).begin(record.partition, record.offset);
                blk.metrics.in_flight.inc();
                // Every line of one block's path carries its height and hash.
                let span = tracing::info_span!("block", height = record.value.height,
                    hash = %record.value.block_hash);
                tasks.spawn(handle(blk.clone(), record).instrument(span));
            }
            Err(error) => {
                ctx.health.set("solved", false, error.to_string());
                tracing::error!(%error, "consuming SolvedShare failed; retrying");
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    // Blocks in flight finish if they can within the grace period (less a
    // second to commit); the rest are replayed at the next start.
    tasks.close();
    let grace = blk
        .config
        .service
        .shutdown_grace()
        .saturating_sub(Duration::from_secs(1));
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            open = lock(&blk.offsets).open(),
            "solved shares unfinished at shutdown; they will be replayed"
        );
        blk.abandon.cancel();
        tasks.wait().await;
    }
    if let Err(error) = watch.await {
        tracing::error!(%error, "the confirmation watch failed");
    }
    let blk =
        Arc::into_inner(blk).ok_or_else(|| anyhow::anyhow!("share tasks outlived the drain"))?;
    blk.consumer.close().await?;
    blk.store.close().await;
    Ok(())
}

/// One solved share, from receipt to its stored offset.
async fn handle(blk: Arc<Blkmaker>, record: Record<SolvedShare>) {
    let share = &record.value;
    blk.metrics.solved.inc();
    // A replay is acknowledged; its offset is stored only once the first
    // copy's is (offsets are stored in order).
    let finished = if !lock(&blk.recent).claim(share.block_hash) {
        blk.metrics.replays.inc();
        tracing::info!(hash = %share.block_hash, "solved share already handled; acknowledging");
        true
    } else if age_ms(share) > blk.config.max_share_age_secs.saturating_mul(1000) {
        blk.metrics.too_old.inc();
        tracing::warn!(hash = %share.block_hash, height = share.height, age_ms = age_ms(share),
            "solved share older than max_share_age_secs; not submitted");
        true
    } else {
        blk.process(share).await
    };
    if finished {
        let storable = lock(&blk.offsets).finish(record.partition, record.offset);
        if let Some(offset) = storable
            && let Err(error) = blk.consumer.done_at(record.partition, offset)
        {
            tracing::error!(%error, offset, "storing the SolvedShare offset failed");
        }
    } else {
        lock(&blk.recent).release(share.block_hash);
    }
    blk.metrics.in_flight.dec();
}

fn age_ms(share: &SolvedShare) -> u64 {
    sluice_service::now_ms().saturating_sub(share.timestamp_ms)
}

impl Blkmaker {
    /// Assembles, submits and records one block. False if abandoned at
    /// shutdown (the share is replayed later).
    async fn process(&self, share: &SolvedShare) -> bool {
        let hash = share.block_hash;
        let wait = Duration::from_millis(self.config.template_wait_ms);
        let assembled = match self.templates.wait_for(&share.template_id, wait).await {
            Some(template) => assemble(share, Some(&template)),
            None => self.recover(share).await,
        };
        let assembled = match assembled {
            Ok(a) => a,
            Err(error @ (AssembleError::HashMismatch { .. } | AssembleError::HighHash(_))) => {
                // Not a block at all: an sserver defect, nothing to submit.
                self.metrics.unassembled.inc();
                tracing::error!(%hash, %error, "solved share is not a block; dropped");
                return true;
            }
            Err(error) => {
                self.metrics.unassembled.inc();
                let reason = format!("not submitted: {error}");
                self.health.set(
                    "blocks",
                    false,
                    format!("block {hash} at height {}: {reason}", share.height),
                );
                tracing::error!(%hash, height = share.height, user_id = share.user_id,
                    worker = %share.worker_name, %error, "BLOCK COULD NOT BE ASSEMBLED");
                self.publish(share, 0, false);
                let results = BTreeMap::from([("blkmaker".to_owned(), reason)]);
                return self.record(&self.row(share, None, &results)).await;
            }
        };
        self.submit_and_record(share, &assembled).await
    }

    /// The template is not kept: try what needs none, then the nodes' own
    /// current templates.
    async fn recover(&self, share: &SolvedShare) -> Result<Assembled, AssembleError> {
        self.metrics.template_unknown.inc();
        tracing::error!(hash = %share.block_hash, template = %share.template_id,
            height = share.height, "template of a solved share is unknown; trying to recover");
        if is_coinbase_only(share) {
            tracing::warn!(hash = %share.block_hash, "empty block: assembled without its template");
            return assemble(share, None);
        }
        let timeout = Duration::from_secs(self.config.rpc_timeout_secs);
        for node in &self.config.nodes {
            let fetched = match NodeRpc::new(node, timeout) {
                Ok(rpc) => rpc.template(None).await,
                Err(e) => Err(e),
            };
            let template = match fetched.and_then(|gbt| to_template(&node.name, gbt, 0)) {
                Ok(t) => t,
                Err(error) => {
                    tracing::warn!(node = node.name, %error, "no template from the node to recover with");
                    continue;
                }
            };
            if template.prev_blockhash != share.header.prev_blockhash {
                continue;
            }
            if let Ok(a) = assemble(share, Some(&template)) {
                tracing::warn!(hash = %share.block_hash, node = node.name,
                    "recovered: the node's current template has the block's transactions");
                return Ok(a);
            }
        }
        // Not the node's current one either: perhaps on RawGbt but not yet
        // here (this feed lags after a network cut).
        let kept = i64::try_from(self.config.templates_kept).unwrap_or(i64::MAX);
        let within = Duration::from_secs(self.config.rpc_timeout_secs.max(10));
        if let Some(template) =
            templates::look_up(&self.config.kafka, &share.template_id, kept, within).await
        {
            self.templates.insert(template.clone());
            tracing::warn!(hash = %share.block_hash, template = %share.template_id,
                "recovered: the template was on RawGbt, not yet in this blkmaker's feed");
            return assemble(share, Some(&template));
        }
        Err(AssembleError::TemplateUnknown)
    }

    async fn submit_and_record(&self, share: &SolvedShare, assembled: &Assembled) -> bool {
        let hash = share.block_hash;
        let hex = Arc::new(assembled.bytes.to_lower_hex_string());
        let (tx, mut rx) = mpsc::channel(self.config.nodes.len());
        let window = Duration::from_secs(self.config.retry_window_secs);
        let timeout = Duration::from_secs(self.config.rpc_timeout_secs);
        for node in &self.config.nodes {
            let (tx, node, hex, abandon) =
                (tx.clone(), node.clone(), hex.clone(), self.abandon.clone());
            let submitting = async move {
                let outcome = submit(&node, timeout, hex, window, abandon).await;
                // The receiver is gone only if the handler was abandoned.
                let _ = tx.send((node.name, outcome)).await;
            };
            tokio::spawn(submitting.in_current_span());
        }
        drop(tx);
        self.metrics.submitted.inc();
        let mut results: BTreeMap<String, Outcome> = self
            .config
            .nodes
            .iter()
            .map(|n| (n.name.clone(), Outcome::Pending))
            .collect();
        let (mut announced, mut first) = (false, true);
        while let Some((name, outcome)) = rx.recv().await {
            let Some(outcome) = outcome else {
                return false;
            };
            if first {
                self.metrics.latency.observe(age_ms(share) as f64 / 1000.0);
            }
            self.health.set(
                &format!("node:{name}"),
                !matches!(outcome, Outcome::Unreachable(_)),
                format!("block {hash}: {outcome}"),
            );
            results.insert(name, outcome);
            let all_done = results.values().all(|o| *o != Outcome::Pending);
            let valid = results.values().any(Outcome::is_valid);
            if !announced && (valid || all_done) {
                announced = true;
                if valid {
                    self.metrics.accepted.inc();
                    self.health.set(
                        "blocks",
                        true,
                        format!("block {hash} at height {}", share.height),
                    );
                    tracing::info!(%hash, height = share.height, worker = %share.worker_name,
                        txs = assembled.tx_count, "BLOCK ACCEPTED");
                    self.right_chain(format!("a node accepted block {hash}"));
                } else {
                    self.metrics.rejected.inc();
                    self.health.set(
                        "blocks",
                        false,
                        format!("block {hash} refused by every node"),
                    );
                    tracing::error!(%hash, height = share.height, ?results, "BLOCK REFUSED BY EVERY NODE");
                    if chain::builds_on_unknown_block(&results) {
                        self.metrics.wrong_chain.inc();
                        self.wrong_chain.store(true, Ordering::SeqCst);
                        let problem = chain::problem(share);
                        tracing::error!(%hash, height = share.height, prev = %share.header.prev_blockhash,
                            "MINING ON THE WRONG CHAIN: {problem}");
                        self.health.set(chain::COMPONENT, false, problem);
                    }
                }
                self.publish(share, assembled.reward.to_sat(), valid);
            }
            // Every answer is written at once: the operator sees the block
            // when the first node takes it, and each node's answer as it comes.
            let shown = results
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            if !self.record(&self.row(share, Some(assembled), &shown)).await {
                return false;
            }
            first = false;
        }
        true
    }

    /// The pool is seen mining on a chain the nodes hold (`why`): a raised
    /// `wrong_chain` ends.
    fn right_chain(&self, why: String) {
        if self.wrong_chain.swap(false, Ordering::SeqCst) {
            tracing::warn!(why, "mining on a chain the nodes hold again");
            self.health.set(chain::COMPONENT, true, why);
        }
    }

    fn row(
        &self,
        share: &SolvedShare,
        assembled: Option<&Assembled>,
        results: &BTreeMap<String, String>,
    ) -> FoundBlock {
        let reward = assembled.map_or_else(
            || {
                sluice_core::coinbase::coinbase_transaction(&share.coinbase)
                    .map(|cb| cb.output.iter().map(|o| o.value.to_sat()).sum())
                    .unwrap_or(0)
            },
            |a| a.reward.to_sat(),
        );
        FoundBlock {
            height: share.height,
            hash: share.block_hash.to_string(),
            prev_hash: share.header.prev_blockhash.to_string(),
            user_id: share.user_id,
            worker_id: share.worker_id,
            worker_name: share.worker_name.clone(),
            job_id: share.job_id.0,
            reward,
            fees: assembled.map_or(0, |a| a.fees.to_sat()),
            size: assembled.map_or(0, |a| u32::try_from(a.bytes.len()).unwrap_or(u32::MAX)),
            tx_count: assembled.map_or(0, |a| u32::try_from(a.tx_count).unwrap_or(u32::MAX)),
            submit_results: results.clone(),
            is_orphaned: false,
            solo_address: share.solo_address.clone(),
        }
    }

    /// Writes `row`, retrying while MySQL is away. False if abandoned.
    async fn record(&self, row: &FoundBlock) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let write =
                tokio::time::timeout(Duration::from_secs(10), self.store.record_found_block(row));
            let error = match write.await {
                Ok(Ok(())) => {
                    self.metrics.recorded.inc();
                    self.health
                        .set("mysql", true, format!("block {} recorded", row.hash));
                    return true;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 10s".to_owned(),
            };
            self.health.set("mysql", false, error.clone());
            tracing::warn!(hash = row.hash, error, retry_in = ?backoff.delay(), "recording the block failed; retrying");
            if !backoff.wait(&self.abandon).await {
                return false;
            }
        }
    }

    /// BlockFound to the Event topic, in the background (best effort: the
    /// row in found_blocks is the record).
    fn publish(&self, share: &SolvedShare, reward_sat: u64, accepted: bool) {
        let event = Event {
            timestamp_ms: sluice_service::now_ms(),
            kind: EventKind::BlockFound(BlockFound {
                height: share.height,
                hash: share.block_hash,
                prev_hash: share.header.prev_blockhash,
                user_id: share.user_id,
                worker_id: share.worker_id,
                worker_name: share.worker_name.clone(),
                job_id: share.job_id,
                reward_sat,
                accepted,
                solo_address: share.solo_address.clone(),
            }),
        };
        self.send_event(event, "BlockFound");
    }

    /// `event` to the Event topic in the background (best effort: the row
    /// in found_blocks is the record).
    fn send_event(&self, event: Event, what: &'static str) {
        let (producer, topic) = (self.events.clone(), self.event_topic.clone());
        let key = self.config.service.instance.clone();
        tokio::spawn(async move {
            if let Err(error) = producer.send(&topic, key.as_bytes(), &event).await {
                tracing::warn!(%error, what, "event not sent");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::hashes::Hash;

    use super::{RECENT_KEPT, Recent};

    fn hash(n: usize) -> bitcoin::BlockHash {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
        bitcoin::BlockHash::from_byte_array(bytes)
    }

    #[test]
    fn a_hash_is_claimed_once_until_released_and_the_oldest_are_forgotten() {
        let mut recent = Recent::default();
        assert!(recent.claim(hash(0)));
        assert!(!recent.claim(hash(0)), "a second copy is a replay");
        recent.release(hash(0));
        assert!(recent.claim(hash(0)), "an abandoned share is taken again");
        for n in 1..=RECENT_KEPT {
            assert!(recent.claim(hash(n)));
        }
        assert!(recent.claim(hash(0)), "the oldest was forgotten");
        assert!(!recent.claim(hash(RECENT_KEPT)));
        assert_eq!(recent.set.len(), RECENT_KEPT);
        assert_eq!(recent.order.len(), RECENT_KEPT);
    }
}
