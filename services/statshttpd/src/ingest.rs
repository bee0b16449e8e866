//! From the Share topic to the share log, the windows and the totals.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_bus::{LogConsumer, Topic, TopicOwner};
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
    let topic = Topic::<ShareRecord>::new(stats.config.kafka.topics.share.clone());
    // The share log is this cluster's topic's: which one is asked first.
    let owner = until_the_broker_answers(&stats, &token, "cluster id", || {
        TopicOwner::of(&stats.config.kafka, topic.name())
    })
    .await;
    let Some(owner) = owner else {
        return Ok(());
    };
    let dir = stats.config.data_dir.clone();
    let mut writer = Writer::new(&dir, owner.clone())?;
    let rebuilt = tokio::task::block_in_place(|| rebuild(&stats, &owner))?;
    check_against_topic(&stats, &topic, &rebuilt).await?;
    let resume = rebuilt.resume;
    let group = stats.config.group();
    let opened = until_the_broker_answers(&stats, &token, "Share topic", || {
        LogConsumer::new(&stats.config.kafka, &topic, &group, &resume)
    })
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

/// `ask` again and again, with backoff, until the broker answers it or
/// `token` is cancelled (`None`); /health's `kafka` says why meanwhile.
async fn until_the_broker_answers<T, Fut>(
    stats: &Stats,
    token: &CancellationToken,
    what: &str,
    ask: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: Future<Output = Result<T, sluice_bus::BusError>>,
{
    Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(token, ask, |error, retry_in| {
            stats.health.set("kafka", false, format!("{what}: {error}"));
            tracing::warn!(%error, ?retry_in, what, "the broker does not answer yet");
        })
        .await
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

/// What the share log gave the windows and totals at start.
pub(crate) struct Rebuilt {
    /// Per partition, the offset after the last share the files hold (the
    /// last written, not the highest: after a topic was recreated the log
    /// goes on with the new topic's lower offsets).
    pub(crate) resume: HashMap<i32, i64>,
    /// Per partition, the last share the files hold, and whether its file
    /// named its owner (the first format did not).
    last: HashMap<i32, (i64, ShareRecord, bool)>,
}

/// Counts yesterday's and today's share logs into the windows and totals,
/// once their headers say they hold `owner`'s shares (else the error names
/// both: another pool's share log is never counted).
fn rebuild(stats: &Stats, owner: &TopicOwner) -> anyhow::Result<Rebuilt> {
    let now = stats.clock.now_ms();
    let started = Instant::now();
    let days = [day_of(now.saturating_sub(DAY_MS)), day_of(now)];
    let paths: Vec<_> = days
        .iter()
        .map(|&day| sharelog::path_of(&stats.config.data_dir, day))
        .collect();
    let owned: Vec<bool> = paths
        .iter()
        .map(|p| sharelog::check_owner(p, owner).map(|h| h != sharelog::Header::Legacy))
        .collect::<Result<_, _>>()?;
    let mut rebuilt = Rebuilt {
        resume: HashMap::new(),
        last: HashMap::new(),
    };
    let mut shares = 0u64;
    for (path, owned) in paths.iter().zip(owned) {
        sharelog::read(path, |e| {
            rebuilt.resume.insert(e.partition, e.offset + 1);
            count(stats, &e.share);
            shares += 1;
            rebuilt.last.insert(e.partition, (e.offset, e.share, owned));
        })?;
    }
    tracing::info!(shares, took = ?started.elapsed(), resume = ?rebuilt.resume, %owner,
        "windows and totals rebuilt from the share log");
    Ok(rebuilt)
}

/// How long the topic has to hand over one record it holds.
const LOOKUP_WITHIN: Duration = Duration::from_secs(10);

/// Checks the rebuilt figures against the records they came from: the last
/// share each partition's file holds must be the topic's record at that
/// offset. One that differs means the log is not this topic's: refused. One
/// the topic no longer holds (recreated since) is told; from a file of the
/// first format, which names no owner, nothing then vouches for it: refused.
async fn check_against_topic(
    stats: &Stats,
    topic: &Topic<ShareRecord>,
    rebuilt: &Rebuilt,
) -> anyhow::Result<()> {
    for (&partition, (offset, logged, owned)) in &rebuilt.last {
        let on_topic = sluice_bus::record_at(
            &stats.config.kafka,
            topic,
            partition,
            *offset,
            LOOKUP_WITHIN,
        )
        .await?;
        let at = format!("{}/{partition} offset {offset}", topic.name());
        match on_topic {
            Some(r) if r.offset == *offset && r.value == *logged => {}
            Some(r) => anyhow::bail!(
                "the share log in {} is not {}'s: its last share of {at} ({} by user {}) is not the topic's ({}): \
                 another pool's share log (give this pool a data_dir of its own, or move it away)",
                stats.config.data_dir.display(),
                topic.name(),
                logged.hash,
                logged.user_id,
                if r.offset == *offset {
                    r.value.hash.to_string()
                } else {
                    "undecodable".into()
                },
            ),
            None if *owned => tracing::warn!(
                at,
                "the topic no longer holds the share log's last share (recreated since): the rebuilt figures rest on the share log alone"
            ),
            None => anyhow::bail!(
                "the share log in {} names no owner and {at}, its last share, is not on the topic: \
                 nothing says it is this pool's (move it away, or give this pool a data_dir of its own)",
                stats.config.data_dir.display(),
            ),
        }
    }
    Ok(())
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
            solo: false,
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
