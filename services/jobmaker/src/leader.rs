//! Standing for election, and one term as leader.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{BlockHash, Network, ScriptBuf};
use sluice_bus::{Backlog, BusConfig, Producer, Record, TailConsumer, Topic};
use sluice_coord::{Candidate, Coord};
use sluice_core::{BlockTemplate, Job};
use sluice_service::{Context, now_ms};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::jobs::JobFactory;
use crate::metrics::JobMetrics;
use crate::nodes::Nodes;
use crate::select::{Refusal, Verdict, admit, judge};

/// Templates read back from the tail when a term starts, to find the best.
const TEMPLATE_BACKLOG: i64 = 50;

/// How long a new term reads the tail back at most before its first job.
const BACKLOG_READ_LIMIT: Duration = Duration::from_secs(2);

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
        let first = self.told.insert(t.node_id.clone());
        match refusal {
            Refusal::Impossible(why) => {
                sluice_bus::count_poison(&self.kafka.topics.raw_gbt);
                tracing::error!(topic = self.kafka.topics.raw_gbt, partition = record.partition,
                    offset = record.offset, template = %t.id, why,
                    "skipping a template that cannot be a node's");
            }
            Refusal::Stale => {}
            Refusal::UnknownNode if first => {
                tracing::warn!(node = t.node_id, height = t.height, tip = %t.prev_blockhash,
                    configured = ?self.nodes.names(),
                    "skipping templates of a node that is not in [[nodes]]");
            }
            Refusal::OtherNetwork(other) if first => {
                tracing::error!(node = t.node_id, height = t.height, template = ?other,
                    configured = ?self.network,
                    "skipping templates of another network");
            }
            Refusal::UnknownNode | Refusal::OtherNetwork(_) => {}
        }
        None
    }
}

/// Whether a template read back from the tail when the term began may be
/// mined on: its node says its tip is its best block (`tips`, asked when the
/// term began), or it was made since then. The tail may hold another chain's
/// templates: the pool ran on another node before this term.
fn confirmed(t: &BlockTemplate, tips: &HashMap<String, BlockHash>, term_began_ms: u64) -> bool {
    t.created_at_ms >= term_began_ms || tips.get(&t.node_id) == Some(&t.prev_blockhash)
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

/// Campaigns on `coord` and leads whenever elected, until shutdown (Ok) or
/// until the session is unusable (Err: the caller reconnects).
pub(crate) async fn campaign(
    config: &Config,
    ctx: &Context,
    metrics: &JobMetrics,
    coord: &Coord,
    payout: &ScriptBuf,
    info: &[u8],
) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let candidate = Arc::new(coord.candidate("jobmaker", info).await?);
    ctx.health.set(
        "zookeeper",
        true,
        format!("standby (candidate epoch {})", candidate.epoch()),
    );
    let leadership = tokio::select! {
        () = token.cancelled() => {
            let _ = Arc::try_unwrap(candidate).map(Candidate::resign);
            return Ok(());
        }
        state = coord.session_ended() => anyhow::bail!("zookeeper session ended ({state:?}) while standing by"),
        lead = candidate.leadership() => lead?,
    };
    let epoch = leadership.epoch;
    ctx.health
        .set("zookeeper", true, format!("leader, epoch {epoch}"));
    // The term ends when shutdown is asked or our election node is gone.
    let term = token.child_token();
    let watcher = {
        let (candidate, term) = (candidate.clone(), term.clone());
        tokio::spawn(async move {
            candidate.lost().await;
            term.cancel();
        })
    };
    metrics.leader.set(1);
    let result = lead(config, ctx, metrics, payout, epoch, &term).await;
    metrics.leader.set(0);
    watcher.abort();
    if token.is_cancelled() {
        if let Ok(candidate) = Arc::try_unwrap(candidate) {
            candidate.resign().await?;
        }
        return result;
    }
    result?;
    anyhow::bail!("leadership (epoch {epoch}) lost")
}

/// One term: templates in, jobs out, until `term` is cancelled.
async fn lead(
    config: &Config,
    ctx: &Context,
    metrics: &JobMetrics,
    payout: &ScriptBuf,
    epoch: u64,
    term: &CancellationToken,
) -> anyhow::Result<()> {
    let kafka = &config.kafka;
    let job_topic: Topic<Job> = Topic::new(kafka.topics.job.clone());
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
    let mut factory = JobFactory::new(
        config.pool_tag.as_bytes().to_vec(),
        payout.clone(),
        epoch,
        last_job.as_ref().map(|j| j.id),
    );
    let templates = TailConsumer::<BlockTemplate>::new(
        kafka,
        &Topic::new(kafka.topics.raw_gbt.clone()),
        TEMPLATE_BACKLOG,
    )
    .await?;
    let job_interval = Duration::from_secs(config.job_interval_secs);
    let nodes = Nodes::new(&config.nodes);
    let mut gate = Gate {
        kafka,
        metrics,
        nodes: &nodes,
        network: sluice_core::network::parse_network(&config.network)
            .map_err(anyhow::Error::msg)?,
        stale_ms: config.stale_template_secs * 1000,
        told: HashSet::new(),
    };
    let stale = Duration::from_secs(config.stale_template_secs);
    let term_began_ms = now_ms();
    let tips = nodes.best_blocks().await;
    tracing::info!(epoch, last_job = ?last_job.as_ref().map(|j| j.id.to_string()), ?tips, "leading");
    let mut current: Option<BlockTemplate> = None;
    let mut last_template_at = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(job_interval);
    ticker.reset();
    // The tail of RawGbt is read through before the term's first job: the
    // best template in it is chosen without a job for each one on the way
    // (a clean job for every older tip would send miners to it and make
    // shares on the newest tip look stale for a moment), among those whose
    // tip their node holds as its best block (`confirmed`). The first job is
    // clean only when its tip is not the one the last leader's newest job
    // was on: on the same tip, miners keep the work they have.
    let mut backlog = templates.backlog();
    let backlog_read_by = tokio::time::Instant::now() + BACKLOG_READ_LIMIT;
    let last_tip = last_job.map(|j| j.prev_blockhash);
    let mut first_job = true;
    ctx.health
        .set("templates", false, "waiting for the first template");
    loop {
        let clean = tokio::select! {
            () = term.cancelled() => return Ok(()),
            // A tail that ends in records that never come (skipped as
            // poison, or a broker that stalls) does not hold the term up.
            () = tokio::time::sleep_until(backlog_read_by), if !backlog.is_read() => {
                backlog = Backlog::default();
                if current.is_none() {
                    continue;
                }
                ticker.reset();
                true // the term's first job: `first_job` below sets its flag
            }
            record = templates.next() => {
                let record = record?;
                let reading_backlog = !backlog.is_read();
                backlog.read(record.partition, record.offset);
                let publish = match gate.admit(record) {
                    None => None,
                    Some(t) if reading_backlog && !confirmed(&t, &tips, term_began_ms) => {
                        metrics.skipped("unconfirmed_tip");
                        tracing::info!(node = t.node_id, height = t.height, tip = %t.prev_blockhash,
                            "skipping a template from the tail: its tip is not its node's best block");
                        None
                    }
                    Some(t) => {
                        last_template_at = tokio::time::Instant::now();
                        ctx.health.set("templates", true, format!("height {} from {}", t.height, t.node_id));
                        let verdict = match (judge(current.as_ref(), &t, now_ms(), job_interval), &current) {
                            (Verdict::Rival, Some(cur)) => settle_rival(&nodes, cur, &t).await,
                            (verdict, _) => verdict,
                        };
                        match verdict {
                            Verdict::Ignore | Verdict::Rival => None,
                            Verdict::Refresh => { current = Some(t); None }
                            Verdict::Fill => { current = Some(t); Some(false) }
                            Verdict::NewTip => { current = Some(t); Some(true) }
                        }
                    }
                };
                if !backlog.is_read() {
                    continue;
                }
                // The tail read through: the term's first job (its flag set
                // by `first_job` below), else what the verdict asked for.
                let Some(clean) = publish.or(reading_backlog.then_some(true)) else { continue };
                ticker.reset();
                clean
            }
            _ = ticker.tick(), if backlog.is_read() => {
                if last_template_at.elapsed() > stale {
                    ctx.health.set("templates", false, format!(
                        "no template for {}s: issuing jobs from the last one", last_template_at.elapsed().as_secs()));
                }
                false
            }
        };
        let Some(template) = &current else { continue };
        let clean = if first_job {
            last_tip != Some(template.prev_blockhash)
        } else {
            clean
        };
        let job = match factory.make(template, clean, now_ms()) {
            Ok(job) => job,
            Err(error) => {
                // A checked template still makes no coinbase: told, and the
                // next template is waited for (the leader does not fall).
                sluice_bus::count_poison(&kafka.topics.raw_gbt);
                tracing::error!(%error, template = %template.id, height = template.height,
                    "no job can be made from this template; waiting for the next");
                current = None;
                continue;
            }
        };
        // While the broker is away the send waits (and /health says so); the
        // term can still end meanwhile, and a deposed leader's queued jobs are
        // dropped with its producer.
        let key = epoch.to_be_bytes();
        let sent = tokio::select! {
            () = term.cancelled() => return Ok(()),
            sent = producer.send(&job_topic, &key, &job) => sent,
        };
        match sent {
            Ok(_) => {
                first_job = false;
                metrics.published(clean);
                if clean {
                    let age_ms = now_ms().saturating_sub(template.created_at_ms);
                    metrics.latency.observe(age_ms as f64 / 1000.0);
                }
                tracing::debug!(job = %job.id, height = job.height, clean, epoch, "job published");
            }
            Err(error) => tracing::warn!(%error, job = %job.id, "job not published"),
        }
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
