//! From the Share topic into the books: work per user per minute (and PPS
//! value), written with the offsets it was read to in one database
//! transaction. The books, not the consumer group, say where reading
//! resumes, so a share is counted exactly once across kills and restarts;
//! the group's offsets are committed after, for operators' lag graphs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sluice_bus::{LogConsumer, Record, Topic};
use sluice_core::record::ShareRecord;
use sluice_ledger::{PpsTerms, Tally};
use sluice_service::{Backoff, Health};
use sluice_store::{Store, StoreError, WorkBatch};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::fees::Pricing;
use crate::metrics::PayerMetrics;

/// Shares at most in one database transaction.
const BATCH_MAX: usize = 5_000;
/// How long a batch waits to fill once its first share arrived.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// A share from further ahead than this of our clock is not counted.
const FUTURE_MS: u64 = 3_600_000;

/// What the reader needs.
pub(crate) struct Reader<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    pub(crate) health: &'a Health,
    pub(crate) metrics: &'a PayerMetrics,
}

impl Reader<'_> {
    /// Reads until `term` ends (Ok) or another payer wrote the books (Err).
    pub(crate) async fn run(&self, term: &CancellationToken) -> anyhow::Result<()> {
        let topic = Topic::<ShareRecord>::new(self.config.kafka.topics.share.clone());
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let opened = backoff
            .retry(
                term,
                || self.open(&topic),
                |error, retry_in| {
                    self.health.set("shares", false, format!("{error:#}"));
                    tracing::warn!(
                        error = format!("{error:#}"),
                        ?retry_in,
                        "Share topic not readable"
                    );
                },
            )
            .await;
        let Some((consumer, mut at, mut pricing)) = opened else {
            return Ok(());
        };
        self.health.set(
            "shares",
            true,
            format!("reading {} from the books' offsets", topic.name()),
        );
        loop {
            let Some(records) = gather(&consumer, term).await else {
                return Ok(());
            };
            if !self.price(&mut pricing, &records, term, &mut backoff).await {
                return Ok(());
            }
            let batch = self.batch(topic.name(), &at, &records, pricing.terms());
            if !self.write(&batch, term, &mut backoff).await? {
                return Ok(());
            }
            for (&part, &(_, next, _)) in &batch.offsets {
                at.insert(part, Some(next));
            }
            let committed: HashMap<i32, i64> = batch
                .offsets
                .iter()
                .map(|(&p, &(_, next, _))| (p, next))
                .collect();
            if let Err(error) = consumer.commit(&committed) {
                tracing::debug!(%error, "committing the group's offsets failed; the books hold them");
            }
        }
    }

    async fn open(
        &self,
        topic: &Topic<ShareRecord>,
    ) -> anyhow::Result<(
        LogConsumer<ShareRecord>,
        BTreeMap<i32, Option<i64>>,
        Pricing,
    )> {
        let pricing = Pricing::new(self.config, self.store).await?;
        let resume = self.store.payout_offsets(topic.name()).await?;
        let group = format!("sluice-payer-{}", self.config.service.instance);
        let (consumer, starts) =
            LogConsumer::new(&self.config.kafka, topic, &group, &resume).await?;
        for s in starts.iter().filter(|s| s.reset) {
            tracing::warn!(
                partition = s.partition,
                books = ?resume.get(&s.partition),
                end = s.high,
                "the books' offset lies past the partition's end (the topic was recreated): reading it from its start"
            );
        }
        tracing::info!(?starts, "reading the Share topic into the books");
        let at = starts
            .iter()
            .map(|s| (s.partition, resume.get(&s.partition).copied()))
            .collect();
        Ok((consumer, at, pricing))
    }

    /// Makes `pricing` ready to value `records`, retrying while the node or
    /// the database is away; false if the term ended first.
    async fn price(
        &self,
        pricing: &mut Pricing,
        records: &[Record<ShareRecord>],
        term: &CancellationToken,
        backoff: &mut Backoff,
    ) -> bool {
        loop {
            match pricing.prepare(self.store, records).await {
                Ok(()) => return true,
                Err(error) => {
                    let error = format!("{error:#}");
                    self.health.set("fees", false, error.clone());
                    tracing::warn!(error, retry_in = ?backoff.delay(), "valuing shares needs the blocks' fees; retrying");
                    if !backoff.wait(term).await {
                        return false;
                    }
                    self.health.set("fees", true, "blocks' fees read");
                }
            }
        }
    }

    fn batch(
        &self,
        topic: &str,
        at: &BTreeMap<i32, Option<i64>>,
        records: &[Record<ShareRecord>],
        terms: Option<&PpsTerms>,
    ) -> WorkBatch {
        let now = sluice_service::now_ms();
        let mut tally = Tally::default();
        let mut offsets: BTreeMap<i32, (Option<i64>, i64, u64)> = BTreeMap::new();
        for r in records {
            let share = &r.value;
            let usable = if share.timestamp_ms > now + FUTURE_MS {
                Err(format!(
                    "share time {} ms is over an hour ahead of this clock",
                    share.timestamp_ms
                ))
            } else {
                tally.add(share, terms).map_err(|e| e.to_string())
            };
            if let Err(why) = usable {
                sluice_bus::count_poison(topic);
                tracing::error!(
                    topic,
                    partition = r.partition,
                    offset = r.offset,
                    why,
                    "share not counted"
                );
            }
            let before = at.get(&r.partition).copied().flatten();
            let slot = offsets.entry(r.partition).or_insert((before, 0, 0));
            slot.1 = r.offset + 1;
            slot.2 = slot.2.max(share.timestamp_ms);
        }
        self.metrics.shares.inc_by(records.len() as u64);
        WorkBatch {
            topic: topic.to_owned(),
            tally,
            offsets,
        }
    }

    /// Writes `batch`, retrying while the database is away; false if the
    /// term ended first, Err if another payer moved the offsets.
    async fn write(
        &self,
        batch: &WorkBatch,
        term: &CancellationToken,
        backoff: &mut Backoff,
    ) -> anyhow::Result<bool> {
        loop {
            match self.store.apply_work(batch).await {
                Ok(()) => {
                    backoff.reset();
                    self.metrics.batches.inc();
                    self.health.set("mysql", true, "work written");
                    return Ok(true);
                }
                Err(StoreError::Conflict(what)) => {
                    anyhow::bail!("{what}: another payer is keeping the books")
                }
                Err(error) => {
                    self.health.set("mysql", false, error.to_string());
                    tracing::warn!(%error, retry_in = ?backoff.delay(), "writing work failed; the batch is retried");
                    if !backoff.wait(term).await {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// The next shares: the first to arrive and whatever follows it within
/// [`BATCH_WAIT`], at most [`BATCH_MAX`]; `None` when `term` ends.
async fn gather(
    consumer: &LogConsumer<ShareRecord>,
    term: &CancellationToken,
) -> Option<Vec<Record<ShareRecord>>> {
    let mut records = Vec::new();
    let deadline = loop {
        tokio::select! {
            () = term.cancelled() => return None,
            r = consumer.next() => match r {
                Ok(r) => {
                    records.push(r);
                    break tokio::time::Instant::now() + BATCH_WAIT;
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the Share topic failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
        }
    };
    while records.len() < BATCH_MAX {
        tokio::select! {
            () = term.cancelled() => return None,
            () = tokio::time::sleep_until(deadline) => break,
            r = consumer.next() => match r {
                Ok(r) => records.push(r),
                Err(error) => {
                    tracing::warn!(%error, "reading the Share topic failed; writing what was read");
                    break;
                }
            },
        }
    }
    Some(records)
}
