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
    for s in starts.iter().filter(|s| s.reset) {
        tracing::warn!(
            partition = s.partition,
            from = s.offset,
            end = s.high,
            "the Share topic was recreated (or its log lost) since; reading this partition from its start"
        );
        // Where the share log itself lies past the end, its offsets are an
        // older log's: the new log's shares are counted whatever the share
        // log holds under the same numbers. (Where only the group's commit
        // lay past it, the share log already follows the new log and still
        // dedupes what it holds.)
        if resume.get(&s.partition).is_some_and(|&r| r > s.high) {
            writer.forget(s.partition);
        }
    }
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
                if let Err(why) = usable(&record.value, stats.clock.now_ms()) {
                    sluice_bus::count_poison(topic.name());
                    tracing::error!(topic = topic.name(), partition = record.partition,
                        offset = record.offset, why, "skipping a share that cannot be counted");
                } else if writer.append(record.partition, record.offset, &record.value)? {
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

/// How far ahead of this clock a share's time may be (sserver's clock).
const FUTURE_MS: u64 = 3_600_000;

/// Why `share` cannot be counted, if so: a difficulty that is not a
/// positive finite number would turn every sum it enters into NaN or
/// infinity for a day; a time far in the future would sit in the windows.
fn usable(share: &ShareRecord, now_ms: u64) -> Result<(), String> {
    let d = share.share_difficulty;
    if !(d.is_finite() && d > 0.0) {
        return Err(format!("share difficulty {d} is not a positive number"));
    }
    if share.timestamp_ms > now_ms.saturating_add(FUTURE_MS) {
        return Err(format!(
            "share time {} ms is more than an hour ahead of this clock ({now_ms})",
            share.timestamp_ms
        ));
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
/// returns, per partition, the offset after the last share they hold (the
/// last written, not the highest: after a topic was recreated the log goes
/// on with the new topic's lower offsets).
fn rebuild(stats: &Stats) -> anyhow::Result<HashMap<i32, i64>> {
    let now = stats.clock.now_ms();
    let started = Instant::now();
    let mut resume: HashMap<i32, i64> = HashMap::new();
    let mut shares = 0u64;
    for day in [day_of(now.saturating_sub(DAY_MS)), day_of(now)] {
        let path = sharelog::path_of(&stats.config.data_dir, day);
        sharelog::read(&path, |e| {
            resume.insert(e.partition, e.offset + 1);
            count(stats, &e.share);
            shares += 1;
        })?;
    }
    tracing::info!(shares, took = ?started.elapsed(), ?resume, "windows and totals rebuilt from the share log");
    Ok(resume)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use bitcoin::hashes::Hash;
    use sluice_core::JobId;
    use sluice_core::record::{ShareRecord, ShareStatus};

    use super::usable;

    #[test]
    fn a_share_that_would_poison_the_sums_is_refused_with_the_reason() {
        let share = |difficulty: f64, at: u64| ShareRecord {
            job_id: JobId(1),
            user_id: 1,
            worker_id: 1,
            worker_name: "rig".into(),
            server_id: 1,
            extranonce1: 1,
            extranonce2: vec![0; 8],
            ntime: 0,
            nonce: 0,
            version_bits: 0,
            share_difficulty: difficulty,
            network_bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
            height: 1,
            status: ShareStatus::Accepted,
            hash: bitcoin::BlockHash::all_zeros(),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timestamp_ms: at,
            protocol: sluice_core::record::MiningProtocol::StratumV1,
        };
        let now = 1_800_000_000_000;
        assert_eq!(usable(&share(1e-9, now), now), Ok(()));
        assert_eq!(
            usable(&share(4.0, now + 3_000_000), now),
            Ok(()),
            "clock skew"
        );
        for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            let why = usable(&share(bad, now), now).unwrap_err();
            assert!(why.contains("not a positive number"), "{why}");
        }
        let why = usable(&share(1.0, now + 3_700_000), now).unwrap_err();
        assert!(why.contains("an hour ahead"), "{why}");
    }
}
