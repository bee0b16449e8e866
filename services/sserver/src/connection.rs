//! One Stratum V1 connection (plain or TLS; a farm agent's session is one
//! too, its miners in `agent.rs`): the socket task around a
//! [`ServerSession`], started by the listener once admitted.
//!
//! The task owns everything about its miner: the protocol state, and once
//! authorized the miner's [`Channel`] (identity, extranonce1, vardiff, the
//! jobs it was sent); shared things come in through [`Shared`]. It reads
//! lines, answers every request, sends `mining.notify` when the job board
//! changes (and again every `notify_interval`) as the channel offers it, and
//! has the channel judge shares, answering in V1's words. On drain it sends
//! `client.reconnect` and closes within the drain spread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::record::EventKind;
use sluice_stratum::session::{ServerSession, State};
use sluice_stratum::{LineFramer, Notification};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::channel::Channel;
use crate::ids::SessionIndex;
use crate::jobs::Board;
use crate::limits::RejectWindow;
use crate::listener::{admitted, canonical_ip, read_proxy_header, refuse};
use crate::metrics::ReasonLabel;
use crate::shared::{Miner, Shared, settle};
use io::{Input, Outbox, Reader, Writer};

pub(crate) mod agent;
mod io;
mod requests;

struct Conn {
    shared: Arc<Shared>,
    session: ServerSession,
    /// The session id (None once handed over to a parked agent session).
    index: Option<SessionIndex>,
    peer: SocketAddr,
    board: watch::Receiver<Arc<Board>>,
    out: Outbox,
    /// The authorized miner's channel.
    channel: Option<Channel>,
    /// `mining.suggest_difficulty` before authorizing.
    suggested: Option<f64>,
    rejects: RejectWindow,
    bad_lines: u32,
    started: Instant,
    close: bool,
    /// Acknowledgements the queued answers wait for.
    unacked: Vec<crate::spool::Unacked>,
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
    let span = miner_span(peer);
    let end = conn.run(&mut rd, framer).instrument(span.clone()).await;
    span.in_scope(|| conn.closed(&end));
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
    let span = miner_span(peer);
    let end = conn.run(&mut rd, framer).instrument(span.clone()).await;
    span.in_scope(|| conn.closed(&end));
}

/// A connection's lines carry its peer, and once authorized its
/// `user.worker`: one miner's lines can be followed in the log.
fn miner_span(peer: SocketAddr) -> tracing::Span {
    tracing::info_span!("miner", %peer, worker = tracing::field::Empty)
}

impl Conn {
    /// The Stratum session over an admitted connection: a session id, the
    /// session state, counted as open.
    fn open(wr: Writer, peer: SocketAddr, shared: Arc<Shared>) -> Option<Conn> {
        let Some(index) = shared.ids.allocate() else {
            tracing::error!("all 2^24 session ids are in use; connection refused");
            return None;
        };
        let session = ServerSession::new(
            shared.extranonce1(&index),
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
            channel: None,
            suggested: None,
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
        tracing::debug!(%session, %end, "connection closed");
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
            if self
                .channel
                .as_ref()
                .is_some_and(|ch| ch.vardiff.may_be_fast())
            {
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
        let at = if let Some(ch) = &self.channel {
            let mut at =
                (last_read + c.idle_timeout).min(ch.next_wake(self.started, c.notify_interval));
            if self.is_agent() {
                // A farm's miners: looked at every second (one session, many miners).
                at = at.min(Instant::now() + Duration::from_secs(1));
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
                let clock = self.started.elapsed().as_secs_f64();
                let interval = c.notify_interval;
                let ch = self.channel.as_mut()?;
                if self.agent.as_ref().is_some_and(|a| a.is_started()) {
                    // A miner's new difficulty goes alone (the agent re-sends
                    // that miner its job); the whole job only when due.
                    let due = ch.sent.last_notify().elapsed() >= interval;
                    if self.agent_retarget() || due {
                        self.agent_notify(due).await;
                    }
                    return None;
                }
                if ch.due(clock, interval) {
                    self.notify_latest(true).await;
                    // Nothing to send yet (no job): the next job wakes the
                    // session anyway; try again an interval later.
                    if let Some(ch) = self.channel.as_mut() {
                        ch.sent.waited(Instant::now());
                    }
                }
            }
            _ if self.started.elapsed() >= c.preauth_timeout => {
                return Some(End::Timeout(Deadline::Authorize));
            }
            _ => {}
        }
        None
    }
}
