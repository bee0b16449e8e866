//! An SV2 connection's channels: each is the miner's [`Channel`] with its SV2
//! id, kind (standard or extended) and the shares to acknowledge. Opened
//! and authorized like a V1 login, sent jobs and targets as the channel
//! offers them, shares judged by it and answered in SV2's words.

use std::sync::Arc;

use bitcoin::hashes::Hash;
use sluice_core::record::{EventKind, MinerIdentity, MiningProtocol};
use sluice_core::worker::parse_login;
use sluice_sv2::Message;
use sluice_sv2::codec::{OpenChannel, SubmitShares};
use tokio::io::AsyncWrite;

use super::group::{extended_job, set_new_prev_hash};
use super::session::Session;
use super::{MAX_CHANNELS, code};
use crate::channel::{Channel, Offer, Via};
use crate::ids::SessionIndex;
use crate::jobs::ServerJob;
use crate::judge::{Rejection, ShareWork, target_of};
use crate::shared::Miner;
use crate::users::AuthError;
use crate::vardiff::Vardiff;

/// Standard or extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Standard,
    Extended,
}

/// A standard channel's extranonce2, `len` bytes: random, so a restarted
/// server giving the same extranonce1 out again never hands a device the
/// work it already did on a job both processes hold (a device starts its
/// nonces from zero on every new channel).
fn standard_extranonce2(len: usize) -> Vec<u8> {
    let mut en2 = vec![0u8; len];
    rand::fill(&mut en2[..]);
    en2
}

/// One open channel: the miner's [`Channel`] (what a V1 session has), its
/// SV2 id and kind, and the shares to acknowledge.
pub(super) struct Sv2Channel {
    pub(super) id: u32,
    pub(super) kind: Kind,
    /// Holds the extranonce prefix's session id.
    pub(super) _index: SessionIndex,
    /// A standard channel's extranonce2 (the pool fixes it; empty for an
    /// extended channel, whose device rolls its own).
    extranonce2: Vec<u8>,
    /// Its jobs' serials are their SV2 job ids.
    pub(super) channel: Channel,
    /// Accepted since the last SubmitShares.Success.
    batch: Batch,
}

#[derive(Debug, Default, Clone, Copy)]
struct Batch {
    count: u32,
    sum: f64,
    last_sequence: u32,
}

impl Sv2Channel {
    /// The coinbase2 `job` was sent to this channel with: a solo miner's
    /// own, else the job's.
    pub(super) fn coinbase2_of<'a>(&'a self, job: &'a ServerJob) -> &'a [u8] {
        match self.channel.sent.latest() {
            Some(s) if std::ptr::eq(Arc::as_ptr(&s.job), job) => s.coinbase2(),
            _ => &job.work.coinbase2,
        }
    }

    /// What a standard channel `id` is sent of `job` on its own: its merkle
    /// root (and the new tip) when the job is new to it.
    pub(super) fn standard_job(&self, id: u32, offer: &Offer, job: &ServerJob) -> Vec<Message> {
        let Some(serial) = offer.fresh else {
            return vec![];
        };
        let job_id = serial as u32;
        let txid = job.work.coinbase_txid_with(
            self.coinbase2_of(job),
            &self.channel.extranonce1,
            &self.extranonce2,
        );
        let root = sluice_core::merkle::merkle_root(txid, &job.job.merkle_branch);
        let mut out = vec![Message::NewMiningJob {
            channel_id: id,
            job_id,
            min_ntime: (!offer.clean).then_some(job.job.time),
            version: job.job.version.to_consensus() as u32,
            merkle_root: root.to_byte_array(),
        }];
        if offer.clean {
            out.push(set_new_prev_hash(id, job_id, job));
        }
        out
    }
}

/// A rejection in SV2's words.
fn sv2_error(r: &Rejection) -> &'static str {
    match r {
        Rejection::Extranonce2Size { .. } => code::BAD_EXTRANONCE_SIZE,
        Rejection::JobExpired => code::INVALID_JOB_ID,
        Rejection::Duplicate => code::DUPLICATE_SHARE,
        Rejection::VersionBits { .. } => code::VERSION_ROLLING_NOT_ALLOWED,
        Rejection::Invalid(_) | Rejection::TimeTooOld | Rejection::TimeTooNew => {
            code::INVALID_SHARE
        }
        Rejection::Stale => code::STALE_SHARE,
        Rejection::LowDifficulty => code::DIFFICULTY_TOO_LOW,
    }
}

impl<W: AsyncWrite + Unpin> Session<W> {
    pub(super) async fn open_channel(
        &mut self,
        open: OpenChannel,
        kind: Kind,
        min_extranonce_size: u16,
    ) {
        let request_id = open.request_id;
        match self.try_open(open, kind, min_extranonce_size).await {
            Ok(id) => self.notify(id, true),
            Err(code) => {
                tracing::debug!(code, "sv2 channel refused");
                self.queue(&Message::OpenMiningChannelError {
                    request_id,
                    error_code: code.to_owned(),
                });
            }
        }
    }

    async fn try_open(
        &mut self,
        open: OpenChannel,
        kind: Kind,
        min_extranonce_size: u16,
    ) -> Result<u32, &'static str> {
        let shared = Arc::clone(&self.shared);
        let c = &shared.config;
        if self.channels.len() >= MAX_CHANNELS {
            return Err("too-many-channels");
        }
        if kind == Kind::Extended && usize::from(min_extranonce_size) > c.extranonce2_size {
            return Err(code::MIN_EXTRANONCE_TOO_LARGE);
        }
        let login = parse_login(&open.user_identity).ok_or(code::UNKNOWN_USER)?;
        let who = match shared.login(&login.user).await {
            Ok(who) => who,
            Err(AuthError::Unavailable) => return Err("user-database-unavailable"),
            Err(AuthError::NoJobYet) => return Err("no-job-yet"),
            Err(AuthError::BadAddress(why)) => {
                tracing::info!(user = %login.user, why, "sv2 solo address refused");
                return Err(code::INVALID_SOLO_ADDRESS);
            }
            Err(_) => return Err(code::UNKNOWN_USER),
        };
        // The easiest target the device takes is the channel's lowest
        // difficulty; out of range when even the pool's hardest is easier.
        let floor =
            floor_of(&open.max_target, c.vardiff.max).ok_or(code::MAX_TARGET_OUT_OF_RANGE)?;
        let index = shared.ids.allocate().ok_or("no-session-ids-left")?;
        let extranonce1 = shared.extranonce1(&index);
        // Start where the device's own hashrate puts one share per interval.
        let rate = f64::from(open.nominal_hash_rate);
        let start = if rate.is_finite() && rate > 0.0 {
            rate * c.vardiff.share_interval_secs / 4_294_967_296.0
        } else {
            c.default_difficulty
        };
        let now = self.started.elapsed().as_secs_f64();
        let mut vardiff = Vardiff::new(c.vardiff, start, now);
        vardiff.set_floor(floor, now);
        let id = self.take_channel_id();
        // A device that takes group jobs has its standard channels in the
        // connection's group (made with the first).
        let takes_group_jobs = self
            .setup
            .as_ref()
            .is_some_and(|s| s.flags & sluice_sv2::codec::REQUIRES_STANDARD_JOBS == 0);
        let group_channel_id = if kind == Kind::Standard && takes_group_jobs {
            match &self.group {
                Some(g) => g.id,
                None => {
                    let g = self.take_channel_id();
                    self.group = Some(super::group::Group::new(g));
                    g
                }
            }
        } else {
            0
        };
        let target = sluice_sv2::target_bytes(target_of(vardiff.current()));
        let en2 = c.extranonce2_size;
        let extranonce2 = match kind {
            Kind::Standard => standard_extranonce2(en2),
            Kind::Extended => Vec::new(),
        };
        self.queue(&match kind {
            Kind::Standard => Message::OpenStandardMiningChannelSuccess {
                request_id: open.request_id,
                channel_id: id,
                target,
                extranonce_prefix: [&extranonce1[..], &extranonce2[..]].concat(),
                group_channel_id,
            },
            Kind::Extended => Message::OpenExtendedMiningChannelSuccess {
                request_id: open.request_id,
                channel_id: id,
                target,
                extranonce_size: en2 as u16,
                extranonce_prefix: extranonce1.to_vec(),
                group_channel_id: 0,
            },
        });
        let miner = Miner::from_login(who, login);
        let mut channel = Channel::new(miner, extranonce1, vardiff, 1);
        // Sent with the opening: no SetTarget before the first job.
        channel.sent.told(channel.vardiff.current());
        let ch = Sv2Channel {
            id,
            kind,
            _index: index,
            extranonce2,
            channel,
            batch: Batch::default(),
        };
        tracing::debug!(channel = id, worker = %format_args!("{}.{}", ch.channel.miner.user, ch.channel.miner.worker), "sv2 channel opened");
        self.shared
            .event(EventKind::MinerConnected(self.identity(&ch)));
        shared.metrics.sv2_channels.inc();
        self.channels.insert(id, ch);
        Ok(id)
    }

    /// A channel id not in use on this connection.
    fn take_channel_id(&mut self) -> u32 {
        let id = self.next_channel_id;
        self.next_channel_id = self.next_channel_id.wrapping_add(1).max(1);
        id
    }

    pub(super) fn update_channel(
        &mut self,
        channel_id: u32,
        maximum_target: &sluice_sv2::codec::U256,
    ) {
        let floor = floor_of(maximum_target, self.shared.config.vardiff.max);
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            self.queue(&Message::UpdateChannelError {
                channel_id,
                error_code: code::INVALID_CHANNEL_ID.into(),
            });
            return;
        };
        let Some(floor) = floor else {
            self.queue(&Message::UpdateChannelError {
                channel_id,
                error_code: code::MAX_TARGET_OUT_OF_RANGE.into(),
            });
            return;
        };
        ch.channel
            .vardiff
            .set_floor(floor, self.started.elapsed().as_secs_f64());
        // A smaller maximum target than the current one gets a SetTarget.
        self.notify(channel_id, false);
    }

    /// Sends channel `id` the board's newest job (a future job and
    /// `SetNewPrevHash` when the tip moved) and its target when it changed.
    pub(super) fn notify(&mut self, id: u32, force: bool) {
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let offer = if self.in_group(id) {
            self.offer_in_group(id, &job, force)
        } else {
            let ch = self.channels.get_mut(&id);
            ch.and_then(|ch| ch.channel.offer(&job, force))
        };
        let (Some(offer), Some(ch)) = (offer, self.channels.get(&id)) else {
            return;
        };
        let mut out = Vec::new();
        if let Some(difficulty) = offer.difficulty {
            out.push(Message::SetTarget {
                channel_id: id,
                maximum_target: sluice_sv2::target_bytes(target_of(difficulty)),
            });
        }
        // The job sent last is not sent again: the device has it.
        match ch.kind {
            Kind::Standard => out.extend(ch.standard_job(id, &offer, &job)),
            Kind::Extended => {
                if let Some(serial) = offer.fresh {
                    let job_id = serial as u32;
                    // As the pool's mask allows (the share's bits are held to it).
                    let rolling = self.shared.config.version_mask != 0;
                    let coinbase2 = ch.coinbase2_of(&job);
                    let ext = extended_job(id, job_id, &job, coinbase2, offer.clean, rolling);
                    out.push(Message::NewExtendedMiningJob(ext));
                    if offer.clean {
                        out.push(set_new_prev_hash(id, job_id, &job));
                    }
                }
            }
        }
        for m in &out {
            self.queue(m);
        }
    }

    pub(super) async fn submit(&mut self, share: SubmitShares, extranonce: Option<Vec<u8>>) {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let seq = share.sequence_number;
        let channel_id = share.channel_id;
        let refuse = |code: &str| Message::SubmitSharesError {
            channel_id,
            sequence_number: seq,
            error_code: code.to_owned(),
        };
        let mask = shared.config.version_mask;
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            metrics.share("invalid");
            self.queue(&refuse(code::INVALID_CHANNEL_ID));
            self.count_reject();
            return;
        };
        let en2 = match (ch.kind, extranonce) {
            (Kind::Extended, Some(e)) => e,
            (Kind::Standard, None) => ch.extranonce2.clone(),
            // A standard share on an extended channel or the reverse.
            _ => {
                metrics.share("invalid");
                self.queue(&refuse(code::INVALID_SHARE));
                self.count_reject();
                return;
            }
        };
        let sent = &ch.channel.sent;
        let found = sent
            .find(|s| s.serial as u32 == share.job_id)
            .and_then(|pos| Some((pos, sent.job(pos)?)));
        let Some((pos, sent)) = found else {
            metrics.share("job_not_found");
            self.queue(&refuse(code::INVALID_JOB_ID));
            return;
        };
        let job_version = sent.job.job.version.to_consensus() as u32;
        if (share.version ^ job_version) & !mask != 0 {
            metrics.share("bad_version_bits");
            self.queue(&refuse(code::VERSION_ROLLING_NOT_ALLOWED));
            self.count_reject();
            return;
        }
        let extranonce1 = ch.channel.extranonce1;
        let work = ShareWork {
            extranonce1: &extranonce1,
            extranonce2: &en2,
            ntime: share.ntime,
            nonce: share.nonce,
            version_bits: Some(share.version & mask),
        };
        let via = Via {
            peer: self.peer.ip(),
            protocol: MiningProtocol::StratumV2,
        };
        let (judgement, recorded) = ch.channel.submit(&shared, pos, &work, mask, via, None);
        match &judgement.verdict {
            Ok(()) => {
                ch.batch.count += 1;
                ch.batch.sum += judgement.difficulty;
                ch.batch.last_sequence = seq;
            }
            Err(r) => {
                let code = sv2_error(r);
                let counts = !matches!(r, Rejection::Stale | Rejection::JobExpired);
                self.queue(&refuse(code));
                if counts {
                    self.count_reject();
                }
            }
        }
        shared.publish(recorded, &mut self.unacked).await;
    }

    /// Counts a rejection towards the ban; past the limit the connection closes.
    fn count_reject(&mut self) {
        if self.shared.rejected(&mut self.rejects, self.peer.ip()) {
            self.close = true;
        }
    }

    /// One SubmitShares.Success per channel for the shares accepted since the last.
    pub(super) fn successes(&mut self) {
        let mut out = Vec::new();
        for ch in self.channels.values_mut() {
            let b = std::mem::take(&mut ch.batch);
            if b.count > 0 {
                out.push(Message::SubmitSharesSuccess {
                    channel_id: ch.id,
                    last_sequence_number: b.last_sequence,
                    new_submits_accepted_count: b.count,
                    new_shares_sum: b.sum.ceil() as u64,
                });
            }
        }
        for m in &out {
            self.queue(m);
        }
    }

    fn identity(&self, ch: &Sv2Channel) -> MinerIdentity {
        let agent = self
            .setup
            .as_ref()
            .map(|s| format!("{} {} (sv2)", s.vendor, s.hardware_version))
            .unwrap_or_default();
        ch.channel
            .identity(self.shared.server_id, self.peer.ip(), agent)
    }

    pub(super) fn channel_closed(&self, ch: &Sv2Channel) {
        self.shared.metrics.sv2_channels.dec();
        self.shared
            .event(EventKind::MinerDisconnected(self.identity(ch)));
    }
}

/// The lowest difficulty a device whose easiest target is `max_target`
/// takes, or `None` when even `hardest` (the pool's highest difficulty) is
/// too easy for it. Targets are compared, not difficulties: regtest's
/// difficulties below 2^-32 all have the largest target.
fn floor_of(max_target: &sluice_sv2::codec::U256, hardest: f64) -> Option<f64> {
    let max_target = sluice_sv2::target_of(max_target);
    if target_of(hardest) > max_target {
        return None;
    }
    sluice_core::Difficulty::from_target(max_target).map(sluice_core::Difficulty::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_bytes(difficulty: f64) -> sluice_sv2::codec::U256 {
        sluice_sv2::target_bytes(target_of(difficulty))
    }

    #[test]
    fn a_device_s_maximum_target_is_the_channel_s_floor_or_out_of_range() {
        // Difficulty 1 at easiest: the pool's difficulties up to 1e6 fit.
        let floor = floor_of(&target_bytes(1.0), 1e6).unwrap();
        assert!((floor - 1.0).abs() < 1e-9, "{floor}");
        // A device that takes nothing easier than 1e9 on a pool topping at 1e6.
        assert_eq!(floor_of(&target_bytes(1e9), 1e6), None);
        // "Any target" on a regtest pool whose difficulties all have the
        // largest target (below 2^-32): served, not refused.
        assert!(floor_of(&[0xff; 32], 2e-10).is_some());
    }
}
