//! What every miner connection shares, whatever its protocol: the
//! settings, the job board, users, the sinks, metrics, admission and the
//! drain; the miner behind a session or channel; and the wait for the
//! broker's acknowledgement before an answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::record::{Event, EventKind, MinerIdentity, SolvedShare};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::connection::agent;
use crate::ids::{SessionIds, SessionIndex};
use crate::jobs::{Board, ServerJob};
use crate::limits::{Admission, RejectWindow};
use crate::metrics::ServerMetrics;
use crate::sinks::{ShareSink, SolvedSink};
use crate::spool::Unacked;
use crate::users::Users;
use crate::vardiff::VardiffConfig;

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Bytes of extranonce2.
    pub extranonce2_size: usize,
    /// Version bits miners may roll (BIP310).
    pub version_mask: u32,
    /// Starting difficulty.
    pub default_difficulty: f64,
    /// Vardiff bounds and aim.
    pub vardiff: VardiffConfig,
    /// Longest request line.
    pub max_line_bytes: usize,
    /// A connection must authorize within this.
    pub preauth_timeout: Duration,
    /// An authorized connection silent this long is closed.
    pub idle_timeout: Duration,
    /// A miner that gets no new job for this long is sent the latest again.
    pub notify_interval: Duration,
    /// Rejected shares per minute before the IP is banned (0: never).
    pub max_rejects_per_minute: u32,
    /// Whether a PROXY protocol header is expected first.
    pub proxy_protocol: bool,
    /// On drain, connections close spread over this long.
    pub drain_spread: Duration,
    /// Malformed lines tolerated before the connection is closed.
    pub max_bad_lines: u32,
    /// How long answers wait for the broker to acknowledge their shares
    /// (zero: answer at once).
    pub accept_wait: Duration,
    /// A miner that takes none of its answers for this long is dropped.
    pub write_timeout: Duration,
    /// New connections a second per listener (0: no pace).
    pub accepts_per_sec: f64,
    /// New connections accepted at once before the pace applies.
    pub accept_burst: f64,
    /// How long a dropped farm agent's session may be resumed.
    pub agent_resume: Duration,
    /// Farm agents' miners over all sessions, at most.
    pub max_agent_workers: usize,
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: ConnConfig,
    /// extranonce1's first byte.
    pub server_id: u8,
    /// The jobs on offer.
    pub board: watch::Receiver<Arc<Board>>,
    /// Who may mine.
    pub users: Users,
    /// Checked shares.
    pub shares: ShareSink,
    /// Block candidates.
    pub(crate) solved: SolvedSink,
    /// Miner events (key, event).
    pub events: mpsc::Sender<(String, Event)>,
    /// Counters.
    pub metrics: ServerMetrics,
    /// extranonce1 allocation.
    pub ids: SessionIds,
    /// Rate limits and bans.
    pub admission: Arc<Admission>,
    /// Cancelled to drain: reconnect and close.
    pub drain: CancellationToken,
    /// Room for refused connections delivering their error line.
    pub lingering: Arc<Semaphore>,
    /// Farm agents' sessions waiting to be resumed, by extranonce1.
    pub(crate) parked: agent::Parking,
}

impl Shared {
    /// The extranonce1 of the session or channel holding `index`: this
    /// server's id, then the index.
    pub(crate) fn extranonce1(&self, index: &SessionIndex) -> [u8; 4] {
        let [_, a, b, c] = index.get().to_be_bytes();
        [self.server_id, a, b, c]
    }

    /// Counts a rejected share from `peer` in its connection's `rejects`;
    /// past the limit the connection is to close (true) and the address is
    /// banned, unless trusted (a farm's NAT: only the connection pays).
    pub(crate) fn rejected(&self, rejects: &mut RejectWindow, peer: IpAddr) -> bool {
        let now = Instant::now();
        if !rejects.reject(now) {
            return false;
        }
        let banned = self.admission.ban(peer, now);
        if banned {
            self.metrics.bans.inc();
        }
        tracing::warn!(%peer, banned, "too many rejected shares; connection closed");
        true
    }

    /// Publishes a miner event; a full queue drops it, counted.
    pub(crate) fn event(&self, kind: EventKind) {
        let key = format!("sserver-{}", self.server_id);
        let event = Event {
            timestamp_ms: sluice_service::now_ms(),
            kind,
        };
        if self.events.try_send((key, event)).is_err() {
            self.metrics.events_dropped.inc();
        }
    }

    /// The block candidate of `miner`'s share of `job` (whichever protocol
    /// carried it; the coinbase ending in `coinbase2`, the job's or a solo
    /// miner's), logged as found.
    pub(crate) fn solved_share(
        &self,
        job: &ServerJob,
        coinbase2: &[u8],
        miner: &Miner,
        extranonce1: &[u8],
        extranonce2: &[u8],
        checked: &sluice_core::CheckedShare,
    ) -> SolvedShare {
        let hash = checked.hash;
        let solo = miner.solo.as_ref().map(|p| p.address.as_str());
        tracing::info!(%hash, height = job.job.height, user = %miner.user, worker = %miner.worker, solo, "block found");
        SolvedShare {
            job_id: job.job.id,
            template_id: job.job.template_id,
            height: job.job.height,
            header: checked.header,
            coinbase: sluice_core::coinbase::join_coinbase(
                &job.work.coinbase1,
                extranonce1,
                extranonce2,
                coinbase2,
            ),
            block_hash: hash,
            user_id: miner.user_id,
            worker_id: miner.worker_id,
            worker_name: miner.worker.clone(),
            server_id: self.server_id,
            timestamp_ms: sluice_service::now_ms(),
            solo_address: solo.map(str::to_owned),
        }
    }
}

/// The miner behind an authorized connection (or SV2 channel).
#[derive(Debug, Clone)]
pub(crate) struct Miner {
    pub(crate) user_id: u32,
    pub(crate) user: String,
    pub(crate) worker: String,
    pub(crate) worker_id: i64,
    /// A solo miner's payee (its channel's jobs pay it).
    pub(crate) solo: Option<Arc<crate::solo::Payee>>,
}

impl Miner {
    /// `user.worker` as logged in, read by `parse_login`, authorized as
    /// `who` ([`Shared::login`]).
    pub(crate) fn from_login(
        who: crate::solo::LoggedIn,
        login: sluice_core::worker::Login,
    ) -> Self {
        // A solo miner's user is its address as the network writes it.
        let user = match &who.solo {
            Some(payee) => payee.address.clone(),
            None => login.user,
        };
        Miner {
            user_id: who.user_id,
            worker_id: sluice_core::worker::worker_id(&login.worker),
            user,
            worker: login.worker,
            solo: who.solo,
        }
    }

    /// The miner as events name it: on server `server_id`, under
    /// `extranonce1`, from `peer`, running `agent`.
    pub(crate) fn identity(
        &self,
        server_id: u8,
        extranonce1: [u8; 4],
        peer: IpAddr,
        agent: String,
    ) -> MinerIdentity {
        MinerIdentity {
            user_id: self.user_id,
            user_name: self.user.clone(),
            worker_id: self.worker_id,
            worker_name: self.worker.clone(),
            server_id,
            extranonce1: u32::from_be_bytes(extranonce1),
            client_ip: peer,
            miner_agent: agent,
        }
    }
}

/// Waits until the broker has acknowledged the shares `unacked` stands
/// for, at most `accept_wait`; past it the shares it has not are written to
/// the spool, and the answers go once they are on disk. Without a spool
/// they go anyway, counted; with a spool that refuses them (full, the disk
/// failing), they wait for the broker. V1 and V2 sessions both answer only
/// after it: an accepted share is on the broker or on disk.
pub(crate) async fn settle(unacked: &mut Vec<Unacked>, shared: &Shared) {
    if unacked.is_empty() {
        return;
    }
    let mut waiting = std::mem::take(unacked);
    let all = async {
        for u in &mut waiting {
            u.wait().await;
        }
    };
    let _ = tokio::time::timeout(shared.config.accept_wait, all).await;
    waiting.retain(|u| !u.on_broker);
    if waiting.is_empty() {
        return;
    }
    let n = waiting.len() as u64;
    let Some(spool) = shared.shares.spool() else {
        shared.metrics.answered_unacknowledged.inc_by(n);
        return;
    };
    if let Err((error, mut back)) = spool.write(waiting).await {
        let refused = shared.metrics.spool_refused.get();
        shared.metrics.spool_refused.inc_by(n);
        if refused.is_multiple_of(1000) {
            tracing::warn!(%error, "shares not spooled: their answers wait for the broker");
        }
        for u in &mut back {
            u.wait().await;
        }
    }
}
