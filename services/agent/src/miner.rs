//! One farm miner's connection: Stratum V1 as a pool speaks it (subscribe,
//! configure with version rolling, suggest_difficulty, extranonce.subscribe,
//! authorize, submit), over the miner's upstream session.
//!
//! The miner's extranonce1 is its 16-bit session id (`0000SSSS`) and it
//! rolls 4 bytes of extranonce2; the jobs it gets already end coinbase1
//! with the upstream session's extranonce1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_core::worker::parse_login;
use sluice_stratum::agent::{ExSubmit, MINER_EXTRANONCE2_SIZE, status};
use sluice_stratum::session::{ServerSession, State, Step};
use sluice_stratum::{
    ErrorCode, Frame, Id, LineFramer, Notification, Request, Response, ServerMessage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::upstream::{Down, UpCmd, UpHandle};
use crate::{AgentMetrics, Config};

/// The version bits a miner may roll before the pool's mask is known
/// (BIP320's general-purpose bits; the pool's `mining.set_version_mask`
/// follows).
const DEFAULT_VERSION_MASK: u32 = 0x1fff_e000;

/// A miner that takes none of its lines for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every miner connection shares.
pub struct Hub {
    ups: Vec<UpHandle>,
    config: Arc<Config>,
    metrics: AgentMetrics,
    ids: Mutex<SessionIds>,
}

/// The 16-bit session ids in use.
struct SessionIds {
    used: Vec<bool>,
    next: usize,
    free: usize,
}

impl SessionIds {
    fn allocate(&mut self) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        let n = self.used.len();
        for _ in 0..n {
            let i = self.next;
            self.next = (self.next + 1) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.free -= 1;
                // Session ids start at 1.
                return u16::try_from(i + 1).ok();
            }
        }
        None
    }

    fn release(&mut self, sid: u16) {
        let i = usize::from(sid) - 1;
        if self.used.get(i).copied() == Some(true) {
            self.used[i] = false;
            self.free += 1;
        }
    }
}

impl Hub {
    /// The hub over these upstream sessions.
    pub fn new(ups: Vec<UpHandle>, config: Arc<Config>, metrics: AgentMetrics) -> Self {
        let n = config.miners.max_miners;
        Hub {
            ups,
            config,
            metrics,
            ids: Mutex::new(SessionIds {
                used: vec![false; n],
                next: 0,
                free: n,
            }),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, SessionIds> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves one miner until it leaves, is told to go, or the agent stops.
pub async fn serve(stream: TcpStream, peer: SocketAddr, hub: Arc<Hub>, token: CancellationToken) {
    let Some(sid) = hub.ids().allocate() else {
        tracing::warn!(%peer, "every miner session id is in use; connection refused");
        return;
    };
    let up = hub.ups[usize::from(sid) % hub.ups.len()].clone();
    let (tx, rx) = mpsc::channel(256);
    let mut m = MinerConn {
        sid,
        up,
        tx,
        session: ServerSession::new(
            u32::from(sid).to_be_bytes(),
            MINER_EXTRANONCE2_SIZE,
            DEFAULT_VERSION_MASK,
        ),
        out: Vec::new(),
        registered: false,
        hub: Arc::clone(&hub),
    };
    let why = m.run(stream, rx, token).await;
    tracing::debug!(%peer, sid, %why, "miner left");
    if m.registered {
        hub.metrics.miners.dec();
        let _ = m.up.tx.send(UpCmd::Unregister { sid }).await;
    }
    hub.ids().release(sid);
}

struct MinerConn {
    sid: u16,
    up: UpHandle,
    tx: mpsc::Sender<Down>,
    session: ServerSession,
    out: Vec<u8>,
    registered: bool,
    hub: Arc<Hub>,
}

impl MinerConn {
    async fn run(
        &mut self,
        stream: TcpStream,
        mut rx: mpsc::Receiver<Down>,
        token: CancellationToken,
    ) -> String {
        let c = &self.hub.config.miners;
        let (preauth, idle) = (
            Duration::from_secs(c.preauth_timeout_secs),
            Duration::from_secs(c.idle_timeout_secs),
        );
        let mut framer = LineFramer::new(c.max_line_bytes);
        let (rd, mut wr) = stream.into_split();
        let started = Instant::now();
        let mut last_read = Instant::now();
        loop {
            if !self.out.is_empty() {
                let out = std::mem::take(&mut self.out);
                // A miner that stops reading is dropped, not waited on.
                match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "not reading its answers".into(),
                }
            }
            let deadline = if self.session.state() == State::Authorized {
                last_read + idle
            } else {
                started + preauth
            };
            tokio::select! {
                () = token.cancelled() => return "agent stopping".into(),
                () = tokio::time::sleep_until(deadline.into()) => {
                    return if self.registered { "idle".into() } else { "no authorize in time".into() };
                }
                down = rx.recv() => match down {
                    Some(Down::Line(l)) => self.line(&l),
                    Some(Down::Answer { id, status: s }) => {
                        let r = if status::is_accepted(s) {
                            Response::ok(id)
                        } else {
                            let code = match s {
                                status::JOB_NOT_FOUND_OR_STALE => ErrorCode::JobNotFound,
                                status::DUPLICATE_SHARE => ErrorCode::Duplicate,
                                status::LOW_DIFFICULTY => ErrorCode::LowDifficulty,
                                status::UNAUTHORIZED => ErrorCode::Unauthorized,
                                _ => ErrorCode::Other,
                            };
                            Response::error(id, code, status::message(s))
                        };
                        self.send(r.into());
                    }
                    Some(Down::Reconnect) => {
                        self.registered = false;
                        self.hub.metrics.miners.dec();
                        self.send(Notification::Reconnect { host: None, port: None, wait_secs: None }.into());
                        let out = std::mem::take(&mut self.out);
                        let _ = wr.write_all(&out).await;
                        return "uplink down past the grace".into();
                    }
                    None => return "upstream gone".into(),
                },
                readable = rd.readable() => {
                    if let Err(e) = readable {
                        return e.to_string();
                    }
                    // The buffer lives only for the read: an idle miner's
                    // task holds none.
                    let read = {
                        let mut chunk = [0u8; 2048];
                        rd.try_read(&mut chunk)
                            .inspect(|&n| framer.push(&chunk[..n]))
                    };
                    match read {
                        Ok(0) => return "closed by the miner".into(),
                        Ok(_) => {
                            last_read = Instant::now();
                            loop {
                                match framer.next_frame(false) {
                                    Ok(Some(Frame::Line(line))) => self.on_line(&line).await,
                                    Ok(Some(Frame::Ex(_))) | Ok(None) => break,
                                    Err(e) => {
                                        self.send(Response::error(Id::null(), ErrorCode::Other, e.to_string()).into());
                                        let out = std::mem::take(&mut self.out);
                                        let _ = wr.write_all(&out).await;
                                        return e.to_string();
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return e.to_string(),
                    }
                }
            }
        }
    }

    fn line(&mut self, line: &str) {
        tracing::trace!(sid = self.sid, %line, "to a miner");
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
    }

    fn send(&mut self, m: ServerMessage) {
        self.line(&m.to_line());
    }

    async fn on_line(&mut self, line: &str) {
        tracing::trace!(sid = self.sid, %line, "from a miner");
        let request = match Request::parse(line) {
            Ok(r) => r,
            Err(e) => {
                self.send(Response::error(e.id, ErrorCode::Other, e.error.message).into());
                return;
            }
        };
        match self.session.on_request(request) {
            Step::Reply(messages) => {
                for m in messages {
                    self.send(m);
                }
            }
            Step::Authorize { id, login, .. } => {
                // The farm's account mines; the login names the worker.
                let worker = parse_login(&format!("x.{}", worker_part(&login)))
                    .map(|l| l.worker)
                    .unwrap_or_default();
                self.session.authorized();
                self.send(Response::ok(id).into());
                if !self.registered {
                    self.registered = true;
                    self.hub.metrics.miners.inc();
                    let register = UpCmd::Register {
                        sid: self.sid,
                        client_agent: self.session.user_agent().unwrap_or_default().to_owned(),
                        worker,
                        version_rolling: self.session.version_mask() != 0,
                        tx: self.tx.clone(),
                    };
                    let _ = self.up.tx.send(register).await;
                }
            }
            Step::Submit { id, submit } => match submit_of(&submit, self.sid) {
                Ok(share) => {
                    let _ = self
                        .up
                        .tx
                        .send(UpCmd::Submit {
                            sid: self.sid,
                            id,
                            share,
                        })
                        .await;
                }
                Err((code, why)) => {
                    self.hub.metrics.share("malformed");
                    self.send(Response::error(id, code, why).into());
                }
            },
            // The pool sets each miner's difficulty.
            Step::SuggestDifficulty { id, .. } => self.send(Response::ok(id).into()),
            Step::AgentCapabilities { id, .. } => self.send(
                Response {
                    id,
                    result: Ok(serde_json::json!({ "capabilities": [] })),
                }
                .into(),
            ),
        }
    }
}

/// The worker part of a miner's login (`account.worker` or `worker`).
fn worker_part(login: &str) -> &str {
    login.split_once('.').map_or(login, |(_, w)| w)
}

/// Miner `sid`'s V1 submit as an ex-message share.
fn submit_of(
    s: &sluice_stratum::message::Submit,
    sid: u16,
) -> Result<ExSubmit, (ErrorCode, &'static str)> {
    let job_id = s
        .job_id
        .parse::<u8>()
        .map_err(|_| (ErrorCode::JobNotFound, "Job not found"))?;
    let en2: [u8; 4] = s
        .extranonce2
        .as_slice()
        .try_into()
        .map_err(|_| (ErrorCode::Other, "extranonce2 must be 4 bytes"))?;
    Ok(ExSubmit {
        job_id,
        session_id: sid,
        extranonce2: u32::from_be_bytes(en2),
        nonce: s.nonce,
        time: Some(s.ntime),
        version_mask: s.version_bits,
    })
}
