//! The share judge: whether a share is accepted, and why not, whichever
//! protocol carried it. Stratum V1 and V2 sessions find the job the share
//! names among the ones they sent, call [`judge`] with the clock readings as
//! parameters, and only translate the verdict into their own error codes.
//!
//! The rules, in order: the extranonce2 has the session's size; the job is
//! still on the board; the share was not seen before for that job; the
//! version bits stay inside the negotiated mask; ntime is not before the
//! job's mintime nor too far ahead of the clock; the job still builds on the
//! tip (else stale); the hash meets the difficulty the job was sent with, or
//! the one before a retarget within [`RETARGET_GRACE`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::record::ShareStatus;
use sluice_core::share::{SubmissionError, check_ntime};
pub(crate) use sluice_core::target_of;
use sluice_core::{CheckedShare, ShareOutcome, Submission};

use crate::jobs::{Board, ServerJob};

/// How long after a retarget on the same job a share meeting only the old
/// difficulty is still accepted (at the old difficulty): the miner found it
/// before it read the new one.
pub(crate) const RETARGET_GRACE: Duration = Duration::from_secs(10);

/// A job as sent to one session (or one SV2 channel).
#[derive(Debug)]
pub(crate) struct SentJob {
    pub job: Arc<ServerJob>,
    pub difficulty: f64,
    /// The difficulty this job was sent with before a retarget resent it,
    /// and when: shares in flight at the old one still count, at the old
    /// one, for [`RETARGET_GRACE`].
    pub previous: Option<(f64, Instant)>,
    /// Shares seen for this job, by a keyed 64-bit hash of (extranonce2,
    /// ntime, nonce, version bits): 8 bytes a share instead of 20. The key
    /// is random per process, so no miner can aim for a collision; a chance
    /// one (2^-64 per pair) would refuse one share as a duplicate.
    pub seen: HashSet<u64>,
    /// The session's number for this sending (a farm agent's short job id
    /// is it modulo 256); 0 where unused.
    pub serial: u64,
    /// A solo miner's coinbase2 for this job (its own output first);
    /// `None`: the job's, the pool's.
    pub coinbase2: Option<Arc<[u8]>>,
}

impl SentJob {
    pub(crate) fn new(job: Arc<ServerJob>, difficulty: f64) -> Self {
        SentJob {
            job,
            difficulty,
            previous: None,
            seen: HashSet::new(),
            serial: 0,
            coinbase2: None,
        }
    }

    /// The coinbase after the extranonce this job was sent with.
    pub(crate) fn coinbase2(&self) -> &[u8] {
        self.coinbase2
            .as_deref()
            .unwrap_or(&self.job.work.coinbase2)
    }

    /// What a share of this job counts at: its difficulty, or the one
    /// before a retarget for the grace.
    pub(crate) fn credit(&self) -> Credit {
        Credit {
            difficulty: self.difficulty,
            previous: self.previous,
        }
    }

    /// The same job at a new difficulty from `now` on.
    pub(crate) fn retarget(&mut self, difficulty: f64, now: Instant) {
        if self.difficulty != difficulty {
            self.previous = Some((self.difficulty, now));
            self.difficulty = difficulty;
        }
    }
}

/// The share as the miner described it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShareWork<'a> {
    /// The session's (or channel's) fixed part of the extranonce.
    pub extranonce1: &'a [u8],
    /// The miner's part.
    pub extranonce2: &'a [u8],
    pub ntime: u32,
    pub nonce: u32,
    /// Rolled version bits (BIP310), if any.
    pub version_bits: Option<u32>,
}

/// Why a share is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// extranonce2 of the wrong size.
    Extranonce2Size {
        got: usize,
        expected: usize,
    },
    /// The job left the board (replaced long ago).
    JobExpired,
    /// Seen before for this job.
    Duplicate,
    /// Version bits outside the negotiated mask.
    VersionBits {
        bits: u32,
        mask: u32,
    },
    /// The header could not be built.
    Invalid(String),
    TimeTooOld,
    TimeTooNew,
    /// The job no longer builds on the tip.
    Stale,
    /// The hash does not meet the difficulty.
    LowDifficulty,
}

/// The judge's answer.
#[derive(Debug)]
pub(crate) struct Judgement {
    /// `Ok` when accepted (a block candidate or a share).
    pub verdict: Result<(), Rejection>,
    /// What the share record says; `None` for shares never checked
    /// (expired job, duplicate, malformed).
    pub status: Option<ShareStatus>,
    /// The difficulty the share is credited at.
    pub difficulty: f64,
    /// The job, when still on the board.
    pub job: Option<Arc<ServerJob>>,
    /// The header and its hash, when one could be built.
    pub checked: Option<CheckedShare>,
    /// A solo miner's coinbase2 the header commits to (else the job's).
    pub coinbase2: Option<Arc<[u8]>>,
}

impl Judgement {
    fn refused(rejection: Rejection, difficulty: f64) -> Self {
        Judgement {
            verdict: Err(rejection),
            status: None,
            difficulty,
            job: None,
            checked: None,
            coinbase2: None,
        }
    }

    /// The job a share names is no longer remembered.
    pub(crate) fn job_gone(difficulty: f64) -> Self {
        Self::refused(Rejection::JobExpired, difficulty)
    }

    /// The label of `sserver_shares_total{status}`.
    pub(crate) fn label(&self) -> &'static str {
        match (self.status, &self.verdict) {
            (Some(s), _) => status_label(s),
            (None, Err(Rejection::Duplicate)) => "duplicate",
            (None, Err(Rejection::JobExpired)) => "job_not_found",
            (None, _) => "invalid",
        }
    }
}

/// The difficulty a share is judged at, and the one before a retarget with
/// when it changed (good for [`RETARGET_GRACE`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Credit {
    pub difficulty: f64,
    pub previous: Option<(f64, Instant)>,
}

impl Credit {
    /// The rule of the retarget grace, for every protocol: the difficulty
    /// before the change, while [`RETARGET_GRACE`] has not passed since it
    /// at `now`.
    pub(crate) fn in_grace(&self, now: Instant) -> Option<f64> {
        self.previous
            .filter(|(_, at)| now.saturating_duration_since(*at) < RETARGET_GRACE)
            .map(|(d, _)| d)
    }
}

/// Judges `work` against `sent` (the job the share names, as this channel
/// was sent it) on `board`, at `credit`'s difficulties (the job's own,
/// [`SentJob::credit`], or a farm agent's miner's: they share one session's
/// jobs, each at its own difficulty), at `now` (for the retarget grace) and
/// `unix_now` (seconds, for ntime). Marks the share seen.
pub(crate) fn judge(
    board: &Board,
    sent: &mut SentJob,
    credit: Credit,
    work: &ShareWork<'_>,
    version_mask: u32,
    now: Instant,
    unix_now: u32,
) -> Judgement {
    let expected = sent.job.work.extranonce2_len;
    if work.extranonce2.len() != expected {
        return Judgement::refused(
            Rejection::Extranonce2Size {
                got: work.extranonce2.len(),
                expected,
            },
            credit.difficulty,
        );
    }
    let Some(job) = board.get(sent.job.job.id).cloned() else {
        return Judgement::refused(Rejection::JobExpired, credit.difficulty);
    };
    let mut en2 = [0u8; 8];
    en2[..expected.min(8)].copy_from_slice(&work.extranonce2[..expected.min(8)]);
    let key = (
        u64::from_be_bytes(en2),
        work.ntime,
        work.nonce,
        work.version_bits.unwrap_or(0),
    );
    if !sent.seen.insert(share_key(key)) {
        return Judgement::refused(Rejection::Duplicate, credit.difficulty);
    }
    let mut difficulty = credit.difficulty;
    let previous = credit.in_grace(now);
    let sub = Submission {
        extranonce1: work.extranonce1,
        extranonce2: work.extranonce2,
        ntime: work.ntime,
        nonce: work.nonce,
        version_bits: work.version_bits,
    };
    let mut checked =
        job.work
            .check_with(sent.coinbase2(), &sub, version_mask, &target_of(difficulty));
    // Found before the miner read the retarget: good at the old difficulty.
    if let (Ok(c), Some(old)) = (&mut checked, previous)
        && c.outcome == ShareOutcome::LowDifficulty
        && target_of(old).is_met_by(c.hash)
    {
        c.outcome = ShareOutcome::Share;
        difficulty = old;
    }
    let ntime = check_ntime(work.ntime, job.work.min_time, unix_now);
    let (status, verdict) = match (&checked, ntime) {
        (Err(SubmissionError::VersionBitsOutsideMask { bits, mask }), _) => (
            ShareStatus::BadVersionBits,
            Err(Rejection::VersionBits {
                bits: *bits,
                mask: *mask,
            }),
        ),
        (Err(e), _) => (ShareStatus::Invalid, Err(Rejection::Invalid(e.to_string()))),
        (Ok(_), Err(SubmissionError::NtimeTooOld { .. })) => {
            (ShareStatus::TimeTooOld, Err(Rejection::TimeTooOld))
        }
        (Ok(_), Err(_)) => (ShareStatus::TimeTooNew, Err(Rejection::TimeTooNew)),
        (Ok(_), Ok(())) if board.is_stale(&job) => (ShareStatus::Stale, Err(Rejection::Stale)),
        (Ok(c), Ok(())) => match c.outcome {
            ShareOutcome::Block => (ShareStatus::Block, Ok(())),
            ShareOutcome::Share => (ShareStatus::Accepted, Ok(())),
            ShareOutcome::LowDifficulty => {
                (ShareStatus::LowDifficulty, Err(Rejection::LowDifficulty))
            }
        },
    };
    Judgement {
        verdict,
        status: Some(status),
        difficulty,
        job: Some(job),
        checked: checked.ok(),
        coinbase2: sent.coinbase2.clone(),
    }
}

/// The label of a share status in `sserver_shares_total{status}`.
pub(crate) fn status_label(s: ShareStatus) -> &'static str {
    match s {
        ShareStatus::Accepted => "accepted",
        ShareStatus::Block => "block",
        ShareStatus::Stale => "stale",
        ShareStatus::LowDifficulty => "low_difficulty",
        ShareStatus::TimeTooOld => "time_too_old",
        ShareStatus::TimeTooNew => "time_too_new",
        ShareStatus::BadVersionBits => "bad_version_bits",
        ShareStatus::Invalid => "invalid",
    }
}

/// The keyed hash [`SentJob::seen`] holds.
fn share_key(share: (u64, u32, u32, u32)) -> u64 {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new).hash_one(share)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::block::Version;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, BlockHash, CompactTarget};
    use sluice_core::{Job, JobId, TemplateId};

    const EN1: [u8; 4] = [1, 0, 0, 7];
    const EN2: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 9];
    const NOW: u32 = 1_800_000_000;
    const MASK: u32 = 0x1fff_e000;
    /// One hash in 256 meets it.
    const EASY: f64 = 1.0 / 16_777_216.0;
    /// Difficulty 1's network (no share here is a block) and regtest's (half are).
    pub(crate) const HARD_BITS: u32 = 0x1d00_ffff;
    const REGTEST_BITS: u32 = 0x207f_ffff;

    pub(crate) fn job(seq: u64, tip: u8, bits: u32) -> Arc<ServerJob> {
        Arc::new(ServerJob::new(
            Job {
                id: JobId(u64::from(NOW) << 32 | seq),
                leader_epoch: 1,
                template_id: TemplateId([0; 32]),
                height: 100 + u32::from(tip),
                prev_blockhash: BlockHash::from_byte_array([tip; 32]),
                version: Version::from_consensus(0x2000_0000),
                bits: CompactTarget::from_consensus(bits),
                time: NOW,
                min_time: NOW - 600,
                coinbase1: vec![1, 2, 3],
                coinbase2: vec![4, 5],
                merkle_branch: vec![],
                coinbase_value: Amount::ZERO,
                clean: true,
                created_at_ms: 0,
                solo: None,
            },
            8,
        ))
    }

    /// At the job's own difficulties.
    fn judge(
        board: &Board,
        sent: &mut SentJob,
        work: &ShareWork<'_>,
        mask: u32,
        now: Instant,
        unix_now: u32,
    ) -> Judgement {
        let credit = sent.credit();
        super::judge(board, sent, credit, work, mask, now, unix_now)
    }

    fn board(jobs: &[&Arc<ServerJob>]) -> Board {
        jobs.iter()
            .fold(Board::default(), |b, j| b.with(Arc::clone(j), 3600, NOW))
    }

    fn work(nonce: u32) -> ShareWork<'static> {
        ShareWork {
            extranonce1: &EN1,
            extranonce2: &EN2,
            ntime: NOW,
            nonce,
            version_bits: None,
        }
    }

    /// The first nonce from `from` whose hash `wanted` likes.
    fn nonce_where(job: &ServerJob, from: u32, wanted: impl Fn(BlockHash) -> bool) -> u32 {
        (from..)
            .find(|n| {
                let sub = Submission {
                    extranonce1: &EN1,
                    extranonce2: &EN2,
                    ntime: NOW,
                    nonce: *n,
                    version_bits: None,
                };
                wanted(job.work.header(&sub, MASK).unwrap().block_hash())
            })
            .unwrap()
    }

    fn meets(difficulty: f64) -> impl Fn(BlockHash) -> bool {
        move |h| target_of(difficulty).is_met_by(h)
    }

    #[test]
    fn a_share_meeting_its_difficulty_is_accepted_once() {
        let j = job(1, 1, HARD_BITS);
        let b = board(&[&j]);
        let mut sent = SentJob::new(Arc::clone(&j), EASY);
        let n = nonce_where(&j, 0, meets(EASY));
        let t = Instant::now();
        let first = judge(&b, &mut sent, &work(n), MASK, t, NOW);
        assert_eq!(first.verdict, Ok(()));
        assert_eq!(first.status, Some(ShareStatus::Accepted));
        assert_eq!(first.difficulty, EASY);
        assert_eq!(first.label(), "accepted");
        let checked = first.checked.unwrap();
        assert_eq!(checked.header.nonce, n);
        assert_eq!(checked.header.time, NOW);
        let again = judge(&b, &mut sent, &work(n), MASK, t, NOW);
        assert_eq!(again.verdict, Err(Rejection::Duplicate));
        assert_eq!((again.status, again.label()), (None, "duplicate"));
        // The same nonce with other version bits is other work.
        let rolled = ShareWork {
            version_bits: Some(0x0000_2000),
            ..work(n)
        };
        let other = judge(&b, &mut sent, &rolled, MASK, t, NOW);
        assert_ne!(other.verdict, Err(Rejection::Duplicate));
    }

    #[test]
    fn a_hash_meeting_the_network_target_is_a_block() {
        let j = job(1, 1, REGTEST_BITS);
        let b = board(&[&j]);
        let mut sent = SentJob::new(Arc::clone(&j), EASY);
        let n = nonce_where(&j, 0, |h| {
            bitcoin::pow::Target::from_compact(CompactTarget::from_consensus(REGTEST_BITS))
                .is_met_by(h)
        });
        let v = judge(&b, &mut sent, &work(n), MASK, Instant::now(), NOW);
        assert_eq!((v.verdict, v.status), (Ok(()), Some(ShareStatus::Block)));
    }

    #[test]
    fn a_hash_above_the_target_is_low_difficulty_and_still_recorded() {
        let j = job(1, 1, HARD_BITS);
        let b = board(&[&j]);
        let mut sent = SentJob::new(Arc::clone(&j), EASY);
        let n = nonce_where(&j, 0, |h| !meets(EASY)(h));
        let v = judge(&b, &mut sent, &work(n), MASK, Instant::now(), NOW);
        assert_eq!(v.verdict, Err(Rejection::LowDifficulty));
        assert_eq!(v.status, Some(ShareStatus::LowDifficulty));
        assert!(v.checked.is_some(), "its hash is known, for the record");
    }

    #[test]
    fn after_a_retarget_the_old_difficulty_counts_for_the_grace_only() {
        let j = job(1, 1, HARD_BITS);
        let b = board(&[&j]);
        let harder = EASY * 256.0;
        let mut sent = SentJob::new(Arc::clone(&j), EASY);
        let t = Instant::now();
        sent.retarget(harder, t);
        let only_old = |h: BlockHash| meets(EASY)(h) && !meets(harder)(h);
        let n1 = nonce_where(&j, 0, only_old);
        let n2 = nonce_where(&j, n1 + 1, only_old);
        let within = judge(
            &b,
            &mut sent,
            &work(n1),
            MASK,
            t + Duration::from_secs(9),
            NOW,
        );
        assert_eq!(within.verdict, Ok(()));
        assert_eq!(within.difficulty, EASY, "credited at the old difficulty");
        let after = judge(&b, &mut sent, &work(n2), MASK, t + RETARGET_GRACE, NOW);
        assert_eq!(after.verdict, Err(Rejection::LowDifficulty));
        let n3 = nonce_where(&j, 0, meets(harder));
        let new = judge(&b, &mut sent, &work(n3), MASK, t + RETARGET_GRACE, NOW);
        assert_eq!((new.verdict, new.difficulty), (Ok(()), harder));
    }

    #[test]
    fn malformed_expired_and_stale_shares_are_refused_with_their_reason() {
        let old = job(1, 1, HARD_BITS);
        let t = Instant::now();
        // extranonce2 of the wrong size: never checked.
        let mut sent = SentJob::new(Arc::clone(&old), EASY);
        let short = ShareWork {
            extranonce2: &EN2[..4],
            ..work(0)
        };
        let v = judge(&board(&[&old]), &mut sent, &short, MASK, t, NOW);
        assert_eq!(
            v.verdict,
            Err(Rejection::Extranonce2Size {
                got: 4,
                expected: 8
            })
        );
        assert_eq!((v.status, v.label()), (None, "invalid"));
        // The job left the board.
        let newer = job(2, 2, HARD_BITS);
        let v = judge(&board(&[&newer]), &mut sent, &work(0), MASK, t, NOW);
        assert_eq!(v.label(), "job_not_found");
        assert_eq!(v.verdict, Err(Rejection::JobExpired));
        // On the board, but the tip moved on: stale, and recorded as such.
        let n = nonce_where(&old, 0, meets(EASY));
        let v = judge(&board(&[&old, &newer]), &mut sent, &work(n), MASK, t, NOW);
        assert_eq!(
            (v.verdict, v.status),
            (Err(Rejection::Stale), Some(ShareStatus::Stale))
        );
    }

    #[test]
    fn version_bits_and_ntime_are_held_to_their_bounds() {
        let j = job(1, 1, HARD_BITS);
        let b = board(&[&j]);
        let mut sent = SentJob::new(Arc::clone(&j), EASY);
        let t = Instant::now();
        let outside = ShareWork {
            version_bits: Some(0x0000_0001),
            ..work(1)
        };
        let v = judge(&b, &mut sent, &outside, MASK, t, NOW);
        assert_eq!(
            v.verdict,
            Err(Rejection::VersionBits {
                bits: 1,
                mask: MASK
            })
        );
        assert_eq!(v.status, Some(ShareStatus::BadVersionBits));
        let old = ShareWork {
            ntime: NOW - 601,
            ..work(2)
        };
        let v = judge(&b, &mut sent, &old, MASK, t, NOW);
        assert_eq!(
            (v.verdict, v.status),
            (Err(Rejection::TimeTooOld), Some(ShareStatus::TimeTooOld))
        );
        let ahead = sluice_core::share::MAX_FUTURE_NTIME_SECS;
        let new = ShareWork {
            ntime: NOW + ahead + 1,
            ..work(3)
        };
        let v = judge(&b, &mut sent, &new, MASK, t, NOW);
        assert_eq!(
            (v.verdict, v.status),
            (Err(Rejection::TimeTooNew), Some(ShareStatus::TimeTooNew))
        );
        // At the bound itself the time is fine.
        let edge = ShareWork {
            ntime: NOW + ahead,
            ..work(4)
        };
        let v = judge(&b, &mut sent, &edge, MASK, t, NOW);
        assert!(
            !matches!(v.verdict, Err(Rejection::TimeTooNew)),
            "{:?}",
            v.verdict
        );
    }
}
