//! One term as leader: templates from RawGbt in, jobs to BtcJob out.
//!
//! A term begins by reading RawGbt's tail back, choosing the best template
//! in it without a job for each one on the way (a clean job for every older
//! tip would send miners to it and make shares on the newest look stale for
//! a moment), among those whose tip their node holds as its best block: the
//! tail may hold another chain's templates when the pool ran on another
//! node before. The term's first job is clean only when its tip is not the
//! one the last leader's newest job was on: on the same tip, miners keep
//! the work they have. Then every template is judged as it comes
//! (`select.rs`), and a job goes out at once on a new tip or a filled empty
//! block, else every `job_interval_secs` from the current template.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bitcoin::{BlockHash, Network};
use sluice_bus::{Backlog, BusConfig, Producer, Record, TailConsumer, Topic};
use sluice_core::{BlockTemplate, Job};
use sluice_service::{Context, now_ms};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::Payout;
use crate::announce::{self, Announced};
use crate::jobs::JobFactory;
use crate::metrics::JobMetrics;
use crate::nodes::Nodes;
use crate::select::{Refusal, Verdict, admit, judge};

/// Templates read back from the tail when a term starts, to find the best.
const TEMPLATE_BACKLOG: i64 = 50;

/// How long a new term reads the tail back at most before its first job.
const BACKLOG_READ_LIMIT: Duration = Duration::from_secs(2);

/// One term: templates in, jobs out, until `term` is cancelled.
pub(crate) async fn lead(
    config: &Config,
    ctx: &Context,
    metrics: &JobMetrics,
    payout: &Payout,
    epoch: u64,
    term: &CancellationToken,
) -> anyhow::Result<()> {
    let kafka = &config.kafka;
    let producer = Producer::new(kafka, 0)?;
    tokio::spawn({
        let health = ctx.health.clone();
        sluice_bus::watch_delivery(
            producer.clone(),
            move |ok, detail| health.set("kafka_jobs", ok, detail),
            term.clone(),
        )
    });
    let last_job = newest_job(config).await?;
    let templates = TailConsumer::<BlockTemplate>::new(
        kafka,
        &Topic::new(kafka.topics.raw_gbt.clone()),
        TEMPLATE_BACKLOG,
    )
    .await?;
    let nodes = Nodes::new(&config.nodes);
    let began_ms = now_ms();
    let tips = nodes.best_blocks().await;
    tracing::info!(epoch, last_job = ?last_job.as_ref().map(|j| j.id.to_string()), ?tips, "leading");
    let mut leader = Leader {
        ctx,
        metrics,
        gate: Gate {
            kafka,
            metrics,
            nodes: &nodes,
            network: sluice_core::network::parse_network(&config.network)
                .map_err(anyhow::Error::msg)?,
            stale_ms: config.stale_template_secs * 1000,
            told: HashSet::new(),
            refused: None,
        },
        nodes: &nodes,
        factory: JobFactory::new(
            config.pool_tag.as_bytes().to_vec(),
            payout.clone(),
            epoch,
            last_job.as_ref().map(|j| j.id),
        ),
        producer,
        job_topic: Topic::new(kafka.topics.job.clone()),
        epoch,
        job_interval: Duration::from_secs(config.job_interval_secs),
        stale: Duration::from_secs(config.stale_template_secs),
        current: None,
        last_template_at: Instant::now(),
        last_tip: last_job.map(|j| j.prev_blockhash),
        first_job: true,
    };
    ctx.health
        .set("templates", false, "waiting for the first template");
    let mut announced = if config.empty_jobs {
        announce::listen(&config.nodes, term)
    } else {
        tokio::sync::mpsc::channel(1).1
    };
    let mut ticker = tokio::time::interval(leader.job_interval);
    ticker.reset();
    let mut backlog = templates.backlog();
    let backlog_read_by = Instant::now() + BACKLOG_READ_LIMIT;
    loop {
        let clean = tokio::select! {
            () = term.cancelled() => return Ok(()),
            // A tail that ends in records that never come (skipped as
            // poison, or a broker that stalls) does not hold the term up.
            () = tokio::time::sleep_until(backlog_read_by), if !backlog.is_read() => {
                backlog = Backlog::default();
                if leader.current.is_none() {
                    continue;
                }
                true // the term's first job: `first_job` sets its flag
            }
            record = templates.next() => {
                let record = record?;
                let reading_backlog = !backlog.is_read();
                backlog.read(record.partition, record.offset);
                let from_tail = reading_backlog.then_some((&tips, began_ms));
                let publish = leader.template(record, from_tail).await;
                if !backlog.is_read() {
                    continue;
                }
                // The tail read through: the term's first job (its flag set
                // by `first_job`), else what the verdict asked for.
                let Some(clean) = publish.or(reading_backlog.then_some(true)) else { continue };
                clean
            }
            Some(a) = announced.recv(), if backlog.is_read() => {
                if !leader.announced(&a).await {
                    continue;
                }
                true
            }
            _ = ticker.tick(), if backlog.is_read() => {
                leader.tick();
                false
            }
        };
        ticker.reset();
        if !leader.publish(clean, term).await {
            return Ok(());
        }
    }
}

/// What a term keeps between templates.
struct Leader<'a> {
    ctx: &'a Context,
    metrics: &'a JobMetrics,
    gate: Gate<'a>,
    nodes: &'a Nodes,
    factory: JobFactory,
    producer: Producer,
    job_topic: Topic<Job>,
    epoch: u64,
    job_interval: Duration,
    stale: Duration,
    /// The template jobs are made of.
    current: Option<BlockTemplate>,
    last_template_at: Instant,
    /// The tip of the last leader's newest job.
    last_tip: Option<BlockHash>,
    /// No job of this term is published yet.
    first_job: bool,
}

impl Leader<'_> {
    /// A template from RawGbt (read back from the tail when `from_tail`
    /// gives the nodes' tips and the term's start): whether a job is due
    /// now, and whether clean (`None`: no job).
    async fn template(
        &mut self,
        record: Record<BlockTemplate>,
        from_tail: Option<(&HashMap<String, BlockHash>, u64)>,
    ) -> Option<bool> {
        let Some(t) = self.gate.admit(record) else {
            // With nothing to mine on yet, /health says whose templates come.
            if let (None, Some(why)) = (&self.current, &self.gate.refused) {
                self.ctx.health.set(
                    "templates",
                    false,
                    format!("no template of [[nodes]] yet: {why}"),
                );
            }
            return None;
        };
        if let Some((tips, began_ms)) = from_tail
            && !confirmed(&t, tips, began_ms)
        {
            self.metrics.skipped("unconfirmed_tip");
            tracing::info!(node = t.node_id, height = t.height, tip = %t.prev_blockhash,
                "skipping a template from the tail: its tip is not its node's best block");
            return None;
        }
        self.last_template_at = Instant::now();
        self.ctx.health.set(
            "templates",
            true,
            format!("height {} from {}", t.height, t.node_id),
        );
        let verdict = match (
            judge(self.current.as_ref(), &t, now_ms(), self.job_interval),
            &self.current,
        ) {
            (Verdict::Rival, Some(cur)) => settle_rival(self.nodes, cur, &t).await,
            (verdict, _) => verdict,
        };
        let publish = match verdict {
            Verdict::Ignore | Verdict::Rival => return None,
            Verdict::Refresh => None,
            Verdict::Fill => Some(false),
            Verdict::NewTip => Some(true),
        };
        self.current = Some(t);
        publish
    }

    /// A node announced a block: when it is the followed node's and a new
    /// tip, its empty-block template becomes the current one and a clean
    /// job is due (`true`).
    async fn announced(&mut self, a: &Announced) -> bool {
        let Some(current) = &self.current else {
            return false;
        };
        if current.node_id != a.node || current.prev_blockhash == a.block.hash {
            return false;
        }
        let Some(node) = self.nodes.config(&a.node) else {
            return false;
        };
        let Some((t, from)) = announce::empty_template(node, current, self.gate.network, a).await
        else {
            return false;
        };
        if judge(Some(current), &t, now_ms(), self.job_interval) != Verdict::NewTip {
            return false;
        }
        tracing::debug!(node = a.node, height = t.height, tip = %t.prev_blockhash,
            from, since_announced = ?a.block.at.elapsed(), "empty-block template");
        self.metrics.empty_job(from);
        self.current = Some(t);
        true
    }

    /// The job interval passed: /health says when templates stopped coming.
    fn tick(&self) {
        let quiet = self.last_template_at.elapsed();
        if quiet > self.stale {
            self.ctx.health.set(
                "templates",
                false,
                format!(
                    "no template for {}s: issuing jobs from the last one",
                    quiet.as_secs()
                ),
            );
        }
    }

    /// Makes and publishes a job of the current template (if any); `false`
    /// when the term ended meanwhile.
    async fn publish(&mut self, clean: bool, term: &CancellationToken) -> bool {
        let Some(template) = &self.current else {
            return true;
        };
        let clean = if self.first_job {
            self.last_tip != Some(template.prev_blockhash)
        } else {
            clean
        };
        let job = match self.factory.make(template, clean, now_ms()) {
            Ok(job) => job,
            Err(error) => {
                // A checked template still makes no coinbase: told, and the
                // next template is waited for (the leader does not fall).
                sluice_bus::count_poison(&self.gate.kafka.topics.raw_gbt);
                tracing::error!(%error, template = %template.id, height = template.height,
                    "no job can be made from this template; waiting for the next");
                self.current = None;
                return true;
            }
        };
        // While the broker is away the send waits (and /health says so); the
        // term can still end meanwhile, and a deposed leader's queued jobs are
        // dropped with its producer.
        let key = self.epoch.to_be_bytes();
        let sent = tokio::select! {
            () = term.cancelled() => return false,
            sent = self.producer.send(&self.job_topic, &key, &job) => sent,
        };
        match sent {
            Ok(_) => {
                self.first_job = false;
                self.metrics.published(clean);
                if clean {
                    let age_ms = now_ms().saturating_sub(template.created_at_ms);
                    self.metrics.latency.observe(age_ms as f64 / 1000.0);
                }
                tracing::debug!(job = %job.id, height = job.height, clean, epoch = self.epoch, "job published");
            }
            Err(error) => tracing::warn!(%error, job = %job.id, "job not published"),
        }
        true
    }
}

/// What a term lets through from RawGbt: [`admit`]'s rules, told in the
/// log once per node and counted.
struct Gate<'a> {
    kafka: &'a BusConfig,
    metrics: &'a JobMetrics,
    nodes: &'a Nodes,
    network: Network,
    stale_ms: u64,
    /// Nodes whose templates were refused (told once a term).
    told: HashSet<String>,
    /// Why the last template of a node not to mine on was refused.
    refused: Option<String>,
}

impl Gate<'_> {
    /// The template of `record`, or `None` for one not to mine on.
    fn admit(&mut self, record: Record<BlockTemplate>) -> Option<BlockTemplate> {
        let t = record.value;
        let refusal = match admit(
            &t,
            self.nodes.names(),
            self.network,
            now_ms(),
            self.stale_ms,
        ) {
            Ok(()) => return Some(t),
            Err(refusal) => refusal,
        };
        self.metrics.skipped(refusal.label());
        let why = match refusal {
            Refusal::Impossible(why) => {
                sluice_bus::count_poison(&self.kafka.topics.raw_gbt);
                tracing::error!(topic = self.kafka.topics.raw_gbt, partition = record.partition,
                    offset = record.offset, template = %t.id, why,
                    "skipping a template that cannot be a node's");
                return None;
            }
            Refusal::Stale => return None,
            Refusal::UnknownNode => format!(
                "node {:?} is not in [[nodes]] ({:?})",
                t.node_id,
                self.nodes.names()
            ),
            Refusal::OtherNetwork(other) => format!(
                "node {:?} is on {other:?}, this pool on {:?}",
                t.node_id, self.network
            ),
        };
        if self.told.insert(t.node_id.clone()) {
            tracing::warn!(height = t.height, tip = %t.prev_blockhash, why,
                "skipping templates of a node not to mine on");
        }
        self.refused = Some(why);
        None
    }
}

/// Whether a template read back from the tail when the term began may be
/// mined on: its node says its tip is its best block (`tips`, asked when the
/// term began), or it was made since then.
fn confirmed(t: &BlockTemplate, tips: &HashMap<String, BlockHash>, began_ms: u64) -> bool {
    t.created_at_ms >= began_ms || tips.get(&t.node_id) == Some(&t.prev_blockhash)
}

/// A rival tip (no more work than the current one) is followed at once
/// only when the current template's node holds the rival's tip as its best
/// block: the node was replaced (another chain under the same name) or
/// reorganized. Otherwise it waits for the stale rule.
async fn settle_rival(nodes: &Nodes, current: &BlockTemplate, rival: &BlockTemplate) -> Verdict {
    if nodes.best_block(&current.node_id).await == Some(rival.prev_blockhash) {
        tracing::warn!(node = current.node_id, from = %current.prev_blockhash,
            from_height = current.height, to = %rival.prev_blockhash, to_height = rival.height,
            "the node left the tip we mined on: following it");
        Verdict::NewTip
    } else {
        Verdict::Ignore
    }
}

/// The newest job on the Job topic: ids keep increasing across leaders, and
/// the first job is clean only on another tip.
async fn newest_job(config: &Config) -> anyhow::Result<Option<Job>> {
    let tail = TailConsumer::<Job>::new(
        &config.kafka,
        &Topic::new(config.kafka.topics.job.clone()),
        1,
    )
    .await?;
    Ok(tokio::time::timeout(Duration::from_secs(1), tail.next())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|r| r.value))
}
