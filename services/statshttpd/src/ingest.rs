//! From the Share topic to the share log, the windows and the totals.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_bus::{LogConsumer, Topic};
use sluice_core::record::ShareRecord;
use sluice_service::Backoff;
use tokio_util::sync::CancellationToken;

use crate::clock::day_of;
use crate::live::kind;
use crate::sharelog::{self, Writer};
use crate::{Stats, lock};

const DAY_MS: u64 = 86_400_000;
/// Without a single share for this long, the topic has nothing more to
/// give: initialized even if the end seen at start was not reached (an
/// undecodable last message, a truncated partition).
const QUIET_INITIALIZED: Duration = Duration::from_secs(30);

/// Rebuilds from the share log, then follows the topic until shutdown.
pub(crate) async fn run(stats: Arc<Stats>, token: CancellationToken) -> anyhow::Result<()> {
    let dir = stats.config.data_dir.clone();
    let mut writer = Writer::new(&dir)?;
    let resume = tokio::task::block_in_place(|| rebuild(&stats))?;
    let topic = Topic::<ShareRecord>::new(stats.config.kafka.topics.share.clone());
    let group = stats.config.group();
    let opened = Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(
            &token,
            || LogConsumer::new(&stats.config.kafka, &topic, &group, &resume),
            |error, retry_in| {
                stats
                    .health
                    .set("kafka", false, format!("Share topic: {error}"));
                tracing::warn!(%error, ?retry_in, "cannot read the Share topic yet");
            },
        )
        .await;
    let Some((consumer, starts)) = opened else {
        return Ok(());
    };
    stats
        .health
        .set("kafka", true, format!("Share topic, group {group}"));
    let mut behind: HashMap<i32, i64> = starts
        .iter()
        .filter(|s| s.offset < s.high)
        .map(|s| (s.partition, s.high))
        .collect();
    tracing::info!(?starts, "reading the Share topic");
    let mut next: HashMap<i32, i64> = starts.iter().map(|s| (s.partition, s.offset)).collect();
    *lock(&stats.positions) = next.clone();
    mark_initialized_if(&stats, behind.is_empty());

    let mut sync = tokio::time::interval(Duration::from_secs(1));
    let mut last_share = Instant::now();
    let mut unsynced = false;
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = sync.tick() => {
                if unsynced {
                    tokio::task::block_in_place(|| writer.sync())?;
                    unsynced = false;
                    if let Err(error) = consumer.commit(&next) {
                        tracing::warn!(%error, "committing Share offsets failed; the share log keeps them");
                    }
                    *lock(&stats.positions) = next.clone();
                }
                mark_initialized_if(&stats, last_share.elapsed() >= QUIET_INITIALIZED);
            }
            r = consumer.next() => {
                let record = match r {
                    Ok(r) => r,
                    Err(error) => {
                        stats.health.set("kafka", false, error.to_string());
                        tracing::error!(%error, "consuming Share failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                last_share = Instant::now();
                let written = writer.append(record.partition, record.offset, &record.value)?;
                if written {
                    count(&stats, &record.value);
                    unsynced = true;
                } else {
                    stats.metrics.already_logged.inc();
                }
                next.insert(record.partition, record.offset + 1);
                if behind.get(&record.partition).is_some_and(|&high| record.offset + 1 >= high) {
                    behind.remove(&record.partition);
                    mark_initialized_if(&stats, behind.is_empty());
                }
            }
        }
    }
    tokio::task::block_in_place(|| writer.sync())?;
    if let Err(error) = consumer.commit(&next) {
        tracing::warn!(%error, "last commit of Share offsets failed");
    }
    Ok(())
}

/// Counts a share just written to the log.
fn count(stats: &Stats, share: &ShareRecord) {
    let now = stats.clock.now_ms();
    lock(&stats.live).apply(share, now);
    lock(&stats.minutes).apply(
        (share.user_id, share.worker_id, share.server_id),
        kind(share.status),
        share.share_difficulty,
        share.timestamp_ms,
        now,
    );
    // Days before yesterday are final: such shares are only logged (a replay
    // of their day counts them).
    if day_of(share.timestamp_ms) >= day_of(now.saturating_sub(DAY_MS)) {
        lock(&stats.tally).apply(share);
    }
    if let Some(work) = lock(&stats.round).apply(share) {
        lock(&stats.block_work).push(work);
    }
    stats.metrics.shares.inc();
}

fn mark_initialized_if(stats: &Stats, done: bool) {
    if done && !stats.initialized.swap(true, Ordering::SeqCst) {
        let (users, workers) = lock(&stats.live).counts();
        stats.metrics.initializing.set(0);
        tracing::info!(
            users,
            workers,
            "caught up with the Share topic: initialized"
        );
    }
}

/// Counts yesterday's and today's share logs into the windows and totals;
/// returns, per partition, the offset after the last share they hold.
fn rebuild(stats: &Stats) -> anyhow::Result<HashMap<i32, i64>> {
    let now = stats.clock.now_ms();
    let started = Instant::now();
    let mut resume: HashMap<i32, i64> = HashMap::new();
    let mut shares = 0u64;
    for day in [day_of(now.saturating_sub(DAY_MS)), day_of(now)] {
        let path = sharelog::path_of(&stats.config.data_dir, day);
        sharelog::read(&path, |e| {
            let next = resume.entry(e.partition).or_insert(0);
            *next = (*next).max(e.offset + 1);
            count(stats, &e.share);
            shares += 1;
        })?;
    }
    tracing::info!(shares, took = ?started.elapsed(), ?resume, "windows and totals rebuilt from the share log");
    Ok(resume)
}
