//! Farm agents on a V1 session: the BTCAgent protocol
//! ([`sluice_stratum::agent`]; btcpool's `docs/AGENT.md`).
//!
//! A session whose `mining.subscribe` names an agent (`btccom-agent/…`,
//! `sluice-agent/…`) carries the agent's miners after it authorizes: each
//! registered miner is a worker of the session's user, with its own vardiff
//! (set with `MINING_SET_DIFF`, a power of two), its own shares (checked at
//! its own difficulty, recorded with its worker name and the farm's
//! address) and its own connect and disconnect events. Jobs go to the agent
//! once, with short decimal job ids (0–255) as BTCAgent expects; the agent
//! hands them to every miner.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::json;
use sluice_core::record::{EventKind, MinerIdentity, MiningProtocol, ShareStatus};
use sluice_core::worker::parse_login;
use sluice_stratum::agent::{
    self, ExMessage, ExSubmit, capability, difficulty_of, exponent_for, status,
};
use sluice_stratum::{Id, Notification, Response, ServerMessage};

use super::{Conn, End, Miner};
use crate::channel::{Behind, Recorded, SentJobs, Via};
use crate::ids::SessionIndex;
use crate::judge::{Credit, Rejection, ShareWork};
use crate::vardiff::Vardiff;

/// Miners one agent session may register (its 16-bit id space).
const MAX_WORKERS: usize = agent::MAX_SESSION_ID as usize + 1;

/// What the session knows of its agent.
#[derive(Debug, Default)]
pub(super) struct AgentSession {
    /// Answer each share with `SUBMIT_RESPONSE`.
    subres: bool,
    /// `MINING_SET_DIFF` exponents are signed (Sluice's extension).
    signed: bool,
    /// The difficulty the agent was told first; it gives it to each miner
    /// that joins, so a new worker starts there.
    initial: Option<f64>,
    workers: HashMap<u16, Worker>,
    /// The index of the next `SUBMIT_RESPONSE`.
    submits: u16,
    /// A dropped session of this agent's, taken over at subscribe: its jobs
    /// come back at authorize if the account is the same.
    resumed: Option<Box<Parked>>,
}

/// A dropped agent session kept for its agent to resume.
#[derive(Debug)]
pub(crate) struct Parked {
    /// Keeps the extranonce1 from being handed out meanwhile.
    index: Option<SessionIndex>,
    user_id: u32,
    sent: SentJobs,
    until: Instant,
}

/// Dropped agent sessions by extranonce1, each until its resume time ends.
#[derive(Debug, Default)]
pub(crate) struct Parking(Mutex<HashMap<[u8; 4], Parked>>);

impl AgentSession {
    /// Authorized: the session is the farm's.
    pub(super) fn is_started(&self) -> bool {
        self.initial.is_some()
    }
}

impl Parking {
    fn park(&self, extranonce1: [u8; 4], parked: Parked) {
        let now = Instant::now();
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.retain(|_, p| p.until > now);
        m.insert(extranonce1, parked);
    }

    fn take(&self, extranonce1: [u8; 4]) -> Option<Parked> {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.remove(&extranonce1).filter(|p| p.until > Instant::now())
    }
}

/// One of the agent's miners.
#[derive(Debug)]
struct Worker {
    miner: Miner,
    client_agent: String,
    vardiff: Vardiff,
    /// The difficulty the agent was told for this miner, and the serial of
    /// the first job it holds for.
    difficulty: f64,
    since: u64,
    /// The difficulty before, and when it changed.
    before: Option<(f64, Instant)>,
    /// The serial of the job the miner held when its difficulty changed
    /// with no new job: Stratum leaves open whether a miner applies
    /// `mining.set_difficulty` at once or from its next job, and the real
    /// BTCAgent passes a `MINING_SET_DIFF` on as `mining.set_difficulty`
    /// alone, so shares on that job are good at either difficulty for as
    /// long as the miner holds it, not only for the grace.
    held: Option<u64>,
}

impl Worker {
    /// What a share for the job sent as `serial` is judged at: the judge
    /// applies the grace ([`Credit::in_grace`]). On the job held through a
    /// change the old difficulty is dated `now`: in grace at every share.
    fn credit(&self, serial: u64, now: Instant) -> Credit {
        if self.held == Some(serial) {
            return Credit {
                difficulty: self.difficulty,
                previous: self.before.map(|(d, _)| (d, now)),
            };
        }
        if serial >= self.since {
            Credit {
                difficulty: self.difficulty,
                previous: self.before,
            }
        } else {
            Credit {
                difficulty: self.before.map_or(self.difficulty, |(d, _)| d),
                previous: None,
            }
        }
    }
}

/// A rejection as a btcpool status.
fn status_of(r: &Rejection) -> u32 {
    match r {
        Rejection::JobExpired | Rejection::Stale => status::JOB_NOT_FOUND_OR_STALE,
        Rejection::Duplicate => status::DUPLICATE_SHARE,
        Rejection::LowDifficulty => status::LOW_DIFFICULTY,
        Rejection::TimeTooOld => status::TIME_TOO_OLD,
        Rejection::TimeTooNew => status::TIME_TOO_NEW,
        Rejection::VersionBits { .. } => status::ILLEGAL_VERSION_MASK,
        Rejection::Extranonce2Size { .. } | Rejection::Invalid(_) => status::ILLEGAL_PARAMS,
    }
}

impl Conn {
    /// Whether this session may carry ex-messages: its subscribe named an
    /// agent and the pool's extranonce2 has room for the miners' ids.
    pub(super) fn agent_capable(&self) -> bool {
        self.shared.config.extranonce2_size == agent::EXTRANONCE2_SIZE
            && self.session.user_agent().is_some_and(agent::is_agent)
    }

    /// An authorized agent session.
    pub(super) fn is_agent(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.is_started())
    }

    /// `agent.get_capabilities`: the ones asked for that the pool has.
    /// Asked before subscribing too (BTCAgent probes a pool with it): they
    /// take effect if the session turns out to be an agent's.
    pub(super) async fn agent_capabilities(&mut self, id: Id, asked: Vec<String>) {
        let capable = self.shared.config.extranonce2_size == agent::EXTRANONCE2_SIZE;
        let a = self.agent.get_or_insert_with(Box::default);
        let mut have = Vec::new();
        for c in &asked {
            match c.as_str() {
                capability::VERSION_ROLLING => have.push(c.clone()),
                capability::SUBMIT_RESPONSE if capable => {
                    a.subres = true;
                    have.push(c.clone());
                }
                // Once the first difficulty went out its exponent's meaning stays.
                capability::SIGNED_DIFF_EXPONENT
                    if capable && (a.signed || a.initial.is_none()) =>
                {
                    a.signed = true;
                    have.push(c.clone());
                }
                _ => {}
            }
        }
        let answer = Response {
            id,
            result: Ok(json!({ "capabilities": have })),
        };
        self.send(answer.into()).await;
    }

    /// After `mining.authorize` of an agent: the session becomes the farm's.
    pub(super) fn start_agent(&mut self, start: f64) {
        let c = &self.shared.config;
        let (min, max) = (c.vardiff.min, c.vardiff.max);
        let a = self.agent.get_or_insert_with(Box::default);
        let initial = difficulty_of(exponent_for(start, min, max, a.signed), a.signed);
        a.initial = Some(initial);
        // A resumed session of the same account gets its jobs back: the
        // shares its miners found while it was away name them. (The session
        // itself submits nothing: its channel's vardiff stays unused.)
        if let Some(r) = a.resumed.take()
            && let Some(ch) = self.channel.as_mut()
            && r.user_id == ch.miner.user_id
        {
            ch.sent.resume(r.sent);
        }
        self.shared.metrics.agent_sessions.inc();
        tracing::info!(
            agent = self.session.user_agent().unwrap_or_default(),
            initial,
            "farm agent authorized"
        );
    }

    /// The session ended: its miners leave with it. With `park`, the
    /// session's extranonce1 and jobs are kept for the agent to resume.
    pub(super) fn agent_closed(mut self, park: bool) {
        let Some(mut a) = self.agent.take() else {
            return;
        };
        if a.initial.is_some() {
            self.shared.metrics.agent_sessions.dec();
        }
        let resume = self.shared.config.agent_resume;
        // Parked before its miners' disconnect events go out: whoever sees
        // those can resume it.
        if let Some(ch) = self.channel.as_mut()
            && park
            && !resume.is_zero()
        {
            let extranonce1 = ch.extranonce1;
            let parked = Parked {
                index: self.index.take(),
                user_id: ch.miner.user_id,
                sent: std::mem::replace(&mut ch.sent, SentJobs::new(0)),
                until: Instant::now() + resume,
            };
            tracing::info!(session = %hex::encode(extranonce1), ?resume, "farm agent dropped; its session is kept for it to resume");
            self.shared.parked.park(extranonce1, parked);
        }
        for w in std::mem::take(&mut a.workers).into_values() {
            self.shared.metrics.agent_workers.dec();
            self.event(EventKind::MinerDisconnected(self.worker_identity(&w)));
        }
    }

    /// A subscribe naming an earlier session (`mining.subscribe [agent,
    /// session id]`): that session's extranonce1, if it is kept and free.
    pub(super) fn resume_agent(&mut self, old: &str) {
        let Some(extranonce1) = hex::decode(old)
            .ok()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            return;
        };
        if extranonce1[0] != self.shared.server_id {
            return;
        }
        let Some(mut parked) = self.shared.parked.take(extranonce1) else {
            return;
        };
        if !self.session.resume_extranonce1(extranonce1) {
            self.shared.parked.park(extranonce1, parked);
            return;
        }
        // This connection's own id goes back; the old one is its.
        self.index = parked.index.take();
        tracing::info!(session = %old, "farm agent resumes its session");
        self.agent.get_or_insert_with(Box::default).resumed = Some(Box::new(parked));
    }

    fn worker_identity(&self, w: &Worker) -> MinerIdentity {
        w.miner.identity(
            self.shared.server_id,
            self.session.extranonce1(),
            self.peer.ip(),
            w.client_agent.clone(),
        )
    }

    /// One ex-message from the agent.
    pub(super) async fn on_ex_message(&mut self, frame: &[u8]) -> Result<(), End> {
        if !self.is_agent() {
            return self
                .bad_line(
                    Id::null(),
                    "ex-message outside an authorized agent session".into(),
                )
                .await;
        }
        let message = match ExMessage::decode(frame) {
            Ok(m) => m,
            Err(e) => return self.bad_line(Id::null(), e.to_string()).await,
        };
        match message {
            ExMessage::RegisterWorker {
                session_id,
                client_agent,
                worker_name,
            } => self.register_worker(session_id, client_agent, &worker_name),
            ExMessage::UnregisterWorker { session_id } => self.unregister_worker(session_id),
            ExMessage::SubmitShare(s) => self.agent_submit(s).await,
            ExMessage::MiningSetDiff { .. } | ExMessage::SubmitResponse { .. } => {
                return self
                    .bad_line(Id::null(), "ex-message only a pool sends".into())
                    .await;
            }
        }
        Ok(())
    }

    fn register_worker(&mut self, sid: u16, client_agent: String, name: &str) {
        let session_miner = self.channel.as_ref().map(|ch| &ch.miner);
        let (Some(session_miner), Some(a)) = (session_miner, self.agent.as_ref()) else {
            return;
        };
        if sid > agent::MAX_SESSION_ID
            || (a.workers.len() >= MAX_WORKERS && !a.workers.contains_key(&sid))
        {
            tracing::warn!(sid, "agent: worker session id out of range; ignored");
            return;
        }
        let registered = usize::try_from(self.shared.metrics.agent_workers.get()).unwrap_or(0);
        if registered >= self.shared.config.max_agent_workers && !a.workers.contains_key(&sid) {
            // Its shares are answered "unauthorized" (24): the agent hears why.
            tracing::warn!(
                sid,
                registered,
                "agent: limits.max_agent_workers reached; worker not registered"
            );
            return;
        }
        // The name as a miner's own login would give it.
        let Some(login) = parse_login(&format!("{}.{name}", session_miner.user)) else {
            return;
        };
        // Its shares are on the session's jobs: paid as the session's are.
        let who = crate::solo::LoggedIn {
            user_id: session_miner.user_id,
            solo: session_miner.solo.clone(),
        };
        let miner = Miner::from_login(who, login);
        let c = &self.shared.config;
        let initial = a.initial.unwrap_or(c.default_difficulty);
        let now = self.started.elapsed().as_secs_f64();
        let w = Worker {
            miner,
            client_agent: client_agent.chars().take(64).collect(),
            vardiff: Vardiff::new(c.vardiff, initial, now),
            difficulty: initial,
            since: 0,
            before: None,
            held: None,
        };
        let joined = self.worker_identity(&w);
        if let Some(a) = self.agent.as_mut()
            && let Some(old) = a.workers.insert(sid, w)
        {
            // Re-registered: the old miner under that id is gone.
            let left = self.worker_identity(&old);
            self.event(EventKind::MinerDisconnected(left));
        } else {
            self.shared.metrics.agent_workers.inc();
        }
        self.event(EventKind::MinerConnected(joined));
    }

    fn unregister_worker(&mut self, sid: u16) {
        let Some(w) = self.agent.as_mut().and_then(|a| a.workers.remove(&sid)) else {
            return;
        };
        self.shared.metrics.agent_workers.dec();
        self.event(EventKind::MinerDisconnected(self.worker_identity(&w)));
    }

    async fn agent_submit(&mut self, s: ExSubmit) {
        let (status, recorded) = self.check_agent_share(&s);
        if let Some(a) = self.agent.as_mut() {
            let index = a.submits;
            a.submits = a.submits.wrapping_add(1);
            if a.subres {
                self.out
                    .push_bytes(&ExMessage::SubmitResponse { index, status }.encode());
            }
        }
        // An agent carries a farm: its rejected shares close nothing (the
        // farm's miners would all go), they are only counted.
        self.record(recorded).await;
    }

    /// Has the session's channel judge one of the miners' shares at the
    /// miner's own difficulty: the answer (a btcpool status) and what to
    /// record.
    fn check_agent_share(&mut self, s: &ExSubmit) -> (u32, Recorded) {
        let shared = Arc::clone(&self.shared);
        let nothing = |status: u32| (status, Recorded::default());
        let worker = self
            .agent
            .as_mut()
            .and_then(|a| a.workers.get_mut(&s.session_id));
        let (Some(ch), Some(w)) = (self.channel.as_mut(), worker) else {
            shared.metrics.share("invalid");
            return nothing(status::UNAUTHORIZED);
        };
        let found = ch
            .sent
            .find(|j| j.serial % 256 == u64::from(s.job_id))
            .and_then(|pos| Some((pos, ch.sent.job(pos)?)));
        let Some((pos, sent)) = found else {
            shared.metrics.share("job_not_found");
            return nothing(status::JOB_NOT_FOUND_OR_STALE);
        };
        let credit = w.credit(sent.serial, Instant::now());
        // BTCAgent leaves the time out when it is the job's.
        let ntime = s.time.filter(|&t| t != 0).unwrap_or(sent.job.job.time);
        let extranonce1 = ch.extranonce1;
        let extranonce2 = s.full_extranonce2();
        let work = ShareWork {
            extranonce1: &extranonce1,
            extranonce2: &extranonce2,
            ntime,
            nonce: s.nonce,
            version_bits: s.version_mask.filter(|&v| v != 0),
        };
        let via = Via {
            peer: self.peer.ip(),
            protocol: MiningProtocol::StratumV1,
        };
        let behind = Behind {
            miner: &w.miner,
            vardiff: &mut w.vardiff,
            credit,
        };
        let mask = self.session.version_mask();
        let (judgement, recorded) = ch.submit(&shared, pos, &work, mask, via, Some(behind));
        let answer = match (&judgement.verdict, judgement.status) {
            (Ok(()), Some(ShareStatus::Block)) => status::SOLVED,
            (Ok(()), _) => status::ACCEPT,
            (Err(r), _) => status_of(r),
        };
        (answer, recorded)
    }

    /// Retargets the miners whose window ended (or who are much too fast):
    /// whether any difficulty changed.
    pub(super) fn agent_retarget(&mut self) -> bool {
        let now = self.started.elapsed().as_secs_f64();
        let Some(a) = self.agent.as_mut() else {
            return false;
        };
        let mut changed = false;
        for w in a.workers.values_mut() {
            changed |= w.vardiff.retarget(now).is_some();
        }
        changed
    }

    /// The agent's notify: first the session's difficulty (once), then each
    /// miner's new difficulty in `MINING_SET_DIFF`s (one per exponent), then
    /// the newest job under a short id. The job already sent goes again
    /// only with `force` (the periodic notify): a new difficulty alone is
    /// just its `MINING_SET_DIFF`, so a retarget costs the uplink bytes, not
    /// a job. Sluice's agent gives that miner its job again; the real
    /// BTCAgent does not, and its miner's shares on the job it holds are
    /// judged at either difficulty ([`Worker::credit`]).
    pub(super) async fn agent_notify(&mut self, force: bool) {
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let c = &self.shared.config;
        let (min, max) = (c.vardiff.min, c.vardiff.max);
        let (Some(ch), Some(a)) = (self.channel.as_mut(), self.agent.as_mut()) else {
            return;
        };
        let Some(initial) = a.initial else {
            return;
        };
        let signed = a.signed;
        let already = ch.sent.is_latest(&job);
        let serial = ch.sent.serial_for(&job);
        let now = Instant::now();
        let mut by_exponent: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
        for (sid, w) in &mut a.workers {
            let e = exponent_for(w.vardiff.current(), min, max, signed);
            let d = difficulty_of(e, signed);
            if d != w.difficulty {
                w.before = Some((w.difficulty, now));
                w.difficulty = d;
                w.since = serial;
                // No new job with it (unless forced below): the miner keeps
                // the one it has.
                w.held = (already && !force).then_some(serial);
                by_exponent.entry(e).or_default().push(*sid);
            }
        }
        let mut frames = Vec::new();
        for (e, ids) in &by_exponent {
            for m in agent::set_diff(*e, ids) {
                frames.extend_from_slice(&m.encode());
            }
        }
        // The session's jobs all go at the difficulty told first; each
        // miner's own is in its MINING_SET_DIFF.
        let Some(offer) = ch.sent.offer(&job, initial, force, now) else {
            // The same job: only the new difficulties (nothing if none).
            self.out.push_bytes(&frames);
            return;
        };
        let coinbase2 = ch.sent.latest().and_then(|s| s.coinbase2.clone());
        if let Some(difficulty) = offer.difficulty {
            self.send(Notification::SetDifficulty(difficulty).into())
                .await;
        }
        self.out.push_bytes(&frames);
        let mut notify = job.notify.clone();
        if let Some(coinbase2) = coinbase2 {
            notify.coinbase2 = coinbase2.to_vec();
        }
        notify.job_id = (serial % 256).to_string();
        notify.clean = offer.clean;
        self.send(ServerMessage::from(Notification::Notify(notify)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::RETARGET_GRACE;

    fn worker(difficulty: f64, since: u64, before: Option<(f64, Instant)>) -> Worker {
        let config = crate::vardiff::VardiffConfig {
            share_interval_secs: 10.0,
            retarget_secs: 60.0,
            min: 1.0,
            max: 1e12,
        };
        Worker {
            miner: Miner {
                user_id: 1,
                user: "u".into(),
                worker: "w".into(),
                worker_id: 1,
                solo: None,
            },
            client_agent: String::new(),
            vardiff: Vardiff::new(config, difficulty, 0.0),
            difficulty,
            since,
            before,
            held: None,
        }
    }

    #[test]
    fn a_new_difficulty_without_a_job_leaves_the_held_job_good_at_either() {
        let changed = Instant::now();
        let later = changed + RETARGET_GRACE * 6;
        // Difficulty 8 → 16 while the miner held job 5, no job sent with it
        // (the real BTCAgent forwards mining.set_difficulty only).
        let mut w = worker(16.0, 5, Some((8.0, changed)));
        w.held = Some(5);
        // A minute on, shares of job 5 still count at 8 as well as 16.
        let credit = w.credit(5, later);
        assert_eq!(credit.difficulty, 16.0);
        assert_eq!(credit.in_grace(later), Some(8.0));
        // The next job was sent after the change: 16, the grace long past.
        let next = w.credit(6, later);
        assert_eq!((next.difficulty, next.in_grace(later)), (16.0, None));
        // Older jobs: the old difficulty.
        assert_eq!(w.credit(4, later).difficulty, 8.0);
    }

    #[test]
    fn a_difficulty_sent_with_a_job_has_only_the_grace() {
        let changed = Instant::now();
        let w = worker(16.0, 5, Some((8.0, changed)));
        assert_eq!(w.credit(5, changed).in_grace(changed), Some(8.0));
        let after = changed + RETARGET_GRACE;
        assert_eq!(w.credit(5, after).in_grace(after), None);
    }
}
