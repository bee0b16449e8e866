//! The jobs this server hands out, fed from the tail of the Job topic.
//!
//! One task consumes Jobs, fences deposed jobmaker leaders by epoch, and
//! publishes a new [`Board`] through a `watch` channel; every connection
//! holds a receiver, sends `mining.notify` when it changes, and looks jobs up
//! in it to check shares. A board keeps the jobs of the current tip and of
//! the previous one for `max_job_lifetime` (so late shares are classed
//! stale, not unknown), always at least the newest. If Kafka stalls the last
//! board stays: miners keep working on the last job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use sluice_bus::{BusConfig, TailConsumer, Topic};
use sluice_core::{EpochFence, Job, JobId, Work};
use sluice_service::{Backoff, Health};
use sluice_stratum::{Notification, Notify, ServerMessage};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A job as this server uses it: the check view and the notify, made once.
#[derive(Debug)]
pub struct ServerJob {
    /// The job as published.
    pub job: Job,
    /// What the share check needs.
    pub work: Work,
    /// The notify sent to miners (its `clean` flag is set per session).
    pub notify: Notify,
    /// `notify` as wire lines, clean and not: serialized once per job, not once
    /// per connection.
    lines: [String; 2],
    /// For a job with solo terms, the lines cut where coinbase2 goes: a
    /// solo miner's line is the two halves around its own coinbase2's hex.
    solo_lines: Option<[(String, String); 2]>,
}

impl ServerJob {
    /// Prepares `job` for sessions with `extranonce2_size` bytes of
    /// extranonce2. Jobs reserve 8; smaller sizes get zero padding in
    /// coinbase1, as btcpool does.
    pub fn new(job: Job, extranonce2_size: usize) -> Self {
        let mut work = job.work(extranonce2_size);
        work.coinbase1
            .resize(job.coinbase1.len() + 8 - extranonce2_size, 0);
        let notify = Notify {
            job_id: stratum_job_id(job.id),
            prev_hash: job.prev_blockhash,
            coinbase1: work.coinbase1.clone(),
            coinbase2: job.coinbase2.clone(),
            merkle_branch: job.merkle_branch.clone(),
            version: job.version.to_consensus() as u32,
            bits: job.bits,
            time: job.time,
            clean: job.clean,
        };
        let line = |clean: bool, coinbase2: &[u8]| {
            let n = Notify {
                clean,
                coinbase2: coinbase2.to_vec(),
                ..notify.clone()
            };
            ServerMessage::from(Notification::Notify(n)).to_line()
        };
        let lines = [line(false, &job.coinbase2), line(true, &job.coinbase2)];
        let solo_lines = job.solo.as_ref().and_then(|_| {
            let cut = |clean: bool| {
                let line = line(clean, &[]);
                // coinbase1's hex, then the empty coinbase2: `"…",""`.
                let marker = format!("\"{}\",\"\"", hex::encode(&notify.coinbase1));
                let at = line.find(&marker)? + marker.len() - 1;
                Some((line[..at].to_owned(), line[at..].to_owned()))
            };
            Some([cut(false)?, cut(true)?])
        });
        ServerJob {
            job,
            work,
            notify,
            lines,
            solo_lines,
        }
    }

    /// The `mining.notify` line (without newline) with this `clean` flag.
    pub fn notify_line(&self, clean: bool) -> &str {
        &self.lines[usize::from(clean)]
    }

    /// The `mining.notify` line of this job, with `clean`, cut where
    /// coinbase2's hex goes: a solo miner's line is the two halves around
    /// its own (written into its connection's buffer as they are). `None`
    /// for a job without solo terms.
    pub fn solo_halves(&self, clean: bool) -> Option<(&str, &str)> {
        let (head, tail) = self.solo_lines.as_ref()?.get(usize::from(clean))?;
        Some((head, tail))
    }

    /// The `mining.notify` line of this job ending its coinbase in
    /// `coinbase2` (a solo miner's) instead of the job's.
    pub fn notify_line_paying(&self, clean: bool, coinbase2: &[u8]) -> String {
        match self.solo_halves(clean) {
            Some((head, tail)) => [head, &hex::encode(coinbase2), tail].concat(),
            None => {
                let n = Notify {
                    clean,
                    coinbase2: coinbase2.to_vec(),
                    ..self.notify.clone()
                };
                ServerMessage::from(Notification::Notify(n)).to_line()
            }
        }
    }
}

/// The id miners see: the job id in hex.
pub fn stratum_job_id(id: JobId) -> String {
    format!("{:x}", id.0)
}

/// The inverse of [`stratum_job_id`].
pub fn parse_stratum_job_id(s: &str) -> Option<JobId> {
    u64::from_str_radix(s, 16).ok().map(JobId)
}

/// Unix time in seconds, as headers and job ids count it.
pub fn now_secs() -> u32 {
    u32::try_from(sluice_service::now_ms() / 1000).unwrap_or(u32::MAX)
}

/// The jobs on offer at one moment.
#[derive(Debug, Clone, Default)]
pub struct Board {
    jobs: BTreeMap<JobId, Arc<ServerJob>>,
}

impl Board {
    /// The newest job, if any arrived yet.
    pub fn latest(&self) -> Option<&Arc<ServerJob>> {
        self.jobs.values().next_back()
    }

    /// A job by id.
    pub fn get(&self, id: JobId) -> Option<&Arc<ServerJob>> {
        self.jobs.get(&id)
    }

    /// Whether shares for `job` no longer build on the tip.
    pub fn is_stale(&self, job: &ServerJob) -> bool {
        self.latest()
            .is_some_and(|l| l.job.prev_blockhash != job.job.prev_blockhash)
    }

    /// The tip the newest job builds on.
    pub fn tip(&self) -> Option<BlockHash> {
        self.latest().map(|l| l.job.prev_blockhash)
    }

    /// How many jobs are kept.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job arrived yet.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The board with `job` added and old ones dropped: jobs older than
    /// `lifetime_secs` (by their id's time) at `now_secs`, and jobs two tips back.
    pub fn with(&self, job: Arc<ServerJob>, lifetime_secs: u32, now_secs: u32) -> Board {
        let mut jobs = self.jobs.clone();
        let height = job.job.height;
        jobs.insert(job.job.id, job);
        let newest = jobs.keys().next_back().copied();
        jobs.retain(|id, j| {
            Some(*id) == newest
                || (j.job.height + 1 >= height
                    && id.created_secs().saturating_add(lifetime_secs) >= now_secs)
        });
        Board { jobs }
    }
}

/// Settings of the job feed.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Kafka.
    pub kafka: BusConfig,
    /// Bytes of extranonce2.
    pub extranonce2_size: usize,
    /// Seconds a job stays valid for shares.
    pub max_job_lifetime_secs: u32,
    /// Counts jobs fenced off by epoch.
    pub fenced: prometheus_client::metrics::counter::Counter,
}

/// Follows the Job topic until `token` is cancelled, publishing boards.
/// Connection failures are retried with backoff; the last board stays.
pub async fn feed(
    config: FeedConfig,
    board: watch::Sender<Arc<Board>>,
    health: Health,
    token: CancellationToken,
) {
    let topic: Topic<Job> = Topic::new(config.kafka.topics.job.clone());
    let mut fence = EpochFence::default();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !token.is_cancelled() {
        let consumer = backoff
            .retry(
                &token,
                || TailConsumer::new(&config.kafka, &topic, 4),
                |error, retry_in| {
                    health.set("jobs", !board.borrow().is_empty(), format!("{error}"));
                    tracing::warn!(%error, ?retry_in, "job topic unavailable");
                },
            )
            .await;
        let Some(consumer) = consumer else { return };
        loop {
            let record = tokio::select! {
                () = token.cancelled() => return,
                r = consumer.next() => r,
            };
            let (job, partition, offset) = match record {
                Ok(r) => (r.value, r.partition, r.offset),
                Err(error) => {
                    tracing::warn!(%error, "job consumer failed; reconnecting");
                    break;
                }
            };
            // Before the fence: a job no jobmaker makes moves nothing.
            if let Err(why) = job.check() {
                sluice_bus::count_poison(topic.name());
                tracing::error!(topic = topic.name(), partition, offset, job = %job.id, why,
                    "skipping a job that cannot be real");
                continue;
            }
            if !fence.admit(&job) {
                config.fenced.inc();
                tracing::warn!(job = %job.id, epoch = job.leader_epoch, "job from a deposed jobmaker ignored");
                continue;
            }
            let now = now_secs();
            if job
                .id
                .created_secs()
                .saturating_add(config.max_job_lifetime_secs)
                < now
            {
                tracing::debug!(job = %job.id, "expired job skipped");
                continue;
            }
            if board.borrow().get(job.id).is_some() {
                continue;
            }
            tracing::debug!(job = %job.id, height = job.height, clean = job.clean, "new job");
            let job = Arc::new(ServerJob::new(job, config.extranonce2_size));
            let next = board.borrow().with(job, config.max_job_lifetime_secs, now);
            health.set(
                "jobs",
                true,
                format!(
                    "{} jobs, newest height {}",
                    next.len(),
                    next.latest().map_or(0, |j| j.job.height)
                ),
            );
            board.send_replace(Arc::new(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, CompactTarget, block::Version};
    use sluice_core::TemplateId;

    fn job(id_secs: u64, seq: u64, height: u32, tip: u8) -> Arc<ServerJob> {
        Arc::new(ServerJob::new(
            Job {
                id: JobId(id_secs << 32 | seq),
                leader_epoch: 1,
                template_id: TemplateId([0; 32]),
                height,
                prev_blockhash: BlockHash::from_byte_array([tip; 32]),
                version: Version::from_consensus(0x2000_0000),
                bits: CompactTarget::from_consensus(0x207f_ffff),
                time: 0,
                min_time: 0,
                coinbase1: vec![1, 2, 3],
                coinbase2: vec![4],
                merkle_branch: vec![],
                coinbase_value: Amount::ZERO,
                clean: true,
                created_at_ms: 0,
                solo: None,
            },
            4,
        ))
    }

    #[test]
    fn small_extranonce2_pads_coinbase1() {
        let j = job(1, 1, 1, 1);
        assert_eq!(j.work.coinbase1, vec![1, 2, 3, 0, 0, 0, 0]);
        assert_eq!(j.notify.coinbase1, j.work.coinbase1);
        assert_eq!(j.work.extranonce2_len, 4);
        assert_eq!(parse_stratum_job_id(&j.notify.job_id), Some(j.job.id));
        for clean in [false, true] {
            let line = ServerMessage::parse(j.notify_line(clean)).expect("a notify line");
            let expected = Notify {
                clean,
                ..j.notify.clone()
            };
            assert_eq!(line, ServerMessage::from(Notification::Notify(expected)));
        }
    }

    #[test]
    fn a_solo_line_is_the_job_s_with_the_miner_s_coinbase2() {
        let plain = job(1, 1, 1, 1);
        let mut with_solo = plain.job.clone();
        with_solo.solo = Some(sluice_core::SoloCoinbase {
            network: bitcoin::Network::Regtest,
            miner_value: Amount::ZERO,
            outputs: vec![],
        });
        let j = ServerJob::new(with_solo, 4);
        for (clean, cb2) in [(false, vec![]), (true, vec![0xab, 0xcd, 0x01])] {
            let line =
                ServerMessage::parse(&j.notify_line_paying(clean, &cb2)).expect("a notify line");
            let expected = Notify {
                clean,
                coinbase2: cb2.clone(),
                ..j.notify.clone()
            };
            assert_eq!(
                line,
                ServerMessage::from(Notification::Notify(expected.clone()))
            );
            // A job without solo terms says the same, the slow way.
            let slow =
                ServerMessage::parse(&plain.notify_line_paying(clean, &cb2)).expect("a line");
            let expected = Notify {
                coinbase2: cb2,
                ..expected
            };
            assert_eq!(slow, ServerMessage::from(Notification::Notify(expected)));
        }
    }

    #[test]
    fn stale_expiry_and_the_last_job_stays() {
        let b = Board::default().with(job(100, 1, 10, 1), 300, 100);
        let b = b.with(job(100, 2, 10, 1), 300, 100);
        assert_eq!(b.len(), 2);
        let old = Arc::clone(b.latest().expect("two jobs"));
        assert!(!b.is_stale(&old));
        let b = b.with(job(101, 3, 11, 2), 300, 101);
        assert_eq!(
            b.len(),
            3,
            "the previous tip's jobs stay to be called stale"
        );
        assert!(b.is_stale(&old));
        let b = b.with(job(102, 4, 12, 3), 300, 102);
        assert_eq!(b.len(), 2, "two tips back is gone");
        assert!(b.get(old.job.id).is_none());
        // Everything expired but the newest.
        let b = b.with(job(103, 5, 12, 3), 300, 10_000);
        assert_eq!(b.len(), 1);
        assert_eq!(b.latest().map(|j| j.job.id), Some(JobId(103 << 32 | 5)));
    }

    #[test]
    fn a_newer_job_on_another_chain_s_lower_tip_makes_the_old_chain_s_jobs_stale() {
        // Jobs on a chain no node holds (height 229), then the jobmaker's
        // first job on the nodes' real tip, lower (height 111).
        let b = Board::default().with(job(100, 1, 229, 1), 300, 100);
        let b = b.with(job(100, 2, 229, 1), 300, 100);
        let wrong = Arc::clone(b.latest().expect("a job"));
        let b = b.with(job(101, 3, 111, 2), 300, 101);
        assert_eq!(
            b.latest().map(|j| j.job.height),
            Some(111),
            "the newest job leads"
        );
        assert_eq!(b.tip(), Some(BlockHash::from_byte_array([2; 32])));
        assert!(
            b.is_stale(&wrong),
            "a share on the old chain is stale, not accepted"
        );
        assert!(
            b.get(wrong.job.id).is_some(),
            "and known: stale, not unknown"
        );
        let right = Arc::clone(b.latest().expect("a job"));
        assert!(!b.is_stale(&right));
    }
}
