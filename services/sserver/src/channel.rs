//! One miner's channel, whichever protocol carries it: a V1 connection, an
//! SV2 standard or extended channel, or (its miners sharing its jobs) a farm
//! agent's session. It knows nothing of its transport, as SRI's channel
//! types do not: the protocols translate wire messages into calls on it and
//! its answers back into wire messages.
//!
//! A [`Channel`] holds the miner's identity, its extranonce prefix, its
//! vardiff and the jobs it was sent ([`SentJobs`]). [`SentJobs::offer`]
//! says what to tell the miner of a new job (a difficulty first, a job new
//! to it or the same one again, whether the tip moved);
//! [`Channel::submit`] judges a share against the job it names and takes it
//! down the one post-judge path: the verdict counted, accepted work fed to
//! vardiff, the share's record and block candidate built
//! ([`Shared::account`]) and handed to the sinks, the candidate first
//! ([`Shared::publish`]). Only the answer on the wire is the protocol's.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::BlockHash;
use sluice_core::record::{MinerIdentity, MiningProtocol, ShareRecord, ShareStatus, SolvedShare};

use crate::jobs::{ServerJob, now_secs};
use crate::judge::{Credit, Judgement, SentJob, ShareWork, judge};
use crate::shared::{Miner, Shared};
use crate::solo::{Payee, SoloCoinbases};
use crate::spool::Unacked;
use crate::vardiff::Vardiff;

/// Jobs a channel remembers (shares for older ones are "job not found").
pub(crate) const SENT_JOBS: usize = 8;

/// The jobs a channel was sent, newest last, with the difficulty it was
/// told, the tip it was last given and when it was last sent anything.
#[derive(Debug)]
pub(crate) struct SentJobs {
    jobs: VecDeque<SentJob>,
    told: Option<f64>,
    last_tip: Option<BlockHash>,
    last_notify: Instant,
    next_serial: u64,
    /// A solo miner's coinbases: each job goes with its own.
    solo: Option<SoloCoinbases>,
}

/// What to send a miner of the newest job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Offer {
    /// A difficulty to tell first: it changed since the last one told.
    pub(crate) difficulty: Option<f64>,
    /// The job's serial on this channel when it is new to it; `None` when
    /// it is the job sent last (sent again, or only a new difficulty).
    pub(crate) fresh: Option<u64>,
    /// The tip moved since the job sent before: older work is stale.
    pub(crate) clean: bool,
}

impl SentJobs {
    /// None sent yet; the first job sent is numbered `first_serial`.
    pub(crate) fn new(first_serial: u64) -> Self {
        SentJobs {
            jobs: VecDeque::new(),
            told: None,
            last_tip: None,
            last_notify: Instant::now(),
            next_serial: first_serial,
            solo: None,
        }
    }

    /// Every job is sent paying `payee` (a solo miner).
    pub(crate) fn paying(mut self, payee: Option<Arc<Payee>>) -> Self {
        self.solo = payee.map(SoloCoinbases::new);
        self
    }

    /// Whether `job` is the one sent last.
    pub(crate) fn is_latest(&self, job: &Arc<ServerJob>) -> bool {
        self.jobs.back().is_some_and(|s| Arc::ptr_eq(&s.job, job))
    }

    /// The serial `job` has (sent last) or will have (new).
    pub(crate) fn serial_for(&self, job: &Arc<ServerJob>) -> u64 {
        match self.jobs.back() {
            Some(s) if Arc::ptr_eq(&s.job, job) => s.serial,
            _ => self.next_serial,
        }
    }

    /// What to send of `job` at `difficulty`, recorded as sent at `now`;
    /// `None` when it and the difficulty were both sent already and
    /// nothing is `force`d (the periodic notify forces). The job sent last
    /// at a new difficulty counts at it from `now`, the old one for the
    /// retarget grace.
    pub(crate) fn offer(
        &mut self,
        job: &Arc<ServerJob>,
        difficulty: f64,
        force: bool,
        now: Instant,
    ) -> Option<Offer> {
        let already = self.is_latest(job);
        if already && !force && self.told == Some(difficulty) {
            return None;
        }
        // A solo miner is never sent a job that would pay the pool.
        let coinbase2 = match &mut self.solo {
            Some(solo) => Some(solo.coinbase2(job)?),
            None => None,
        };
        let new_difficulty = (self.told != Some(difficulty)).then_some(difficulty);
        self.told = Some(difficulty);
        let tip = job.job.prev_blockhash;
        let clean = self.last_tip != Some(tip);
        self.last_tip = Some(tip);
        self.last_notify = now;
        let fresh = if already {
            if let Some(s) = self.jobs.back_mut() {
                s.retarget(difficulty, now);
            }
            None
        } else {
            if self.jobs.len() == SENT_JOBS {
                self.jobs.pop_front();
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            let mut sent = SentJob::new(Arc::clone(job), difficulty);
            sent.serial = serial;
            sent.coinbase2 = coinbase2;
            self.jobs.push_back(sent);
            Some(serial)
        };
        Some(Offer {
            difficulty: new_difficulty,
            fresh,
            clean,
        })
    }

    /// The next job new to the channel is numbered `serial` (a group's
    /// id for it: every member numbers a job alike).
    pub(crate) fn number_next(&mut self, serial: u64) {
        self.next_serial = serial;
    }

    /// `difficulty` was told with the channel's opening.
    pub(crate) fn told(&mut self, difficulty: f64) {
        self.told = Some(difficulty);
    }

    /// Nothing was sent for a while: the next periodic notify is an
    /// interval after `now`.
    pub(crate) fn waited(&mut self, now: Instant) {
        self.last_notify = now;
    }

    /// When anything was last sent.
    pub(crate) fn last_notify(&self) -> Instant {
        self.last_notify
    }

    /// Where the job `which` picks is among those remembered.
    pub(crate) fn find(&self, which: impl Fn(&SentJob) -> bool) -> Option<usize> {
        self.jobs.iter().position(which)
    }

    /// The job remembered at `pos` (from [`SentJobs::find`]).
    pub(crate) fn job(&self, pos: usize) -> Option<&SentJob> {
        self.jobs.get(pos)
    }

    /// The job sent last.
    pub(crate) fn latest(&self) -> Option<&SentJob> {
        self.jobs.back()
    }

    /// A dropped session's jobs, taken over by the one resuming it: its
    /// miners' shares name them. Nothing was told on the new connection.
    pub(crate) fn resume(&mut self, dropped: SentJobs) {
        self.jobs = dropped.jobs;
        self.last_tip = dropped.last_tip;
        self.next_serial = dropped.next_serial;
    }
}

/// How a share reached the pool: from where, over which protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Via {
    pub(crate) peer: IpAddr,
    pub(crate) protocol: MiningProtocol,
}

/// A miner behind a channel (one of a farm agent's): shares on the
/// channel's jobs, its own identity and vardiff, and the difficulties its
/// share counts at.
#[derive(Debug)]
pub(crate) struct Behind<'a> {
    pub(crate) miner: &'a Miner,
    pub(crate) vardiff: &'a mut Vardiff,
    pub(crate) credit: Credit,
}

/// One miner's channel: who mines on it, its extranonce prefix, its
/// vardiff and the jobs it was sent.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) miner: Miner,
    pub(crate) extranonce1: [u8; 4],
    pub(crate) vardiff: Vardiff,
    pub(crate) sent: SentJobs,
}

impl Channel {
    /// A channel for `miner` with nothing sent yet.
    pub(crate) fn new(
        miner: Miner,
        extranonce1: [u8; 4],
        vardiff: Vardiff,
        first_serial: u64,
    ) -> Self {
        let payee = miner.solo.clone();
        Channel {
            miner,
            extranonce1,
            vardiff,
            sent: SentJobs::new(first_serial).paying(payee),
        }
    }

    /// What to send of `job` at the channel's difficulty ([`SentJobs::offer`]).
    pub(crate) fn offer(&mut self, job: &Arc<ServerJob>, force: bool) -> Option<Offer> {
        let difficulty = self.vardiff.current();
        self.sent.offer(job, difficulty, force, Instant::now())
    }

    /// When the channel next needs a look: the end of its vardiff window
    /// (its clock started at `started`) or its periodic notify.
    pub(crate) fn next_wake(&self, started: Instant, interval: Duration) -> Instant {
        let window = started + Duration::from_secs_f64(self.vardiff.window_end().max(0.0));
        window.min(self.sent.last_notify + interval)
    }

    /// Whether the channel is due its newest job again: vardiff retargeted
    /// it (its clock reads `clock`) or `interval` passed since anything was
    /// sent.
    pub(crate) fn due(&mut self, clock: f64, interval: Duration) -> bool {
        let retargeted = self.vardiff.retarget(clock).is_some();
        retargeted || self.sent.last_notify.elapsed() >= interval
    }

    /// The miner's identity in events, with the software it runs.
    pub(crate) fn identity(&self, server_id: u8, peer: IpAddr, agent: String) -> MinerIdentity {
        self.miner
            .identity(server_id, self.extranonce1, peer, agent)
    }

    /// Judges a share of the job at `pos` (from [`SentJobs::find`]) and
    /// takes the judgement down the post-judge path: counted, accepted work
    /// fed to vardiff, and for a checked share its record and block
    /// candidate returned for [`Shared::publish`]. The share is the
    /// channel's own miner's, or with `behind` a farm agent's miner's: on
    /// the agent's jobs, at its own difficulty.
    pub(crate) fn submit(
        &mut self,
        shared: &Shared,
        pos: usize,
        work: &ShareWork<'_>,
        version_mask: u32,
        via: Via,
        behind: Option<Behind<'_>>,
    ) -> (Judgement, Recorded) {
        let Some(sent) = self.sent.jobs.get_mut(pos) else {
            let difficulty = behind.map_or(self.vardiff.current(), |b| b.credit.difficulty);
            return (Judgement::job_gone(difficulty), Recorded::default());
        };
        let behind = behind.unwrap_or(Behind {
            miner: &self.miner,
            credit: sent.credit(),
            vardiff: &mut self.vardiff,
        });
        judged(shared, sent, work, version_mask, via, behind)
    }
}

/// The one path from a share to its judgement, its counting and its record.
fn judged(
    shared: &Shared,
    sent: &mut SentJob,
    work: &ShareWork<'_>,
    version_mask: u32,
    via: Via,
    behind: Behind<'_>,
) -> (Judgement, Recorded) {
    let board = Arc::clone(&shared.board.borrow());
    let judgement = judge(
        &board,
        sent,
        behind.credit,
        work,
        version_mask,
        Instant::now(),
        now_secs(),
    );
    let from = Source {
        miner: behind.miner,
        peer: via.peer,
        protocol: via.protocol,
    };
    let recorded = shared.account(&judgement, work, behind.vardiff, from);
    (judgement, recorded)
}

/// Who a share is from, as its record names them.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    miner: &'a Miner,
    peer: IpAddr,
    protocol: MiningProtocol,
}

/// A judged share's record and block candidate, for [`Shared::publish`].
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) share: Option<ShareRecord>,
    pub(crate) solved: Option<SolvedShare>,
}

impl Shared {
    /// Counts `judgement` of `work`, credits accepted work to `vardiff`,
    /// and for a share that was checked builds its record, and its block
    /// candidate if it is one.
    fn account(
        &self,
        judgement: &Judgement,
        work: &ShareWork<'_>,
        vardiff: &mut Vardiff,
        from: Source<'_>,
    ) -> Recorded {
        self.metrics.share(judgement.label());
        let difficulty = judgement.difficulty;
        if judgement.verdict.is_ok() {
            self.metrics.accepted_difficulty.inc_by(difficulty);
            vardiff.on_accepted(difficulty);
        }
        let (Some(status), Some(job), Some(checked)) = (
            judgement.status,
            judgement.job.as_ref(),
            judgement.checked.as_ref(),
        ) else {
            return Recorded::default();
        };
        let solved = (status == ShareStatus::Block).then(|| {
            let coinbase2 = judgement
                .coinbase2
                .as_deref()
                .unwrap_or(&job.work.coinbase2);
            self.solved_share(
                job,
                coinbase2,
                from.miner,
                work.extranonce1,
                work.extranonce2,
                checked,
            )
        });
        let share = ShareRecord {
            job_id: job.job.id,
            user_id: from.miner.user_id,
            worker_id: from.miner.worker_id,
            worker_name: from.miner.worker.clone(),
            server_id: self.server_id,
            extranonce1: work
                .extranonce1
                .try_into()
                .map(u32::from_be_bytes)
                .unwrap_or_default(),
            extranonce2: work.extranonce2.to_vec(),
            ntime: work.ntime,
            nonce: work.nonce,
            version_bits: work.version_bits.unwrap_or(0),
            share_difficulty: difficulty,
            network_bits: job.job.bits,
            height: job.job.height,
            status,
            hash: checked.hash,
            client_ip: from.peer,
            timestamp_ms: sluice_service::now_ms(),
            protocol: from.protocol,
            solo: from.miner.solo.is_some(),
        };
        Recorded {
            share: Some(share),
            solved,
        }
    }

    /// Hands `recorded` to the sinks: the block candidate first (one writer
    /// logs it to disk, then sends it until acknowledged), then the share;
    /// with `accept_wait`, the share's acknowledgement joins `unacked` for
    /// the answer to wait on. A full queue means the broker is behind: this
    /// waits, never drops.
    pub(crate) async fn publish(&self, recorded: Recorded, unacked: &mut Vec<Unacked>) {
        if let Some(solved) = recorded.solved {
            self.solved.send(solved).await;
        }
        if let Some(share) = recorded.share {
            let acked = self.shares.send(&share).await;
            if !self.config.accept_wait.is_zero() {
                unacked.push(acked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::tests::{HARD_BITS, job};

    fn test_job(seq: u64, tip: u8) -> Arc<ServerJob> {
        job(seq, tip, HARD_BITS)
    }

    fn sent() -> SentJobs {
        SentJobs::new(1)
    }

    #[test]
    fn a_new_job_is_fresh_and_clean_on_a_new_tip_only() {
        let (a, b) = (test_job(1, 1), test_job(2, 1));
        let c = test_job(3, 2);
        let mut s = sent();
        let now = Instant::now();
        let first = s.offer(&a, 1.0, false, now);
        assert_eq!(
            first,
            Some(Offer {
                difficulty: Some(1.0),
                fresh: Some(1),
                clean: true
            })
        );
        let same_tip = s.offer(&b, 1.0, false, now);
        assert_eq!(
            same_tip,
            Some(Offer {
                difficulty: None,
                fresh: Some(2),
                clean: false
            })
        );
        assert_eq!(s.offer(&c, 1.0, false, now).map(|o| o.clean), Some(true));
        assert_eq!(s.serial_for(&c), 3);
        assert_eq!(
            s.serial_for(&a),
            4,
            "a job not sent last gets the next serial"
        );
    }

    #[test]
    fn the_job_sent_last_goes_again_only_forced_or_at_a_new_difficulty() {
        let a = test_job(1, 1);
        let mut s = sent();
        let t0 = Instant::now();
        s.offer(&a, 1.0, false, t0);
        assert_eq!(s.offer(&a, 1.0, false, t0), None);
        let forced = s.offer(&a, 1.0, true, t0);
        assert_eq!(
            forced,
            Some(Offer {
                difficulty: None,
                fresh: None,
                clean: false
            })
        );
        let t1 = t0 + Duration::from_secs(1);
        let retarget = s.offer(&a, 4.0, false, t1);
        assert_eq!(retarget.and_then(|o| o.difficulty), Some(4.0));
        let job = s.job(0).map(SentJob::credit);
        assert_eq!(
            job,
            Some(Credit {
                difficulty: 4.0,
                previous: Some((1.0, t1))
            }),
            "shares in flight at the old difficulty keep the grace"
        );
    }

    #[test]
    fn a_channel_remembers_its_newest_jobs_only() {
        let mut s = sent();
        let now = Instant::now();
        let jobs: Vec<_> = (1..=SENT_JOBS as u64 + 2).map(|i| test_job(i, 1)).collect();
        for j in &jobs {
            s.offer(j, 1.0, false, now);
        }
        let pos = |k: usize| s.find(|j| j.job.job.id == jobs[k].job.id);
        assert_eq!(pos(0), None);
        assert_eq!(pos(1), None);
        assert_eq!(pos(2), Some(0));
        assert_eq!(pos(SENT_JOBS + 1), Some(SENT_JOBS - 1));
    }

    #[test]
    fn a_resumed_session_keeps_the_jobs_and_tells_the_difficulty_again() {
        let a = test_job(1, 1);
        let mut old = sent();
        old.offer(&a, 2.0, false, Instant::now());
        let mut new = sent();
        new.resume(old);
        assert!(new.is_latest(&a));
        let again = new.offer(&a, 2.0, false, Instant::now());
        assert_eq!(
            again,
            Some(Offer {
                difficulty: Some(2.0),
                fresh: None,
                clean: false
            })
        );
    }
}
