//! One upstream session: a task that keeps a connection to the pool (the
//! first of `upstream.pools` that answers), registers its miners, relays
//! jobs and difficulties down and shares up, and rides out a lost uplink.
//!
//! The task owns everything about its session; miners talk to it through
//! [`UpCmd`]s and hear back through their own [`Down`] channel. While the
//! uplink is down it keeps serving them: registrations are remembered,
//! shares are checked locally and queued, and when the session is back
//! (resumed: same extranonce1 and jobs) they go up in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::Target;
use sluice_core::target_of;
use sluice_service::{Backoff, Context};
use sluice_stratum::agent::{self, ExMessage, ExSubmit, capability, status};
use sluice_stratum::client::{ClientEvent, ClientSession, header};
use sluice_stratum::message::{Call, Configure, Subscribe};
use sluice_stratum::{Frame, Id, LineFramer, Notification, Notify, ServerMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AgentMetrics, Config};

/// The user agent the agent subscribes with (sserver knows it as an agent's).
pub const USER_AGENT: &str = concat!("sluice-agent/", env!("CARGO_PKG_VERSION"));

/// Jobs kept for local checks and late shares.
const JOBS_KEPT: usize = 16;

/// Written at once past this many bytes, whatever the batch window.
const FLUSH_BYTES: usize = 16 * 1024;

/// What a miner asks of its upstream session.
#[derive(Debug)]
pub enum UpCmd {
    /// An authorized miner joins.
    Register {
        sid: u16,
        client_agent: String,
        worker: String,
        version_rolling: bool,
        tx: mpsc::Sender<Down>,
    },
    /// The miner left.
    Unregister { sid: u16 },
    /// A share; answered with [`Down::Answer`].
    Submit { sid: u16, id: Id, share: ExSubmit },
}

/// What a miner is told.
#[derive(Debug, Clone)]
pub enum Down {
    /// A line as it is (notify, set_difficulty, set_version_mask).
    Line(Arc<str>),
    /// The verdict on the share with this request id (a btcpool status).
    Answer { id: Id, status: u32 },
    /// The uplink stayed down past the grace: reconnect (elsewhere).
    Reconnect,
}

/// A miner's way to its session.
#[derive(Debug, Clone)]
pub struct UpHandle {
    pub tx: mpsc::Sender<UpCmd>,
}

struct Slot {
    tx: mpsc::Sender<Down>,
    client_agent: String,
    worker: String,
    version_rolling: bool,
    /// The pool's difficulty for this miner (None: the session's).
    difficulty: Option<f64>,
    /// The difficulty before the last change, and when it changed.
    before: Option<(f64, Instant)>,
}

/// How long after a miner's difficulty changed a share meeting only the old
/// one still goes up: the miner found it before it read the new one, and
/// the pool credits it at the old one for as long (sserver's retarget grace).
const RETARGET_GRACE: Duration = Duration::from_secs(10);

/// The difficulty a share hashing to `hash` goes up at: `current`; the one
/// `before` a change within [`RETARGET_GRACE`] of `now` when only that one
/// is met; `None` when neither is (and it is no block).
fn credited(
    hash: bitcoin::BlockHash,
    current: f64,
    before: Option<(f64, Instant)>,
    network: Target,
    now: Instant,
) -> Option<f64> {
    let meets = |d: f64| target_of(d).is_met_by(hash);
    if meets(current) || network.is_met_by(hash) {
        return Some(current);
    }
    before
        .filter(|&(old, at)| now.saturating_duration_since(at) < RETARGET_GRACE && meets(old))
        .map(|(old, _)| old)
}

impl Slot {
    /// The difficulty a share is checked at: the miner's, else `session`'s.
    fn difficulty(&self, session: Option<f64>) -> f64 {
        self.difficulty.or(session).unwrap_or(1.0)
    }

    /// The difficulty changes to `new` (from `old`) now.
    fn retarget(&mut self, old: f64, new: f64) {
        if old != new {
            self.before = Some((old, Instant::now()));
        }
    }
}

struct Job {
    short_id: u8,
    /// As the miners get it: coinbase1 ends with the session's extranonce1.
    notify: Notify,
    network: Target,
}

/// A share sent up and not answered yet, or waiting for the uplink.
struct Waiting {
    sid: u16,
    id: Id,
    share: ExSubmit,
    difficulty: f64,
}

/// One upstream session's task.
pub struct Upstream {
    slot: usize,
    config: Arc<Config>,
    metrics: AgentMetrics,
    rx: mpsc::Receiver<UpCmd>,
    miners: HashMap<u16, Slot>,
    jobs: VecDeque<Job>,
    /// The session's extranonce1 (kept to resume it).
    extranonce1: Option<[u8; 4]>,
    /// The session's difficulty (what a miner without its own has).
    initial: Option<f64>,
    signed: bool,
    version_mask: u32,
    /// Sent up, not answered: by submit index.
    in_flight: HashMap<u16, Waiting>,
    next_index: u16,
    /// Waiting for the uplink.
    gap: VecDeque<Waiting>,
    down_since: Option<Instant>,
}

/// An established, authorized connection.
struct Link {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    framer: LineFramer,
    out: Vec<u8>,
}

impl Upstream {
    /// Starts session `slot`'s task.
    pub fn spawn(
        slot: usize,
        config: Arc<Config>,
        metrics: AgentMetrics,
        ctx: &Context,
    ) -> UpHandle {
        let (tx, rx) = mpsc::channel(65_536);
        let up = Upstream {
            slot,
            config,
            metrics,
            rx,
            miners: HashMap::new(),
            jobs: VecDeque::new(),
            extranonce1: None,
            initial: None,
            signed: false,
            version_mask: 0,
            in_flight: HashMap::new(),
            next_index: 0,
            gap: VecDeque::new(),
            down_since: Some(Instant::now()),
        };
        let token = ctx.shutdown.token().clone();
        let health = ctx.health.clone();
        ctx.shutdown.tracker().spawn(up.run(token, health));
        UpHandle { tx }
    }

    async fn run(mut self, token: CancellationToken, health: sluice_service::Health) {
        let max = Duration::from_secs_f64(self.config.upstream.retry_max_secs);
        let mut backoff = Backoff::new(Duration::from_millis(100).min(max), max);
        let component = format!("upstream{}", self.slot);
        loop {
            let link = {
                let connecting = Self::connect_any(
                    Arc::clone(&self.config),
                    self.extranonce1,
                    self.metrics.clone(),
                );
                tokio::pin!(connecting);
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        link = &mut connecting => break link,
                        cmd = self.rx.recv() => match cmd {
                            Some(cmd) => {
                                self.on_cmd(None, cmd);
                                self.past_grace();
                            }
                            None => return,
                        },
                    }
                }
            };
            match link {
                Ok((link, hello)) => {
                    backoff.reset();
                    health.set(&component, true, "connected");
                    self.metrics.upstream_connected.inc();
                    let why = self.online(link, hello, &token).await;
                    self.metrics.upstream_connected.dec();
                    health.set(&component, false, why.clone());
                    if token.is_cancelled() {
                        return;
                    }
                    tracing::warn!(slot = self.slot, %why, "uplink lost; miners stay on their jobs");
                    self.down_since = Some(Instant::now());
                }
                Err(why) => {
                    health.set(&component, false, why.clone());
                    tracing::warn!(slot = self.slot, %why, "no pool answered");
                }
            }
            // Down too long: the miners go elsewhere.
            self.past_grace();
            // Wait before the next attempt, serving miners meanwhile.
            let pause = tokio::time::sleep(backoff.take());
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = &mut pause => break,
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => {
                            self.on_cmd(None, cmd);
                            self.past_grace();
                        }
                        None => return,
                    },
                }
            }
        }
    }

    /// Connects to the first pool that completes the handshake.
    async fn connect_any(
        config: Arc<Config>,
        resume: Option<[u8; 4]>,
        metrics: AgentMetrics,
    ) -> Result<(Link, Hello), String> {
        let timeout = Duration::from_secs(config.upstream.connect_timeout_secs);
        let mut errors = Vec::new();
        for pool in &config.upstream.pools {
            let u = &config.upstream;
            let attempt = Self::connect(pool, &u.account, &u.password, resume, &metrics);
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(link)) => {
                    tracing::info!(%pool, "connected to the pool");
                    return Ok(link);
                }
                Ok(Err(e)) => errors.push(format!("{pool}: {e}")),
                Err(_) => errors.push(format!("{pool}: no answer within {timeout:?}")),
            }
        }
        Err(errors.join("; "))
    }

    /// BTCAgent's handshake: capabilities, configure, subscribe (resuming
    /// the last session), authorize; done when the authorize is answered.
    async fn connect(
        pool: &str,
        account: &str,
        password: &str,
        resume: Option<[u8; 4]>,
        metrics: &AgentMetrics,
    ) -> Result<(Link, Hello), String> {
        let tcp = TcpStream::connect(pool).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        metrics.upstream_connects.inc();
        let (rd, wr) = tcp.into_split();
        let mut link = Link {
            rd,
            wr,
            framer: LineFramer::new(1 << 20),
            out: Vec::new(),
        };
        // The handshake in the typed client's words: the capabilities
        // BTCAgent asks for (and the signed exponent), version rolling,
        // the session to resume if any, the account.
        let mut session = ClientSession::new();
        let caps = [
            capability::VERSION_ROLLING,
            capability::SUBMIT_RESPONSE,
            capability::SIGNED_DIFF_EXPONENT,
        ];
        let caps = session.other(Call::AgentGetCapabilities(
            caps.iter().map(|c| (*c).to_owned()).collect(),
        ));
        let configure = session.configure(Configure {
            version_rolling_mask: Some(u32::MAX),
            version_rolling_min_bit_count: Some(0),
            minimum_difficulty: None,
            unknown: Vec::new(),
        });
        let subscribe = session.subscribe_with(Subscribe {
            user_agent: Some(USER_AGENT.to_owned()),
            session_id: resume.map(hex::encode),
        });
        let authorize = session.authorize(account, password);
        for request in [&caps, &configure, &subscribe, &authorize] {
            link.line(&request.to_line());
        }
        link.flush(metrics).await?;
        let mut hello = Hello {
            session,
            caps: caps.id,
            extranonce1: None,
            signed: false,
            early: Vec::new(),
        };
        let mut authorized = false;
        loop {
            // The whole read: work that came behind the authorize answer
            // is the session's first.
            for frame in link.read(metrics).await? {
                let Frame::Line(line) = frame else {
                    return Err("ex-message before authorization".into());
                };
                let message = ServerMessage::parse(&line).map_err(|e| e.to_string())?;
                if authorized {
                    hello.early.push(message);
                } else {
                    authorized = hello.on(message)?;
                }
            }
            if authorized {
                return Ok((link, hello));
            }
        }
    }

    /// Past the grace without an uplink: the miners are sent elsewhere.
    fn past_grace(&mut self) {
        let grace = Duration::from_secs(self.config.miners.reconnect_grace_secs);
        if self
            .down_since
            .is_some_and(|at| at.elapsed() >= grace && !self.miners.is_empty())
        {
            tracing::warn!(
                slot = self.slot,
                miners = self.miners.len(),
                ?grace,
                "uplink down past the grace; miners told to reconnect"
            );
            for (_, m) in self.miners.drain() {
                let _ = m.tx.try_send(Down::Reconnect);
            }
            self.metrics.gap_shares.dec_by(self.gap.len() as i64);
            self.gap.clear();
            self.in_flight.clear();
        }
    }

    fn add_miner(
        &mut self,
        sid: u16,
        client_agent: String,
        worker: String,
        version_rolling: bool,
        tx: mpsc::Sender<Down>,
    ) -> ExMessage {
        // What a joining miner needs before its first share: the mask,
        // its difficulty and the newest job.
        if version_rolling && self.version_mask != 0 {
            let line =
                ServerMessage::from(Notification::SetVersionMask(self.version_mask)).to_line();
            let _ = tx.try_send(Down::Line(line.into()));
        }
        if let Some(d) = self.initial {
            let line = ServerMessage::from(Notification::SetDifficulty(d)).to_line();
            let _ = tx.try_send(Down::Line(line.into()));
        }
        if let Some(job) = self.jobs.back() {
            let mut n = job.notify.clone();
            n.clean = true;
            let line = ServerMessage::from(Notification::Notify(n)).to_line();
            let _ = tx.try_send(Down::Line(line.into()));
        }
        let register = ExMessage::RegisterWorker {
            session_id: sid,
            client_agent: client_agent.clone(),
            worker_name: worker.clone(),
        };
        self.miners.insert(
            sid,
            Slot {
                tx,
                client_agent,
                worker,
                version_rolling,
                difficulty: None,
                before: None,
            },
        );
        register
    }

    /// Checks a share locally: a known job, the miner's difficulty met.
    /// Refused ones are answered here; the rest come back to be sent.
    fn checked(&mut self, sid: u16, id: Id, share: ExSubmit) -> Option<Waiting> {
        // A miner the grace already sent away: nobody to answer.
        let miner = self.miners.get(&sid)?;
        let Some(job) = self.jobs.iter().find(|j| j.short_id == share.job_id) else {
            self.metrics.share("unknown_job");
            self.answer(sid, id, status::JOB_NOT_FOUND_OR_STALE);
            return None;
        };
        let miner_en1 = u32::from(sid).to_be_bytes();
        let h = header(
            &job.notify,
            &miner_en1,
            &share.extranonce2.to_be_bytes(),
            share.time.unwrap_or(job.notify.time),
            share.nonce,
            share.version_mask,
            self.version_mask,
        );
        let hash = h.block_hash();
        let Some(difficulty) = credited(
            hash,
            miner.difficulty(self.initial),
            miner.before,
            job.network,
            Instant::now(),
        ) else {
            self.metrics.share("low_difficulty");
            self.answer(sid, id, status::LOW_DIFFICULTY);
            return None;
        };
        Some(Waiting {
            sid,
            id,
            share,
            difficulty,
        })
    }

    fn answer(&self, sid: u16, id: Id, status: u32) {
        if let Some(m) = self.miners.get(&sid) {
            let _ = m.tx.try_send(Down::Answer { id, status });
        }
    }

    /// Sends a share up (into `link.out`), remembered until answered.
    fn send_share(&mut self, link: &mut Link, w: Waiting) {
        link.out
            .extend_from_slice(&ExMessage::SubmitShare(w.share).encode());
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1);
        self.in_flight.insert(index, w);
    }

    /// The session, until the connection is lost or the agent stops: why.
    async fn online(&mut self, mut link: Link, hello: Hello, token: &CancellationToken) -> String {
        let resumed = hello.extranonce1.is_some() && hello.extranonce1 == self.extranonce1;
        self.signed = hello.signed;
        self.extranonce1 = hello.extranonce1;
        self.next_index = 0;
        self.down_since = None;
        // Answered shares of a lost connection are lost with it: in flight
        // first, then the gap, in the order the miners found them.
        let mut waiting: Vec<Waiting> = {
            let mut v: Vec<(u16, Waiting)> = self.in_flight.drain().collect();
            v.sort_by_key(|(i, _)| *i);
            v.into_iter().map(|(_, w)| w).collect()
        };
        self.metrics.gap_shares.dec_by(self.gap.len() as i64);
        waiting.extend(self.gap.drain(..));
        if !resumed {
            // A new session: the old jobs (and shares on them) mean nothing to it.
            self.jobs.clear();
            for w in waiting.drain(..) {
                self.metrics.share("gap_lost");
                self.answer(w.sid, w.id, status::JOB_NOT_FOUND_OR_STALE);
            }
        }
        tracing::info!(slot = self.slot, resumed, session = %hex::encode(self.extranonce1.unwrap_or_default()), miners = self.miners.len(), shares = waiting.len(), "upstream session ready");
        for (sid, m) in &mut self.miners {
            m.difficulty = None;
            link.out.extend_from_slice(
                &ExMessage::RegisterWorker {
                    session_id: *sid,
                    client_agent: m.client_agent.clone(),
                    worker_name: m.worker.clone(),
                }
                .encode(),
            );
        }
        for w in waiting {
            self.send_share(&mut link, w);
        }
        for m in hello.early {
            self.on_pool_message(m);
        }
        // What the miners send waits up to `batch_ms` for company: one
        // write (and, at the pool, one answer) for many shares.
        let batch = Duration::from_millis(self.config.upstream.batch_ms);
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let due = flush_at.is_none_or(|at| tokio::time::Instant::now() >= at)
                || link.out.len() >= FLUSH_BYTES;
            if due {
                if let Err(e) = link.flush(&self.metrics).await {
                    return e;
                }
                flush_at = None;
            }
            let wait = flush_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                () = token.cancelled() => return "stopping".into(),
                () = tokio::time::sleep_until(wait), if flush_at.is_some() => {}
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return "stopping".into() };
                    self.on_cmd(Some(&mut link), cmd);
                    // Whatever else is queued goes in the same write.
                    for _ in 0..1024 {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.on_cmd(Some(&mut link), cmd),
                            Err(_) => break,
                        }
                    }
                    if flush_at.is_none() && !link.out.is_empty() {
                        flush_at = Some(tokio::time::Instant::now() + batch);
                    }
                }
                frames = link.read(&self.metrics) => match frames {
                    Ok(frames) => {
                        for f in frames {
                            match f {
                                Frame::Line(l) => {
                                    tracing::trace!(slot = self.slot, line = %l, "from the pool");
                                    match ServerMessage::parse(&l) {
                                        Ok(m) => self.on_pool_message(m),
                                        Err(e) => tracing::warn!(error = %e, "unreadable line from the pool"),
                                    }
                                }
                                Frame::Ex(bytes) => match ExMessage::decode(&bytes) {
                                    Ok(m) => self.on_pool_ex(m),
                                    Err(e) => tracing::warn!(error = %e, "unreadable ex-message from the pool"),
                                },
                            }
                        }
                    }
                    Err(e) => return e,
                },
            }
        }
    }

    /// One miner's command: sent up on `link`, or, while the uplink is down
    /// (`None`), remembered: registrations for the next session, shares in
    /// the gap (bounded).
    fn on_cmd(&mut self, link: Option<&mut Link>, cmd: UpCmd) {
        match cmd {
            UpCmd::Register {
                sid,
                client_agent,
                worker,
                version_rolling,
                tx,
            } => {
                let register = self.add_miner(sid, client_agent, worker, version_rolling, tx);
                if let Some(link) = link {
                    link.out.extend_from_slice(&register.encode());
                }
            }
            UpCmd::Unregister { sid } => {
                if self.miners.remove(&sid).is_some()
                    && let Some(link) = link
                {
                    link.out.extend_from_slice(
                        &ExMessage::UnregisterWorker { session_id: sid }.encode(),
                    );
                }
            }
            UpCmd::Submit { sid, id, share } => {
                let Some(w) = self.checked(sid, id, share) else {
                    return;
                };
                if let Some(link) = link {
                    self.send_share(link, w);
                    return;
                }
                if self.gap.len() >= self.config.upstream.max_gap_shares {
                    // The oldest waits longest: it goes first.
                    if let Some(old) = self.gap.pop_front() {
                        self.metrics.gap_shares.dec();
                        self.answer(old.sid, old.id, status::JOB_NOT_FOUND_OR_STALE);
                        self.metrics.share("gap_lost");
                    }
                }
                self.gap.push_back(w);
                self.metrics.gap_shares.inc();
            }
        }
    }

    fn on_pool_message(&mut self, m: ServerMessage) {
        match m {
            ServerMessage::Notification(Notification::Notify(n)) => self.on_job(n),
            ServerMessage::Notification(Notification::SetDifficulty(d)) => {
                // The session's: every miner without one of its own has it.
                let old = self.initial;
                self.initial = Some(d);
                let line: Arc<str> = ServerMessage::from(Notification::SetDifficulty(d))
                    .to_line()
                    .into();
                for m in self.miners.values_mut().filter(|m| m.difficulty.is_none()) {
                    m.retarget(m.difficulty(old), d);
                    let _ = m.tx.try_send(Down::Line(Arc::clone(&line)));
                }
            }
            ServerMessage::Notification(Notification::SetVersionMask(mask)) => {
                self.version_mask = mask;
                let line: Arc<str> = ServerMessage::from(Notification::SetVersionMask(mask))
                    .to_line()
                    .into();
                for m in self.miners.values().filter(|m| m.version_rolling) {
                    let _ = m.tx.try_send(Down::Line(Arc::clone(&line)));
                }
            }
            ServerMessage::Notification(Notification::Reconnect { .. }) => {
                // The pool drains: the connection closes soon and the
                // session resumes on the next pool or the same one.
                tracing::info!(slot = self.slot, "the pool asks to reconnect");
            }
            other => tracing::debug!(?other, "from the pool"),
        }
    }

    fn on_job(&mut self, mut n: Notify) {
        let (Ok(short_id), Some(en1)) = (n.job_id.parse::<u8>(), self.extranonce1) else {
            tracing::warn!(job = %n.job_id, "a job without a short id; not a farm-agent session?");
            return;
        };
        self.metrics.jobs.inc();
        n.coinbase1.extend_from_slice(&en1);
        let network = Target::from_compact(n.bits);
        let line: Arc<str> = ServerMessage::from(Notification::Notify(n.clone()))
            .to_line()
            .into();
        self.jobs.retain(|j| j.short_id != short_id);
        if self.jobs.len() == JOBS_KEPT {
            self.jobs.pop_front();
        }
        self.jobs.push_back(Job {
            short_id,
            notify: n,
            network,
        });
        let mut gone = Vec::new();
        for (sid, m) in &self.miners {
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                m.tx.try_send(Down::Line(Arc::clone(&line)))
            {
                gone.push(*sid);
            }
        }
        for sid in gone {
            self.miners.remove(&sid);
        }
    }

    fn on_pool_ex(&mut self, m: ExMessage) {
        match m {
            ExMessage::MiningSetDiff {
                exponent,
                session_ids,
            } => {
                let d = agent::difficulty_of(exponent, self.signed);
                let line: Arc<str> = ServerMessage::from(Notification::SetDifficulty(d))
                    .to_line()
                    .into();
                // Its job again (not clean): many miners take a new
                // difficulty only with new work.
                let job: Option<Arc<str>> = self.jobs.back().map(|j| {
                    let mut n = j.notify.clone();
                    n.clean = false;
                    ServerMessage::from(Notification::Notify(n))
                        .to_line()
                        .into()
                });
                for sid in session_ids {
                    if let Some(m) = self.miners.get_mut(&sid) {
                        m.retarget(m.difficulty(self.initial), d);
                        m.difficulty = Some(d);
                        let _ = m.tx.try_send(Down::Line(Arc::clone(&line)));
                        if let Some(job) = &job {
                            let _ = m.tx.try_send(Down::Line(Arc::clone(job)));
                        }
                    }
                }
            }
            ExMessage::SubmitResponse { index, status } => {
                let Some(w) = self.in_flight.remove(&index) else {
                    tracing::warn!(index, "an answer for no share");
                    return;
                };
                if status::is_accepted(status) {
                    self.metrics.share("accepted");
                    if let Some(m) = self.miners.get(&w.sid) {
                        let label = crate::metrics::WorkerLabel {
                            worker: m.worker.clone(),
                        };
                        self.metrics.worker_accepted.get_or_create(&label).inc();
                        self.metrics
                            .worker_accepted_difficulty
                            .get_or_create(&label)
                            .inc_by(w.difficulty);
                    }
                } else {
                    self.metrics.share("rejected");
                }
                self.answer(w.sid, w.id, status);
            }
            other => tracing::warn!(?other, "an ex-message only an agent sends"),
        }
    }
}

/// What the handshake learned.
#[derive(Debug, Default)]
struct Hello {
    /// The handshake's requests and their answers.
    session: ClientSession,
    /// The id of the capabilities request.
    caps: Id,
    extranonce1: Option<[u8; 4]>,
    signed: bool,
    /// Work that came with the handshake, handled once online.
    early: Vec<ServerMessage>,
}

impl Hello {
    /// Takes one message; true once authorized.
    fn on(&mut self, m: ServerMessage) -> Result<bool, String> {
        if matches!(m, ServerMessage::Notification(_)) {
            self.early.push(m);
            return Ok(false);
        }
        match self.session.on_message(m) {
            ClientEvent::Answer(r) if r.id == self.caps => {
                // No answer or an error: none of the capabilities.
                self.signed = r.result.is_ok_and(|caps| {
                    caps["capabilities"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|v| v == capability::SIGNED_DIFF_EXPONENT))
                });
            }
            ClientEvent::Answer(r) => {
                if let Err(e) = r.result {
                    return Err(format!("request {}: {}", r.id, e.message));
                }
            }
            ClientEvent::Subscribed(sub) => {
                if sub.extranonce2_size != agent::EXTRANONCE2_SIZE {
                    return Err(format!(
                        "the pool gives {} bytes of extranonce2; a farm agent needs 8",
                        sub.extranonce2_size
                    ));
                }
                let en1 = <[u8; 4]>::try_from(sub.extranonce1.as_slice())
                    .map_err(|_| "the subscribe answer has no 4-byte extranonce1")?;
                self.extranonce1 = Some(en1);
            }
            ClientEvent::Authorized(result) => {
                result.map_err(|e| format!("authorize: {}", e.message))?;
                if !self.session.authorized {
                    return Err("authorize refused".into());
                }
                if self.extranonce1.is_none() {
                    return Err("authorized before subscribed".into());
                }
                return Ok(true);
            }
            // mining.configure's answer: the mask comes as set_version_mask.
            _ => {}
        }
        Ok(false)
    }
}

impl Link {
    fn line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
    }

    async fn flush(&mut self, metrics: &AgentMetrics) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.wr.write_all(&out).await.map_err(|e| e.to_string())?;
        metrics.uplink_bytes_sent.inc_by(out.len() as u64);
        metrics.uplink_writes.inc();
        Ok(())
    }

    /// The next frames (at least one); cancel-safe.
    async fn read(&mut self, metrics: &AgentMetrics) -> Result<Vec<Frame>, String> {
        loop {
            let mut frames = Vec::new();
            loop {
                match self.framer.next_frame(true) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if !frames.is_empty() {
                return Ok(frames);
            }
            self.rd.readable().await.map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 8192];
            match self.rd.try_read(&mut chunk) {
                Ok(0) => return Err("the pool closed the connection".into()),
                Ok(n) => {
                    metrics.uplink_bytes_received.inc_by(n as u64);
                    self.framer.push(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    /// A hash meeting difficulty 2^k and no more (k ≥ 0): the difficulty-1
    /// target shifted right by k bits, minus one.
    fn hash_at(k: u32) -> bitcoin::BlockHash {
        let target = target_of(2f64.powi(k as i32));
        let mut le = target.to_le_bytes();
        // one below the target: met at 2^k, not at 2^(k+1)
        for b in le.iter_mut() {
            if *b == 0 {
                *b = 0xff;
            } else {
                *b -= 1;
                break;
            }
        }
        bitcoin::BlockHash::from_byte_array(le)
    }

    const HARD: Target = Target::ZERO;

    #[test]
    fn a_share_meeting_only_the_old_difficulty_counts_at_it_within_the_grace() {
        let now = Instant::now();
        let h = hash_at(4); // meets 16, not 32
        assert_eq!(credited(h, 16.0, None, HARD, now), Some(16.0));
        assert_eq!(credited(h, 32.0, None, HARD, now), None);
        let changed = Some((16.0, now));
        assert_eq!(
            credited(h, 32.0, changed, HARD, now + Duration::from_secs(9)),
            Some(16.0)
        );
        assert_eq!(
            credited(h, 32.0, changed, HARD, now + RETARGET_GRACE),
            None,
            "grace over"
        );
        assert_eq!(
            credited(hash_at(3), 32.0, changed, HARD, now),
            None,
            "the old difficulty not met either"
        );
        // A block goes up whatever the miner's difficulty.
        assert_eq!(credited(h, 32.0, None, Target::MAX, now), Some(32.0));
    }
}
