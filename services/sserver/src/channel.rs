//! What happens to a judged share, whichever protocol carried it: a V1
//! connection, one of a farm agent's miners, or an SV2 channel. Each
//! translates its wire message into a [`ShareWork`] and has it judged; the
//! judgement comes here. The verdict is counted, accepted work feeds the
//! miner's vardiff, the share's record and block candidate are built
//! ([`Shared::account`]) and handed to the sinks, the candidate first
//! ([`Shared::publish`]). Only the answer on the wire is the protocol's.

use std::net::IpAddr;

use sluice_core::record::{MiningProtocol, ShareRecord, ShareStatus, SolvedShare};
use tokio::sync::oneshot;

use crate::judge::{Judgement, ShareWork};
use crate::shared::{Miner, Shared};
use crate::vardiff::Vardiff;

/// Who a share is from, as its record names them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) miner: &'a Miner,
    pub(crate) peer: IpAddr,
    pub(crate) protocol: MiningProtocol,
}

/// A judged share's record and block candidate, for [`Shared::publish`].
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) share: Option<ShareRecord>,
    pub(crate) solved: Option<SolvedShare>,
}

impl Shared {
    /// Counts `judgement` of `work`, credits accepted work to `vardiff`, and
    /// for a share that was checked and whose miner is known (`from`) builds
    /// its record, and its block candidate if it is one.
    pub(crate) fn account(
        &self,
        judgement: &Judgement,
        work: &ShareWork<'_>,
        vardiff: Option<&mut Vardiff>,
        from: Option<Source<'_>>,
    ) -> Recorded {
        self.metrics.share(judgement.label());
        let difficulty = judgement.difficulty;
        if judgement.verdict.is_ok() {
            self.metrics.accepted_difficulty.inc_by(difficulty);
            if let Some(v) = vardiff {
                v.on_accepted(difficulty);
            }
        }
        let (Some(status), Some(job), Some(checked), Some(from)) = (
            judgement.status,
            judgement.job.as_ref(),
            judgement.checked.as_ref(),
            from,
        ) else {
            return Recorded::default();
        };
        let solved = (status == ShareStatus::Block).then(|| {
            self.solved_share(job, from.miner, work.extranonce1, work.extranonce2, checked)
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
    pub(crate) async fn publish(
        &self,
        recorded: Recorded,
        unacked: &mut Vec<oneshot::Receiver<()>>,
    ) {
        if let Some(solved) = recorded.solved {
            let hash = solved.block_hash;
            if self.solved.send(solved).await.is_err() {
                tracing::error!(%hash, "solved-share queue closed; candidate not published");
            }
        }
        if let Some(share) = recorded.share {
            let acked = self.shares.send(&share).await;
            if !self.config.accept_wait.is_zero() {
                unacked.push(acked);
            }
        }
    }
}
