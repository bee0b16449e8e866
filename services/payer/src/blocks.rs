//! Found blocks in the books: credited once their minute's shares are all
//! read, matured when blkmaker finds them 101 confirmations deep, taken
//! back when orphaned.
//!
//! A block's PPLNS window is read from the work and the offsets as of one
//! database snapshot; the offsets (the cut) are kept with the block, so the
//! split can be done again from the share log's shares before them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_bus::fetch_watermarks;
use sluice_core::bitcoin::{CompactTarget, Target};
use sluice_ledger::books::{self, Account, Kind, POOL};
use sluice_ledger::{pplns, split};
use sluice_service::Health;
use sluice_store::{BlockToCredit, CreditedBlock, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::{PayerMetrics, StepLabel};
use crate::{Config, Scheme};

/// Blocks looked at per round.
const PER_ROUND: u32 = 100;
/// How often the owed, immature and in-flight gauges are summed.
const GAUGES_EVERY_MS: u64 = 60_000;
/// How often work no window can reach is deleted.
const PRUNE_EVERY_MS: u64 = 600_000;
/// Rows deleted per statement (short locks), and statements per round.
const PRUNE_CHUNK: u32 = 50_000;
const PRUNE_CHUNKS: u32 = 20;

/// What the books keeper needs.
pub(crate) struct Keeper<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    pub(crate) health: &'a Health,
    pub(crate) metrics: &'a PayerMetrics,
    /// When users were last credited their PPS value, unix ms.
    pub(crate) pps_at: AtomicU64,
    /// When the gauges were last set, unix ms.
    pub(crate) gauges_at: AtomicU64,
    /// When work was last pruned, unix ms.
    pub(crate) pruned_at: AtomicU64,
}

impl Keeper<'_> {
    /// Rounds every `books_interval_secs` until `term` ends (Ok) or another
    /// payer wrote the same books (Err).
    pub(crate) async fn run(&self, term: &CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(self.config.books_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = term.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.round().await {
                Ok(summary) => self.health.set("blocks", true, summary),
                Err(error) => {
                    if let Some(StoreError::Conflict(what)) = error.downcast_ref::<StoreError>() {
                        anyhow::bail!("{what}: another payer is keeping the books");
                    }
                    self.health.set("blocks", false, format!("{error:#}"));
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "books round failed; the next one retries"
                    );
                }
            }
        }
    }

    async fn round(&self) -> anyhow::Result<String> {
        let through = self.through().await?;
        let mut credited = 0;
        for block in self.store.blocks_to_credit(PER_ROUND).await? {
            let window_end = (block.timestamp_ms / 60_000 + 1) * 60_000;
            if window_end > through {
                break;
            }
            if self.credit(&block).await? {
                credited += 1;
            }
        }
        let settled = self.settle().await?;
        let pps = self.credit_pps().await?;
        self.gauges().await?;
        self.prune(credited > 0).await?;
        Ok(format!(
            "{credited} blocks credited, {settled} settled{pps}; shares all in until {through} ms"
        ))
    }

    /// Unix ms before which every share is read: each partition read to its
    /// end now, or to its newest share, less `settle_secs`.
    async fn through(&self) -> anyhow::Result<u64> {
        let topic = &self.config.kafka.topics.share;
        let now = sluice_service::now_ms();
        // Ends first: what the books hold after them was read after them.
        let marks = fetch_watermarks(&self.config.kafka, topic).await?;
        let read = self.store.payout_positions(topic).await?;
        let through = marks
            .iter()
            .map(|&(part, low, high)| match read.get(&part) {
                Some(&(next, _)) if next >= high => now,
                Some(&(_, newest)) => newest,
                None if low >= high => now,
                None => 0,
            })
            .min()
            .unwrap_or(now);
        Ok(through.saturating_sub(self.config.settle_secs * 1000))
    }

    /// Credits `block`: true if this call did (false: already credited).
    async fn credit(&self, block: &BlockToCredit) -> anyhow::Result<bool> {
        let bits = CompactTarget::from_consensus(block.network_bits);
        let block_work = sluice_core::hashes_of(Target::from_compact(bits));
        let minute = (block.timestamp_ms / 60_000) as u32;
        let (size, fee_bps) = match self.config.scheme {
            Scheme::Pplns => (
                pplns::size(block_work, self.config.window_milli()),
                self.config.fee_bps,
            ),
            // Shares were paid as they came: the block is the pool's.
            Scheme::Pps | Scheme::Fpps => (0, 0),
        };
        let topic = &self.config.kafka.topics.share;
        let (cut, minutes) = self.store.work_snapshot(topic, minute, size).await?;
        let window = pplns::window(minute, size, minutes);
        let s = split(block.reward, fee_bps, &window.work)?;
        let row = CreditedBlock {
            hash: block.hash.clone(),
            height: block.height,
            scheme: self.config.scheme.name().into(),
            reward: block.reward,
            fee_bps,
            block_work,
            window_size: size,
            first_minute: window.first_minute,
            last_minute: window.last_minute,
            window_work: window.total(),
            filled: window.filled,
            cut,
            users: s
                .credits
                .iter()
                .map(|(&u, c)| (u, (c.work, c.sat)))
                .collect(),
        };
        let txn = books::block_credit(&block.hash, &s);
        let done = self.store.credit_block(&row, &txn).await?;
        if done {
            self.metrics
                .blocks
                .get_or_create(&StepLabel { step: "credited" })
                .inc();
            tracing::info!(
                hash = block.hash,
                height = block.height,
                reward = block.reward,
                users = s.credits.len(),
                pool = s.pool(),
                filled = window.filled,
                minutes = window.last_minute - window.first_minute + 1,
                "block credited (immature)"
            );
        }
        Ok(done)
    }

    /// Matures or takes back credited blocks whose standing changed.
    async fn settle(&self) -> anyhow::Result<usize> {
        let mut settled = 0;
        for s in self.store.blocks_to_settle(PER_ROUND).await? {
            let Some(credit) = self.store.ledger_txn(Kind::BlockCredit, &s.hash).await? else {
                tracing::error!(hash = s.hash, "a credited block has no credit in the books");
                continue;
            };
            let (to, txn, step) = match (s.state.as_str(), s.status.as_str()) {
                ("immature", "confirmed") => ("mature", books::block_mature(&credit), "matured"),
                ("immature", _) => (
                    "orphaned",
                    books::block_orphaned(&credit, false),
                    "orphaned",
                ),
                _ => ("orphaned", books::block_orphaned(&credit, true), "orphaned"),
            };
            if self.store.settle_block(&s.hash, &s.state, to, &txn).await? {
                settled += 1;
                self.metrics.blocks.get_or_create(&StepLabel { step }).inc();
                tracing::info!(
                    hash = s.hash,
                    from = s.state,
                    to,
                    "block settled in the books"
                );
            }
        }
        Ok(settled)
    }

    /// Under PPS, every `pps_credit_secs`: each user's whole satoshis due.
    async fn credit_pps(&self) -> anyhow::Result<String> {
        let now = sluice_service::now_ms();
        let due = self.pps_at.load(Ordering::Relaxed) + self.config.pps_credit_secs * 1000;
        if !self.config.scheme.pays_per_share() || now < due {
            return Ok(String::new());
        }
        let topic = &self.config.kafka.topics.share;
        let credited = self.store.credit_pps(topic, &now.to_string()).await?;
        self.pps_at.store(now, Ordering::Relaxed);
        let Some((users, sat)) = credited else {
            return Ok(String::new());
        };
        self.metrics.pps_credited.inc_by(sat);
        tracing::info!(users, sat, "PPS value credited");
        Ok(format!(", PPS: {sat} sat to {users} users"))
    }

    /// What the books owe, for Prometheus: at most once a minute (it sums
    /// every entry).
    async fn gauges(&self) -> anyhow::Result<()> {
        let now = sluice_service::now_ms();
        if now < self.gauges_at.load(Ordering::Relaxed) + GAUGES_EVERY_MS {
            return Ok(());
        }
        self.gauges_at.store(now, Ordering::Relaxed);
        let balances = self.store.ledger_balances().await?;
        self.metrics
            .in_flight
            .set(balances.get(&Account::InFlight).copied().unwrap_or(0));
        let users = |f: fn(Account) -> bool| -> i64 {
            balances
                .iter()
                .filter(|(a, _)| f(**a))
                .map(|(_, v)| *v)
                .sum()
        };
        self.metrics
            .immature
            .set(users(|a| matches!(a, Account::Immature(u) if u != POOL)));
        self.metrics
            .owed
            .set(users(|a| matches!(a, Account::Balance(u) if u != POOL)));
        Ok(())
    }

    /// After a block was credited (the windows moved on) and every
    /// [`PRUNE_EVERY_MS`]: deletes the work older than any window can reach
    /// ([`pplns::keep_from`]) and than `work_keep_hours`.
    async fn prune(&self, credited: bool) -> anyhow::Result<()> {
        let now = sluice_service::now_ms();
        if !credited && now < self.pruned_at.load(Ordering::Relaxed) + PRUNE_EVERY_MS {
            return Ok(());
        }
        let now_minute = (now / 60_000) as u32;
        let keep_minutes = self.config.work_keep_hours.saturating_mul(60);
        let floor = now_minute.saturating_sub(keep_minutes);
        let pplns = self.config.scheme == Scheme::Pplns;
        let newest = self.store.newest_credited_window().await?;
        let uncredited = self.store.oldest_uncredited_found(floor).await?;
        let before = pplns::keep_from(pplns, newest, uncredited, now_minute, keep_minutes);
        let mut deleted = 0;
        for _ in 0..PRUNE_CHUNKS {
            let n = self.store.prune_work(before, PRUNE_CHUNK).await?;
            deleted += n;
            if n < u64::from(PRUNE_CHUNK) {
                self.pruned_at.store(now, Ordering::Relaxed);
                break;
            }
        }
        if deleted > 0 {
            self.metrics.pruned.inc_by(deleted);
            tracing::info!(
                deleted,
                before_minute = before,
                "work no window can reach deleted"
            );
        }
        Ok(())
    }
}
