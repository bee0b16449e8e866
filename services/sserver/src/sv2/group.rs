//! Group channels (mining protocol §5.2.3): a connection's standard
//! channels are all in one group, named in each channel's opening, so a new
//! job reaches all of them as one `NewExtendedMiningJob` (and one
//! `SetNewPrevHash`) sent to the group: the device, or the proxy in front
//! of it, makes each channel's merkle root with that channel's extranonce
//! prefix. A device that set `REQUIRES_STANDARD_JOBS` gets a `NewMiningJob`
//! per channel instead, as before.
//!
//! A job has one id in the whole group, whichever way it is sent: a channel
//! opened later is given the group's newest job on its own channel, under
//! the group's id for it, and every later job with the rest.

use std::sync::Arc;

use bitcoin::hashes::Hash;
use sluice_sv2::Message;
use sluice_sv2::codec::ExtendedJob;
use tokio::io::AsyncWrite;

use super::channels::Kind;
use super::session::Session;
use crate::channel::Offer;
use crate::jobs::ServerJob;
use crate::judge::target_of;

/// The connection's group of standard channels.
#[derive(Debug)]
pub(super) struct Group {
    /// Its channel id (never a member's).
    pub(super) id: u32,
    /// The newest job given an id, and that id.
    last: Option<(Arc<ServerJob>, u32)>,
    /// The id the next new job gets.
    next: u32,
}

impl Group {
    pub(super) fn new(id: u32) -> Self {
        Group {
            id,
            last: None,
            next: 1,
        }
    }

    /// The group's id for `job`: the newest job's, or the next one.
    fn id_for(&mut self, job: &Arc<ServerJob>) -> u32 {
        match &self.last {
            Some((last, id)) if Arc::ptr_eq(last, job) => *id,
            _ => {
                let id = self.next;
                self.next = self.next.wrapping_add(1).max(1);
                self.last = Some((Arc::clone(job), id));
                id
            }
        }
    }
}

/// The extended job of `job` as the group's members (or one extended
/// channel) share it: the coinbase around the extranonce, which is each
/// member's whole extranonce prefix, ending in `coinbase2` (the job's, or
/// a solo miner's).
pub(super) fn extended_job(
    channel_id: u32,
    job_id: u32,
    job: &ServerJob,
    coinbase2: &[u8],
    clean: bool,
    rolling: bool,
) -> ExtendedJob {
    ExtendedJob {
        channel_id,
        job_id,
        min_ntime: (!clean).then_some(job.job.time),
        version: job.job.version.to_consensus() as u32,
        version_rolling_allowed: rolling,
        merkle_path: job
            .job
            .merkle_branch
            .iter()
            .map(|n| n.to_byte_array())
            .collect(),
        coinbase_tx_prefix: job.work.coinbase1.clone(),
        coinbase_tx_suffix: coinbase2.to_vec(),
    }
}

pub(super) fn set_new_prev_hash(channel_id: u32, job_id: u32, job: &ServerJob) -> Message {
    Message::SetNewPrevHash {
        channel_id,
        job_id,
        prev_hash: job.job.prev_blockhash.to_byte_array(),
        min_ntime: job.job.time,
        nbits: job.job.bits.to_consensus(),
    }
}

impl<W: AsyncWrite + Unpin> Session<W> {
    /// Whether channel `id` is a member of the group (a standard channel of
    /// a device that takes group jobs).
    pub(super) fn in_group(&self, id: u32) -> bool {
        self.group.is_some()
            && self
                .channels
                .get(&id)
                .is_some_and(|ch| ch.kind == Kind::Standard)
    }

    /// Offers `job` to member `id` under the group's id for it.
    pub(super) fn offer_in_group(
        &mut self,
        id: u32,
        job: &Arc<ServerJob>,
        force: bool,
    ) -> Option<Offer> {
        let group = self.group.as_mut()?;
        let job_id = group.id_for(job);
        let ch = self.channels.get_mut(&id)?;
        ch.channel.sent.number_next(u64::from(job_id));
        ch.channel.offer(job, force)
    }

    /// Sends the board's newest job to every member: once, to the group,
    /// when it is new to all of them; each member's new target on its own
    /// channel.
    pub(super) fn notify_group(&mut self) {
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let Some(group_id) = self.group.as_ref().map(|g| g.id) else {
            return;
        };
        let mut members: Vec<u32> = self
            .channels
            .values()
            .filter(|ch| ch.kind == Kind::Standard)
            .map(|ch| ch.id)
            .collect();
        members.sort_unstable();
        let mut offers = Vec::with_capacity(members.len());
        for &id in &members {
            if let Some(offer) = self.offer_in_group(id, &job, false) {
                offers.push((id, offer));
            }
        }
        let mut out = Vec::new();
        for (id, offer) in &offers {
            if let Some(difficulty) = offer.difficulty {
                out.push(Message::SetTarget {
                    channel_id: *id,
                    maximum_target: sluice_sv2::target_bytes(target_of(difficulty)),
                });
            }
        }
        let fresh: Vec<&(u32, Offer)> = offers.iter().filter(|(_, o)| o.fresh.is_some()).collect();
        // One coinbase for all: members paid alike (all pooled, or solo to
        // one address); else each gets its own merkle root.
        let coinbases: Vec<&[u8]> = fresh
            .iter()
            .filter_map(|(id, _)| self.channels.get(id).map(|ch| ch.coinbase2_of(&job)))
            .collect();
        let together = fresh.len() == members.len()
            && coinbases.len() == fresh.len()
            && coinbases.windows(2).all(|w| w[0] == w[1])
            && fresh.windows(2).all(|w| w[0].1.clean == w[1].1.clean);
        if together && let (Some((_, first)), Some(coinbase2)) = (fresh.first(), coinbases.first())
        {
            let job_id = first.fresh.unwrap_or_default() as u32;
            let rolling = self.shared.config.version_mask != 0;
            out.push(Message::NewExtendedMiningJob(extended_job(
                group_id,
                job_id,
                &job,
                coinbase2,
                first.clean,
                rolling,
            )));
            if first.clean {
                out.push(set_new_prev_hash(group_id, job_id, &job));
            }
        } else {
            // Some member had it already (opened just now): each one that
            // did not gets it on its own channel.
            for (id, offer) in fresh {
                if let Some(ch) = self.channels.get(id) {
                    out.extend(ch.standard_job(*id, offer, &job));
                }
            }
        }
        for m in &out {
            self.queue(m);
        }
    }
}
