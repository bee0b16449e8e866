//! One Stratum V1 connection (plain or TLS; a farm agent's session is one
//! too, its miners in `agent.rs`): the socket task around a
//! [`ServerSession`], started by the listener once admitted.
//!
//! The task owns everything about its miner (protocol state, the jobs it was
//! sent with their difficulties and submitted shares, vardiff, reject
//! counts); shared things come in through [`Shared`]. It reads lines, answers
//! every request, sends `mining.notify` when the job board changes (and
//! again every `notify_interval`), has shares judged and hands the judgement
//! to the one post-judge path (`channel.rs`). On drain it sends
//! `client.reconnect` and closes within the drain spread.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::record::{EventKind, MinerIdentity, MiningProtocol};
use sluice_core::worker::{parse_login, worker_id};
use sluice_stratum::Id;
use sluice_stratum::message::Submit;
use sluice_stratum::session::{PasswordOptions, ServerSession, State, Step};
use sluice_stratum::{
    Call, ErrorCode, Frame, FrameError, LineFramer, Notification, Request, Response, ServerMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::channel::{Recorded, Source};
use crate::ids::SessionIndex;
use crate::jobs::{Board, now_secs, parse_stratum_job_id};
use crate::judge::{Rejection, SentJob, ShareWork, judge};
use crate::limits::RejectWindow;
use crate::listener::{admitted, canonical_ip, read_proxy_header, refuse};
use crate::metrics::ReasonLabel;
use crate::shared::{Miner, Shared, settle};
use crate::users::AuthError;
use crate::vardiff::Vardiff;

pub(crate) mod agent;

/// A share's verdict on the wire and what to record of it.
struct Judged {
    verdict: Result<(), (ErrorCode, String)>,
    recorded: Recorded,
}

impl Judged {
    fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Judged {
            verdict: Err((code, message.into())),
            recorded: Recorded::default(),
        }
    }
}

/// Jobs remembered per connection (shares for older ones are "not found").
const SENT_JOBS: usize = 8;

struct Conn {
    shared: Arc<Shared>,
    session: ServerSession,
    /// The session id (None once handed over to a parked agent session).
    index: Option<SessionIndex>,
    peer: SocketAddr,
    board: watch::Receiver<Arc<Board>>,
    out: Outbox,
    miner: Option<Miner>,
    vardiff: Option<Vardiff>,
    suggested: Option<f64>,
    floor: Option<f64>,
    sent: VecDeque<SentJob>,
    sent_difficulty: Option<f64>,
    last_tip: Option<bitcoin::BlockHash>,
    last_notify: Instant,
    rejects: RejectWindow,
    bad_lines: u32,
    started: Instant,
    close: bool,
    /// Acknowledgements the queued answers wait for.
    unacked: Vec<oneshot::Receiver<()>>,
    /// A farm agent's session: its miners (boxed: most sessions have none).
    agent: Option<Box<agent::AgentSession>>,
}

/// Why a connection ended (for the log).
#[derive(Debug)]
enum End {
    Eof,
    Io(std::io::Error),
    Timeout(Deadline),
    Protocol(String),
    Banned,
    Drained,
}

/// Which of a connection's deadlines passed.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// Not authorized within `preauth_timeout`.
    Authorize,
    /// Authorized and silent for `idle_timeout`.
    Idle,
    /// Took none of its answers for `write_timeout`.
    Write,
}

impl Deadline {
    fn name(self) -> &'static str {
        match self {
            Deadline::Authorize => "authorize",
            Deadline::Idle => "idle",
            Deadline::Write => "write",
        }
    }
}

impl End {
    /// The `reason` label in /metrics.
    fn reason(&self) -> &'static str {
        match self {
            End::Eof => "miner",
            End::Io(_) => "io",
            End::Timeout(Deadline::Authorize) => "authorize_timeout",
            End::Timeout(Deadline::Idle) => "idle_timeout",
            End::Timeout(Deadline::Write) => "write_timeout",
            End::Protocol(_) => "protocol",
            End::Banned => "banned",
            End::Drained => "drained",
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => f.write_str("closed by the miner"),
            End::Io(e) => write!(f, "i/o error: {e}"),
            End::Timeout(what) => write!(f, "{} timeout", what.name()),
            End::Protocol(why) => write!(f, "protocol violation: {why}"),
            End::Banned => f.write_str("banned"),
            End::Drained => f.write_str("drained"),
        }
    }
}

/// Serves one accepted socket to the end.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut framer = LineFramer::new(shared.config.max_line_bytes);
    let peer = SocketAddr::new(canonical_ip(peer.ip()), peer.port());
    let peer = if shared.config.proxy_protocol {
        match Box::pin(read_proxy_header(&mut rd, shared.config.preauth_timeout)).await {
            Ok((real, rest)) => {
                framer.push(&rest);
                real.map_or(peer, |r| SocketAddr::new(canonical_ip(r.ip()), r.port()))
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "connection without a valid PROXY header closed");
                return;
            }
        }
    } else {
        peer
    };
    if let Err(message) = admitted(&shared, peer) {
        if let Ok(stream) = rd.reunite(wr) {
            refuse(stream, &message, &shared);
        }
        return;
    }
    // The session runs in this task's own future (no nested one holding a
    // second copy of its parts): an idle connection is this future.
    let Some(mut conn) = Conn::open(Writer::Tcp(wr), peer, shared) else {
        return;
    };
    let mut rd = Reader::Tcp(rd);
    let end = conn.run(&mut rd, framer).await;
    conn.closed(&end);
}

/// Serves one socket accepted on the TLS listener to the end: admission
/// first (a refused or banned address costs no handshake), then the TLS
/// handshake within the pre-auth timeout, then Stratum as on the plain port.
pub(crate) async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
) {
    let _ = stream.set_nodelay(true);
    let peer = SocketAddr::new(canonical_ip(peer.ip()), peer.port());
    // Refused before the handshake, so silently: a refusal costs no TLS work.
    if admitted(&shared, peer).is_err() {
        return;
    }
    let handshake = tokio::time::timeout(shared.config.preauth_timeout, acceptor.accept(stream));
    let tls = match Box::pin(handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (rd, wr) = tokio::io::split(tls);
    let framer = LineFramer::new(shared.config.max_line_bytes);
    let Some(mut conn) = Conn::open(Writer::Tls(wr), peer, shared) else {
        return;
    };
    let mut rd = Reader::Tls(rd);
    let end = conn.run(&mut rd, framer).await;
    conn.closed(&end);
}

impl Conn {
    /// The Stratum session over an admitted connection: a session id, the
    /// session state, counted as open.
    fn open(wr: Writer, peer: SocketAddr, shared: Arc<Shared>) -> Option<Conn> {
        let Some(index) = shared.ids.allocate() else {
            tracing::error!("all 2^24 session ids are in use; connection refused");
            return None;
        };
        let idx = index.get();
        let extranonce1 = [
            shared.server_id,
            (idx >> 16) as u8,
            (idx >> 8) as u8,
            idx as u8,
        ];
        let session = ServerSession::new(
            extranonce1,
            shared.config.extranonce2_size,
            shared.config.version_mask,
        );
        shared.metrics.connections.inc();
        shared.metrics.connections_total.inc();
        Some(Conn {
            board: shared.board.clone(),
            session,
            index: Some(index),
            peer,
            out: Outbox {
                wr,
                pending: Vec::new(),
            },
            miner: None,
            vardiff: None,
            suggested: None,
            floor: None,
            sent: VecDeque::new(),
            sent_difficulty: None,
            last_tip: None,
            last_notify: Instant::now(),
            rejects: RejectWindow::new(
                shared.config.max_rejects_per_minute,
                Duration::from_secs(60),
            ),
            bad_lines: 0,
            started: Instant::now(),
            close: false,
            unacked: Vec::new(),
            agent: None,
            shared,
        })
    }

    /// The session ended: logged, counted, and a MinerDisconnected event
    /// for an authorized miner.
    fn closed(self, end: &End) {
        let session = hex::encode(self.session.extranonce1());
        tracing::debug!(peer = %self.peer, %session, %end, "connection closed");
        self.shared.metrics.connections.dec();
        let reason = end.reason();
        self.shared
            .metrics
            .closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if self.is_agent() {
            let drained = matches!(end, End::Drained) || self.shared.drain.is_cancelled();
            self.agent_closed(!drained);
        } else if let Some(identity) = self.identity() {
            self.event(EventKind::MinerDisconnected(identity));
        }
    }
}

/// The reading side of a plain or TLS connection.
enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// What a read brought.
enum Input {
    Bytes,
    Eof,
    /// A spurious readiness: nothing to read after all.
    Nothing,
}

impl Reader {
    /// Waits for input and pushes it into `framer`. Cancel-safe: nothing is
    /// consumed unless it completes.
    async fn read_into(&mut self, framer: &mut LineFramer) -> std::io::Result<Input> {
        match self {
            Reader::Tcp(rd) => {
                rd.readable().await?;
                // The read buffer lives on the stack only while reading: an
                // idle connection holds no buffer at all.
                let mut chunk = [0u8; 2048];
                match rd.try_read(&mut chunk) {
                    Ok(0) => Ok(Input::Eof),
                    Ok(n) => {
                        framer.push(&chunk[..n]);
                        Ok(Input::Bytes)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Input::Nothing),
                    Err(e) => Err(e),
                }
            }
            // rustls has no readiness API: the buffer waits with the read,
            // boxed so that it is not part of every plain connection's task.
            Reader::Tls(rd) => {
                Box::pin(async move {
                    let mut chunk = [0u8; 2048];
                    let n = rd.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(Input::Eof);
                    }
                    framer.push(&chunk[..n]);
                    Ok(Input::Bytes)
                })
                .await
            }
        }
    }
}

/// The writing side of a plain or TLS connection.
enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Writer {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Tcp(wr) => wr.write_all(bytes).await,
            Writer::Tls(wr) => {
                wr.write_all(bytes).await?;
                wr.flush().await
            }
        }
    }
}

impl Conn {
    async fn run(&mut self, rd: &mut Reader, mut framer: LineFramer) -> End {
        let mut last_read = Instant::now();
        // One timer set to the session's next deadline, not a periodic tick:
        // 19,000 sockets that never subscribe wake once each, at their
        // pre-auth timeout, instead of 19,000 times a second. Reads only move
        // deadlines later, so a timer that fires early just re-arms.
        let mut armed = self.next_wake(last_read);
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        let mut armed_for = self.session.state();
        let mut drain_at: Option<tokio::time::Instant> = None;
        // One wait on the drain token for the whole session: a new one per
        // loop would take the token's lock twice per line read.
        let drain = self.shared.drain.clone().cancelled_owned();
        tokio::pin!(drain);
        // Lines already buffered with the PROXY header.
        if let Err(end) = Box::pin(self.process(&mut framer)).await {
            return end;
        }
        loop {
            if self.close {
                self.settle().await;
                let _ = self.out.flush().await;
                return End::Banned;
            }
            if self.out.has_pending() {
                self.settle().await;
                // A miner that stops reading blocks only itself: nothing more
                // is queued for it while this waits (the loop does not read
                // its requests nor take new jobs), and it is dropped.
                let wait = self.shared.config.write_timeout;
                let flushed = tokio::time::timeout(wait, self.out.flush()).await;
                match flushed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Io(e),
                    Err(_) => return End::Timeout(Deadline::Write),
                }
            }
            let state = self.session.state();
            let authorized = state == State::Authorized;
            if state != armed_for {
                // Authorized: the next notify may fall before the pre-auth deadline.
                armed_for = state;
                armed = self.next_wake(last_read);
                timer.as_mut().reset(armed);
            }
            // Enough shares for an early retarget: look again within a
            // second (as the old one-second tick did), not at the window's
            // end. Judged on the timer, between reads: retargeting in the
            // middle of a read's shares would leave those in flight behind
            // more than one difficulty change.
            if self.vardiff.as_ref().is_some_and(Vardiff::may_be_fast) {
                let soon = tokio::time::Instant::now() + Duration::from_secs(1);
                if armed > soon {
                    armed = soon;
                    timer.as_mut().reset(armed);
                }
            }
            tokio::select! {
                biased;
                () = &mut drain, if drain_at.is_none() => {
                    drain_at = Some(Box::pin(self.start_drain()).await);
                }
                () = async { if let Some(at) = drain_at { tokio::time::sleep_until(at).await } }, if drain_at.is_some() => {
                    return End::Drained;
                }
                input = rd.read_into(&mut framer) => {
                    match input {
                        Ok(Input::Eof) => return End::Eof,
                        Ok(Input::Nothing) => {}
                        Ok(Input::Bytes) => {
                            last_read = Instant::now();
                            // Boxed: the request handling's state is allocated while it
                            // runs, not carried in every idle connection's task.
                            if let Err(end) = Box::pin(self.process(&mut framer)).await {
                                self.settle().await;
                                let _ = self.out.flush().await;
                                return end;
                            }
                        }
                        Err(e) => return End::Io(e),
                    }
                }
                changed = self.board.changed(), if authorized => {
                    if changed.is_err() {
                        return End::Drained;
                    }
                    Box::pin(self.notify_latest(false)).await;
                }
                () = &mut timer => {
                    if let Some(end) = Box::pin(self.on_deadline(last_read)).await {
                        return end;
                    }
                    armed = self.next_wake(last_read);
                    timer.as_mut().reset(armed);
                }
            }
        }
    }

    /// Waits until the broker has acknowledged the shares of the answers
    /// queued, at most `accept_wait`: "accepted" then means the share is on
    /// the broker. Past the wait the answers go anyway, counted (the broker
    /// is away; the shares stay queued and are sent when it is back).
    async fn settle(&mut self) {
        settle(&mut self.unacked, &self.shared).await;
    }

    /// Sends `client.reconnect` and picks when to close, spread by session index.
    async fn start_drain(&mut self) -> tokio::time::Instant {
        self.send(
            Notification::Reconnect {
                host: None,
                port: None,
                wait_secs: None,
            }
            .into(),
        )
        .await;
        let spread = self.shared.config.drain_spread;
        let index = self.index.as_ref().map_or(0, SessionIndex::get);
        let offset = spread.mul_f64(f64::from(index % 1000) / 1000.0);
        tokio::time::Instant::now() + offset
    }

    /// When the session's next deadline falls: the pre-auth timeout before
    /// authorization; after it the first of the idle timeout, the periodic
    /// notify and the end of the vardiff window.
    fn next_wake(&self, last_read: Instant) -> tokio::time::Instant {
        let c = &self.shared.config;
        let at = if self.session.state() == State::Authorized {
            let mut at = (last_read + c.idle_timeout).min(self.last_notify + c.notify_interval);
            if self.is_agent() {
                // A farm's miners: looked at every second (one session, many miners).
                at = at.min(Instant::now() + Duration::from_secs(1));
            }
            if let Some(v) = &self.vardiff {
                at = at.min(self.started + Duration::from_secs_f64(v.window_end().max(0.0)));
            }
            at
        } else {
            self.started + c.preauth_timeout
        };
        // Just past the deadline, not on it: float seconds round. And at
        // least a moment ahead, so a deadline nothing moved cannot spin.
        let at = at + Duration::from_millis(1);
        tokio::time::Instant::from_std(at.max(Instant::now() + Duration::from_millis(10)))
    }

    async fn on_deadline(&mut self, last_read: Instant) -> Option<End> {
        let c = &self.shared.config;
        match self.session.state() {
            State::Authorized => {
                if last_read.elapsed() >= c.idle_timeout {
                    return Some(End::Timeout(Deadline::Idle));
                }
                let now = self.started.elapsed().as_secs_f64();
                let due = self.last_notify.elapsed() >= self.shared.config.notify_interval;
                if self.is_agent() {
                    // A miner's new difficulty goes alone (the agent re-sends
                    // that miner its job); the whole job only when due.
                    if self.agent_retarget() || due {
                        self.agent_notify(due).await;
                    }
                    return None;
                }
                let retarget = self
                    .vardiff
                    .as_mut()
                    .and_then(|v| v.retarget(now))
                    .is_some();
                if retarget || due {
                    self.notify_latest(true).await;
                    // Nothing to send yet (no job): the next job wakes the
                    // session anyway; try again an interval later.
                    self.last_notify = Instant::now();
                }
            }
            _ if self.started.elapsed() >= c.preauth_timeout => {
                return Some(End::Timeout(Deadline::Authorize));
            }
            _ => {}
        }
        None
    }

    async fn process(&mut self, framer: &mut LineFramer) -> Result<(), End> {
        loop {
            match framer.next_frame(self.agent_capable()) {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Line(line))) => self.on_line(&line).await?,
                Ok(Some(Frame::Ex(frame))) => self.on_ex_message(&frame).await?,
                Err(FrameError::ExLength(len)) => {
                    self.shared.metrics.bad_lines.inc();
                    return Err(End::Protocol(format!(
                        "ex-message length {len} shorter than its header"
                    )));
                }
                Err(FrameError::TooLong { max }) => {
                    self.shared.metrics.bad_lines.inc();
                    self.send(
                        Response::error(
                            Id::null(),
                            ErrorCode::Other,
                            format!("line longer than {max} bytes"),
                        )
                        .into(),
                    )
                    .await;
                    return Err(End::Protocol(format!("line longer than {max} bytes")));
                }
                Err(FrameError::NotUtf8) => {
                    self.bad_line(Id::null(), "line is not UTF-8".into())
                        .await?
                }
            }
            if self.close {
                return Ok(());
            }
        }
    }

    async fn bad_line(&mut self, id: Id, message: String) -> Result<(), End> {
        self.shared.metrics.bad_lines.inc();
        self.bad_lines += 1;
        self.send(Response::error(id, ErrorCode::Other, message.clone()).into())
            .await;
        if self.bad_lines > self.shared.config.max_bad_lines {
            return Err(End::Protocol(format!(
                "too many malformed lines, last: {message}"
            )));
        }
        Ok(())
    }

    async fn on_line(&mut self, line: &str) -> Result<(), End> {
        let request = match Request::parse(line) {
            Ok(r) => r,
            Err(e) => return self.bad_line(e.id, e.error.message).await,
        };
        if let Call::Subscribe(s) = &request.call
            && let Some(old) = s.session_id.as_deref()
            && s.user_agent
                .as_deref()
                .is_some_and(sluice_stratum::agent::is_agent)
        {
            self.resume_agent(old);
        }
        match self.session.on_request(request) {
            Step::Reply(messages) => {
                for m in messages {
                    self.send(m).await;
                }
                if let Some(md) = self.session.minimum_difficulty() {
                    self.set_floor(md);
                }
            }
            Step::Authorize { id, login, options } => {
                self.handle_authorize(id, &login, options).await
            }
            Step::Submit { id, submit } => self.handle_submit(id, submit).await,
            Step::AgentCapabilities { id, asked } => self.agent_capabilities(id, asked).await,
            Step::SuggestDifficulty { id, difficulty } => {
                self.send(Response::ok(id).into()).await;
                self.suggested = Some(difficulty);
                if let Some(v) = self.vardiff.as_mut() {
                    v.reset(difficulty, self.started.elapsed().as_secs_f64());
                    self.notify_latest(true).await;
                }
            }
        }
        Ok(())
    }

    fn set_floor(&mut self, floor: f64) {
        self.floor = Some(floor);
        let now = self.started.elapsed().as_secs_f64();
        if let Some(v) = self.vardiff.as_mut() {
            v.set_floor(floor, now);
        }
    }

    async fn handle_authorize(&mut self, id: Id, login: &str, options: PasswordOptions) {
        let Some(parsed) = parse_login(login) else {
            self.send(
                Response::error(
                    id,
                    ErrorCode::Unauthorized,
                    format!("invalid login {login:?}: expected user.worker"),
                )
                .into(),
            )
            .await;
            return;
        };
        let user_id = match self.shared.users.authorize(&parsed.user).await {
            Ok(user_id) => user_id,
            Err(e) => {
                let code = match e {
                    AuthError::Unavailable => ErrorCode::Other,
                    _ => ErrorCode::Unauthorized,
                };
                self.send(Response::error(id, code, e.to_string()).into())
                    .await;
                return;
            }
        };
        self.session.authorized();
        self.miner = Some(Miner {
            user_id,
            worker_id: worker_id(&parsed.worker),
            user: parsed.user,
            worker: parsed.worker,
        });
        let c = &self.shared.config;
        let start = options
            .difficulty
            .or(self.suggested)
            .unwrap_or(c.default_difficulty);
        let mut vardiff = Vardiff::new(c.vardiff, start, self.started.elapsed().as_secs_f64());
        if let Some(md) = options
            .minimum_difficulty
            .or(self.session.minimum_difficulty())
        {
            vardiff.set_floor(md, self.started.elapsed().as_secs_f64());
        }
        self.vardiff = Some(vardiff);
        self.send(Response::ok(id).into()).await;
        if self.agent_capable() {
            // Its miners connect one by one, as they register.
            self.start_agent(start);
        } else if let Some(identity) = self.identity() {
            self.event(EventKind::MinerConnected(identity));
        }
        self.board.borrow_and_update();
        self.notify_latest(true).await;
    }

    /// Sends the newest job (clean if the tip moved since the last one sent),
    /// preceded by `mining.set_difficulty` when the difficulty changed.
    /// `force`: even if it was already sent.
    async fn notify_latest(&mut self, force: bool) {
        if self.is_agent() {
            return self.agent_notify(force).await;
        }
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let Some(difficulty) = self.vardiff.as_ref().map(Vardiff::current) else {
            return;
        };
        let already = self.sent.back().is_some_and(|s| Arc::ptr_eq(&s.job, &job));
        if already && !force && self.sent_difficulty == Some(difficulty) {
            return;
        }
        if self.sent_difficulty != Some(difficulty) {
            self.send(Notification::SetDifficulty(difficulty).into())
                .await;
            self.sent_difficulty = Some(difficulty);
        }
        let tip_moved = self.last_tip != Some(job.job.prev_blockhash);
        self.last_tip = Some(job.job.prev_blockhash);
        self.last_notify = Instant::now();
        if already {
            // Same job, maybe a new difficulty: shares now count at the new one.
            if let Some(s) = self.sent.back_mut() {
                s.retarget(difficulty, Instant::now());
            }
        } else {
            if self.sent.len() == SENT_JOBS {
                self.sent.pop_front();
            }
            self.sent
                .push_back(SentJob::new(Arc::clone(&job), difficulty));
        }
        self.send_line(job.notify_line(tip_moved)).await;
    }

    async fn handle_submit(&mut self, id: Id, submit: Submit) {
        let judged = self.check_submit(&submit);
        // Stale and unknown-job shares (21) are the network's doing, not the
        // miner's: a farm behind one address sends a burst of them after every
        // block. Only the rest count towards a ban.
        let rejected = matches!(&judged.verdict, Err((code, _)) if *code != ErrorCode::JobNotFound);
        let reply = match &judged.verdict {
            Ok(()) => Response::ok(id),
            Err((code, message)) => Response::error(id, *code, message.clone()),
        };
        self.send(reply.into()).await;
        self.record(judged.recorded).await;
        if rejected && self.rejects.reject(Instant::now()) {
            // A trusted address (a farm's NAT) is not banned: only this
            // connection pays.
            let banned = self.shared.admission.ban(self.peer.ip(), Instant::now());
            if banned {
                self.shared.metrics.bans.inc();
            }
            tracing::warn!(peer = %self.peer, banned, "too many rejected shares; connection closed");
            self.close = true;
        }
    }

    /// Hands a judged share's record and block candidate to the sinks
    /// (V1 and the agent's miners alike).
    async fn record(&mut self, recorded: Recorded) {
        let shared = Arc::clone(&self.shared);
        shared.publish(recorded, &mut self.unacked).await;
    }

    /// Judges one share ([`judge`]) and words the verdict for Stratum V1.
    /// Shares that were checked (all but unknown jobs, duplicates and
    /// malformed ones) are recorded whatever their outcome.
    fn check_submit(&mut self, submit: &Submit) -> Judged {
        let shared = Arc::clone(&self.shared);
        let Some(pos) = parse_stratum_job_id(&submit.job_id)
            .and_then(|jid| self.sent.iter().position(|s| s.job.job.id == jid))
        else {
            shared.metrics.share("job_not_found");
            return Judged::rejected(ErrorCode::JobNotFound, "Job not found");
        };
        let board = Arc::clone(&self.board.borrow());
        let extranonce1 = self.session.extranonce1();
        let work = ShareWork {
            extranonce1: &extranonce1,
            extranonce2: &submit.extranonce2,
            ntime: submit.ntime,
            nonce: submit.nonce,
            version_bits: submit.version_bits,
        };
        let judgement = judge(
            &board,
            &mut self.sent[pos],
            &work,
            self.session.version_mask(),
            Instant::now(),
            now_secs(),
        );
        let from = self.miner.as_ref().map(|miner| Source {
            miner,
            peer: self.peer.ip(),
            protocol: MiningProtocol::StratumV1,
        });
        let recorded = shared.account(&judgement, &work, self.vardiff.as_mut(), from);
        Judged {
            verdict: judgement.verdict.as_ref().map(|_| ()).map_err(v1_error),
            recorded,
        }
    }

    fn identity(&self) -> Option<MinerIdentity> {
        let m = self.miner.as_ref()?;
        Some(MinerIdentity {
            user_id: m.user_id,
            user_name: m.user.clone(),
            worker_id: m.worker_id,
            worker_name: m.worker.clone(),
            server_id: self.shared.server_id,
            extranonce1: u32::from_be_bytes(self.session.extranonce1()),
            client_ip: self.peer.ip(),
            miner_agent: self.session.user_agent().unwrap_or_default().to_owned(),
        })
    }

    fn event(&self, kind: EventKind) {
        self.shared.event(kind);
    }

    async fn send(&mut self, message: ServerMessage) {
        self.send_line(&message.to_line()).await;
    }

    /// Queues one line (newline added); errors surface at the next flush.
    async fn send_line(&mut self, line: &str) {
        self.out.push(line);
    }
}

/// Lines waiting to be written. Unlike a `BufWriter` (8 KiB per connection
/// from the start), it holds memory only between a reply and its flush.
struct Outbox {
    wr: Writer,
    pending: Vec<u8>,
}

impl Outbox {
    fn push(&mut self, line: &str) {
        self.pending.reserve(line.len() + 1);
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
    }

    /// Queues bytes as they are (ex-messages).
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes everything queued, then lets the buffer go.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.wr.write_all(&pending).await
    }
}

/// A rejection in Stratum V1's words (codes as btcpool and ckpool send them).
fn v1_error(r: &Rejection) -> (ErrorCode, String) {
    match r {
        Rejection::Extranonce2Size { got, expected } => (
            ErrorCode::Other,
            format!("extranonce2 must be {expected} bytes, got {got}"),
        ),
        Rejection::JobExpired => (ErrorCode::JobNotFound, "Job not found (expired)".into()),
        Rejection::Duplicate => (ErrorCode::Duplicate, "Duplicate share".into()),
        Rejection::VersionBits { bits, mask } => (
            ErrorCode::Other,
            format!("version bits {bits:08x} outside the negotiated mask {mask:08x}"),
        ),
        Rejection::Invalid(e) => (ErrorCode::Other, e.clone()),
        Rejection::TimeTooOld => (ErrorCode::Other, "Time too old".into()),
        Rejection::TimeTooNew => (ErrorCode::Other, "Time too new".into()),
        Rejection::Stale => (ErrorCode::JobNotFound, "Stale share".into()),
        Rejection::LowDifficulty => (ErrorCode::LowDifficulty, "Low difficulty share".into()),
    }
}
