//! Stratum V2 on its own port: the same jobs, the same share judge, the same
//! Share and SolvedShare records as V1, over Noise-encrypted binary frames.
//!
//! A connection is: PROXY header (when configured), admission (rate limits
//! and bans, as V1), the Noise NX handshake signed by the pool's authority
//! key, `SetupConnection` (mining protocol, version 2; work selection is
//! refused), then any number of standard and extended channels. Each channel
//! is what a V1 session is: a user identity authorised like
//! `mining.authorize`, an extranonce prefix from the same session id space as
//! V1 (so no V1 session and no channel ever do the same work), its own
//! vardiff sent as `SetTarget`, and the board's jobs: a new tip as a future
//! job plus `SetNewPrevHash`, a refresh on the same tip as a job active at
//! once. Extended channels roll the V1 extranonce2; standard channels get one
//! merkle root per job computed here with a fixed extranonce2, random per
//! channel.
//! Accepted shares are answered in batches (one `SubmitShares.Success` per
//! channel for all a read brought, after the broker acknowledged them, as V1
//! answers wait); rejections at once with the spec's error codes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use serde::Deserialize;
use sluice_core::record::{EventKind, MinerIdentity, MiningProtocol};
use sluice_core::worker::{parse_login, worker_id};
use sluice_sv2::codec::{
    ExtendedJob, OpenChannel, PROTOCOL_MINING, REQUIRES_WORK_SELECTION, SetupConnection,
    SubmitShares,
};
use sluice_sv2::noise::Responder;
use sluice_sv2::stream::{self, FrameReader, FrameWriter, StreamError, unix_now};
use sluice_sv2::{AuthorityKeys, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::channel::Source;
use crate::ids::SessionIndex;
use crate::jobs::{Board, now_secs};
use crate::judge::{Rejection, SentJob, ShareWork, judge, target_of};
use crate::limits::RejectWindow;
use crate::listener::{admitted, canonical_ip, read_proxy_header};
use crate::shared::{Miner, Shared};
use crate::users::AuthError;
use crate::vardiff::Vardiff;

/// `[sv2]`: the Stratum V2 listener (none by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sv2Config {
    /// Where SV2 miners connect.
    pub listen: SocketAddr,
    /// The authority key pair (`sluicectl sv2-keygen` writes one).
    pub authority_key_file: PathBuf,
    /// Certificates are valid from this long before each handshake, so a
    /// miner whose clock runs behind is not refused.
    #[serde(default = "default_backdate")]
    pub cert_backdate_secs: u32,
    /// ... until this long after it.
    #[serde(default = "default_validity")]
    pub cert_validity_secs: u32,
}

fn default_backdate() -> u32 {
    3600
}
fn default_validity() -> u32 {
    86_400
}

/// What every SV2 connection shares besides [`Shared`].
pub struct Sv2Server {
    keys: AuthorityKeys,
    backdate: u32,
    validity: u32,
}

impl std::fmt::Debug for Sv2Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sv2Server {{ authority: {} }}", self.keys.public())
    }
}

impl Sv2Server {
    /// Loads the key pair named by `config`.
    pub fn load(config: &Sv2Config) -> anyhow::Result<Sv2Server> {
        let keys = AuthorityKeys::load(&config.authority_key_file).map_err(|e| {
            anyhow::anyhow!(
                "sv2: {e} (make a key pair with `sluicectl sv2-keygen --out {}`)",
                config.authority_key_file.display()
            )
        })?;
        Ok(Sv2Server {
            keys,
            backdate: config.cert_backdate_secs,
            validity: config.cert_validity_secs,
        })
    }

    /// The public key miners are configured with.
    pub fn authority(&self) -> sluice_sv2::AuthorityPublicKey {
        self.keys.public()
    }
}

/// The largest frame a miner may send: its largest message
/// (`SetupConnection`, five strings) is under 1.3 KiB.
const MAX_CLIENT_PAYLOAD: usize = 4096;
/// Channels one connection may open (a translator opens one per miner
/// when it does not aggregate them).
const MAX_CHANNELS: usize = 4096;
/// Jobs each channel remembers.
const SENT_JOBS: usize = 8;
/// The error codes of the spec (mining protocol §5.3, common messages §3.6).
mod code {
    pub(super) const UNSUPPORTED_FEATURE_FLAGS: &str = "unsupported-feature-flags";
    pub(super) const UNSUPPORTED_PROTOCOL: &str = "unsupported-protocol";
    pub(super) const PROTOCOL_VERSION_MISMATCH: &str = "protocol-version-mismatch";
    pub(super) const UNKNOWN_USER: &str = "unknown-user";
    pub(super) const MAX_TARGET_OUT_OF_RANGE: &str = "max-target-out-of-range";
    pub(super) const INVALID_CHANNEL_ID: &str = "invalid-channel-id";
    pub(super) const INVALID_JOB_ID: &str = "invalid-job-id";
    pub(super) const INVALID_SHARE: &str = "invalid-share";
    pub(super) const STALE_SHARE: &str = "stale-share";
    pub(super) const DIFFICULTY_TOO_LOW: &str = "difficulty-too-low";
    pub(super) const DUPLICATE_SHARE: &str = "duplicate-share";
    pub(super) const BAD_EXTRANONCE_SIZE: &str = "bad-extranonce-size";
    pub(super) const VERSION_ROLLING_NOT_ALLOWED: &str = "version-rolling-not-allowed";
    pub(super) const MIN_EXTRANONCE_TOO_LARGE: &str = "min-extranonce-size-too-large";
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

/// Serves one accepted SV2 socket to the end.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    server: Arc<Sv2Server>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let peer = SocketAddr::new(canonical_ip(peer.ip()), peer.port());
    let (peer, early) = if shared.config.proxy_protocol {
        match read_proxy_header(&mut rd, shared.config.preauth_timeout).await {
            Ok((real, rest)) => (
                real.map_or(peer, |r| SocketAddr::new(canonical_ip(r.ip()), r.port())),
                rest,
            ),
            Err(error) => {
                tracing::debug!(%peer, %error, "sv2 connection without a valid PROXY header closed");
                return;
            }
        }
    } else {
        (peer, Vec::new())
    };
    // Refused before the handshake, silently: SV2 has nothing to say before it.
    if admitted(&shared, peer).is_err() {
        return;
    }
    let rd = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(early), rd);
    let responder = match Responder::new(&server.keys, server.backdate, server.validity) {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(%error, "sv2: cannot make a handshake");
            return;
        }
    };
    let valid_from = unix_now().saturating_sub(server.backdate);
    let handshake = stream::accept(
        rd,
        wr,
        responder,
        valid_from,
        shared.config.preauth_timeout,
        MAX_CLIENT_PAYLOAD,
    );
    let (reader, writer) = match Box::pin(handshake).await {
        Ok(halves) => halves,
        Err(error) => {
            shared.metrics.sv2_handshake_failures.inc();
            tracing::debug!(%peer, %error, "sv2 handshake failed");
            return;
        }
    };
    shared.metrics.connections.inc();
    shared.metrics.connections_total.inc();
    let max_rejects = shared.config.max_rejects_per_minute;
    let mut session = Session {
        board: shared.board.clone(),
        shared,
        peer,
        out: writer,
        setup: None,
        channels: HashMap::new(),
        next_channel_id: 1,
        started: Instant::now(),
        last_read: Instant::now(),
        rejects: RejectWindow::new(max_rejects, Duration::from_secs(60)),
        unacked: Vec::new(),
        close: false,
    };
    let end = session.run(reader).await;
    session.closed(&end);
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Eof,
    Stream(StreamError),
    Protocol(String),
    Timeout(&'static str),
    Banned,
    Drained,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => f.write_str("closed by the miner"),
            End::Stream(e) => write!(f, "{e}"),
            End::Protocol(why) => write!(f, "protocol violation: {why}"),
            End::Timeout(what) => write!(f, "{what} timeout"),
            End::Banned => f.write_str("banned"),
            End::Drained => f.write_str("drained"),
        }
    }
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Eof => "miner",
            End::Stream(StreamError::Io(_)) => "io",
            End::Stream(_) | End::Protocol(_) => "protocol",
            End::Timeout("setup") => "authorize_timeout",
            End::Timeout("write") => "write_timeout",
            End::Timeout(_) => "idle_timeout",
            End::Banned => "banned",
            End::Drained => "drained",
        }
    }
}

/// Standard or extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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

/// One open channel: what a V1 session is.
struct Channel {
    id: u32,
    kind: Kind,
    /// Holds the extranonce prefix's session id.
    _index: SessionIndex,
    extranonce1: [u8; 4],
    /// A standard channel's extranonce2 (the pool fixes it; empty for an
    /// extended channel, whose device rolls its own).
    extranonce2: Vec<u8>,
    miner: Miner,
    vardiff: Vardiff,
    /// Jobs sent, by their SV2 job id.
    sent: VecDeque<(u32, SentJob)>,
    next_job_id: u32,
    sent_difficulty: Option<f64>,
    last_tip: Option<bitcoin::BlockHash>,
    last_notify: Instant,
    /// Accepted since the last SubmitShares.Success.
    batch: Batch,
}

#[derive(Debug, Default, Clone, Copy)]
struct Batch {
    count: u32,
    sum: f64,
    last_sequence: u32,
}

struct Session<W> {
    shared: Arc<Shared>,
    board: watch::Receiver<Arc<Board>>,
    peer: SocketAddr,
    out: FrameWriter<W>,
    /// The client's SetupConnection, once accepted.
    setup: Option<SetupConnection>,
    channels: HashMap<u32, Channel>,
    next_channel_id: u32,
    started: Instant,
    last_read: Instant,
    rejects: RejectWindow,
    unacked: Vec<oneshot::Receiver<()>>,
    close: bool,
}

impl<W: AsyncWrite + Unpin> Session<W> {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut rd: FrameReader<R>) -> End {
        let drain = self.shared.drain.clone().cancelled_owned();
        tokio::pin!(drain);
        let mut drain_at: Option<tokio::time::Instant> = None;
        // One timer at the session's next deadline, as V1 sessions have.
        let timer = tokio::time::sleep_until(self.next_wake());
        tokio::pin!(timer);
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if self.close {
                return End::Banned;
            }
            tokio::select! {
                biased;
                () = &mut drain, if drain_at.is_none() => {
                    // Reconnect to the same address (empty host, port 0), spread out.
                    self.queue(&Message::Reconnect { new_host: String::new(), new_port: 0 });
                    let spread = self.shared.config.drain_spread;
                    let offset = spread.mul_f64(f64::from(self.peer.port() % 1000) / 1000.0);
                    drain_at = Some(tokio::time::Instant::now() + offset);
                }
                () = async { if let Some(at) = drain_at { tokio::time::sleep_until(at).await } }, if drain_at.is_some() => {
                    return End::Drained;
                }
                frame = rd.next() => {
                    let mut frame = match frame {
                        Ok(Some(f)) => f,
                        Ok(None) => return End::Eof,
                        Err(e) => return End::Stream(e),
                    };
                    self.last_read = Instant::now();
                    // Everything this read brought, then one answer per channel.
                    loop {
                        if let Err(end) = Box::pin(self.on_frame(frame)).await {
                            let _ = self.flush().await;
                            return end;
                        }
                        match rd.buffered() {
                            Ok(Some(next)) => frame = next,
                            Ok(None) => break,
                            Err(e) => return End::Stream(e),
                        }
                    }
                    self.successes();
                    // A channel with enough shares for an early retarget is
                    // looked at within a second, on the timer, between reads
                    // (as V1 sessions are): never in the middle of a read's shares.
                    let mut wake = self.next_wake();
                    if self.channels.values().any(|ch| ch.vardiff.may_be_fast()) {
                        wake = wake.min(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    timer.as_mut().reset(wake);
                }
                changed = self.board.changed(), if !self.channels.is_empty() => {
                    if changed.is_err() {
                        return End::Drained;
                    }
                    let ids: Vec<u32> = self.channels.keys().copied().collect();
                    for id in ids {
                        self.notify(id, false);
                    }
                }
                () = &mut timer => {
                    if let Some(end) = self.on_deadline() {
                        return end;
                    }
                    timer.as_mut().reset(self.next_wake());
                }
            }
        }
    }

    /// The first deadline: the setup timeout until a channel opens; then
    /// the idle timeout and each channel's periodic notify and vardiff window.
    fn next_wake(&self) -> tokio::time::Instant {
        let c = &self.shared.config;
        let at = if self.channels.is_empty() && self.next_channel_id == 1 {
            self.started + c.preauth_timeout
        } else {
            self.channels
                .values()
                .map(|ch| {
                    let window =
                        self.started + Duration::from_secs_f64(ch.vardiff.window_end().max(0.0));
                    window.min(ch.last_notify + c.notify_interval)
                })
                .fold(self.last_read + c.idle_timeout, Instant::min)
        };
        let at = at + Duration::from_millis(1);
        tokio::time::Instant::from_std(at.max(Instant::now() + Duration::from_millis(10)))
    }

    fn on_deadline(&mut self) -> Option<End> {
        let c = &self.shared.config;
        if self.channels.is_empty() && self.next_channel_id == 1 {
            if self.started.elapsed() >= c.preauth_timeout {
                return Some(End::Timeout("setup"));
            }
            return None;
        }
        if self.last_read.elapsed() >= c.idle_timeout {
            return Some(End::Timeout("idle"));
        }
        let now = self.started.elapsed().as_secs_f64();
        let interval = c.notify_interval;
        let ids: Vec<u32> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            let retarget = ch.vardiff.retarget(now).is_some();
            if retarget || ch.last_notify.elapsed() >= interval {
                self.notify(id, true);
                if let Some(ch) = self.channels.get_mut(&id) {
                    ch.last_notify = Instant::now();
                }
            }
        }
        None
    }

    fn queue(&mut self, m: &Message) {
        if let Err(error) = self.out.queue(m) {
            tracing::warn!(peer = %self.peer, %error, "sv2: could not seal a frame; closing");
            self.close = true;
        }
    }

    /// Waits for the broker's acknowledgement of the shares answered (as V1
    /// does), then writes everything queued, within the write timeout.
    async fn flush(&mut self) -> Result<(), End> {
        crate::shared::settle(&mut self.unacked, &self.shared).await;
        if self.out.pending() == 0 {
            return Ok(());
        }
        match tokio::time::timeout(self.shared.config.write_timeout, self.out.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Stream(e)),
            Err(_) => Err(End::Timeout("write")),
        }
    }

    async fn on_frame(&mut self, frame: stream::Frame) -> Result<(), End> {
        let message = match frame.decode() {
            Ok(m) => m,
            Err(sluice_sv2::DecodeError::Unknown {
                extension_type,
                msg_type,
            }) => {
                // Extensions and messages of other subprotocols are not ours:
                // counted and skipped, as the spec lets a receiver do.
                self.shared.metrics.bad_lines.inc();
                tracing::debug!(peer = %self.peer, extension_type, msg_type, "sv2: unknown message skipped");
                return Ok(());
            }
            Err(e) => {
                self.shared.metrics.bad_lines.inc();
                return Err(End::Protocol(e.to_string()));
            }
        };
        if self.setup.is_none() {
            let Message::SetupConnection(setup) = message else {
                return Err(End::Protocol(format!(
                    "{} before SetupConnection",
                    message.name()
                )));
            };
            return self.on_setup(setup);
        }
        match message {
            Message::RequestExtensions { request_id, .. } => {
                self.queue(&Message::RequestExtensionsSuccess {
                    request_id,
                    supported: Vec::new(),
                });
            }
            Message::OpenStandardMiningChannel(open) => {
                self.open_channel(open, Kind::Standard, 0).await;
            }
            Message::OpenExtendedMiningChannel {
                open,
                min_extranonce_size,
            } => {
                self.open_channel(open, Kind::Extended, min_extranonce_size)
                    .await;
            }
            Message::UpdateChannel {
                channel_id,
                maximum_target,
                ..
            } => self.update_channel(channel_id, &maximum_target),
            Message::CloseChannel { channel_id, .. } => {
                if let Some(ch) = self.channels.remove(&channel_id) {
                    self.channel_closed(&ch);
                }
            }
            Message::SubmitSharesStandard(share) => self.submit(share, None).await,
            Message::SubmitSharesExtended { share, extranonce } => {
                self.submit(share, Some(extranonce)).await;
            }
            other => {
                return Err(End::Protocol(format!(
                    "{} is the pool's to send, not the miner's",
                    other.name()
                )));
            }
        }
        Ok(())
    }

    fn on_setup(&mut self, setup: SetupConnection) -> Result<(), End> {
        let refuse = |flags: u32, code: &str| Message::SetupConnectionError {
            flags,
            error_code: code.to_owned(),
        };
        let error = if setup.protocol != PROTOCOL_MINING {
            Some(refuse(0, code::UNSUPPORTED_PROTOCOL))
        } else if !(setup.min_version..=setup.max_version).contains(&2) {
            Some(refuse(0, code::PROTOCOL_VERSION_MISMATCH))
        } else if setup.flags & REQUIRES_WORK_SELECTION != 0 {
            // Job declaration is not offered: the pool selects the work.
            Some(refuse(
                REQUIRES_WORK_SELECTION,
                code::UNSUPPORTED_FEATURE_FLAGS,
            ))
        } else {
            None
        };
        if let Some(error) = error {
            let why = format!("SetupConnection refused: {error:?}");
            self.queue(&error);
            return Err(End::Protocol(why));
        }
        tracing::debug!(peer = %self.peer, vendor = %setup.vendor, hardware = %setup.hardware_version, "sv2 connection set up");
        // No flags: version rolling allowed, standard and extended channels offered.
        self.queue(&Message::SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        });
        self.setup = Some(setup);
        Ok(())
    }

    async fn open_channel(&mut self, open: OpenChannel, kind: Kind, min_extranonce_size: u16) {
        let request_id = open.request_id;
        match self.try_open(open, kind, min_extranonce_size).await {
            Ok(id) => self.notify(id, true),
            Err(code) => {
                tracing::debug!(peer = %self.peer, code, "sv2 channel refused");
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
        let user_id = match shared.users.authorize(&login.user).await {
            Ok(id) => id,
            Err(AuthError::Unavailable) => return Err("user-database-unavailable"),
            Err(_) => return Err(code::UNKNOWN_USER),
        };
        // The easiest target the device takes is the channel's lowest
        // difficulty; out of range when even the pool's hardest is easier.
        let floor =
            floor_of(&open.max_target, c.vardiff.max).ok_or(code::MAX_TARGET_OUT_OF_RANGE)?;
        let index = shared.ids.allocate().ok_or("no-session-ids-left")?;
        let idx = index.get();
        let extranonce1 = [
            shared.server_id,
            (idx >> 16) as u8,
            (idx >> 8) as u8,
            idx as u8,
        ];
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
        let id = self.next_channel_id;
        self.next_channel_id = self.next_channel_id.wrapping_add(1).max(1);
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
                group_channel_id: 0,
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
        let miner = Miner {
            user_id,
            worker_id: worker_id(&login.worker),
            user: login.user,
            worker: login.worker,
        };
        let ch = Channel {
            id,
            kind,
            _index: index,
            extranonce1,
            extranonce2,
            miner,
            vardiff,
            sent: VecDeque::new(),
            next_job_id: 1,
            // Sent with the opening: no SetTarget before the first job.
            sent_difficulty: None,
            last_tip: None,
            last_notify: Instant::now(),
            batch: Batch::default(),
        };
        self.shared
            .event(EventKind::MinerConnected(self.identity(&ch)));
        shared.metrics.sv2_channels.inc();
        let current = ch.vardiff.current();
        self.channels.insert(id, ch);
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.sent_difficulty = Some(current);
        }
        Ok(id)
    }

    fn update_channel(&mut self, channel_id: u32, maximum_target: &sluice_sv2::codec::U256) {
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
        ch.vardiff
            .set_floor(floor, self.started.elapsed().as_secs_f64());
        // A smaller maximum target than the current one gets a SetTarget.
        self.notify(channel_id, false);
    }

    /// Sends channel `id` the board's newest job (a future job and
    /// `SetNewPrevHash` when the tip moved) and its target when it changed.
    fn notify(&mut self, id: u32, force: bool) {
        let Some(job) = self.board.borrow_and_update().latest().cloned() else {
            return;
        };
        let mask_rolls = true;
        let mut out = Vec::new();
        {
            let Some(ch) = self.channels.get_mut(&id) else {
                return;
            };
            let difficulty = ch.vardiff.current();
            let already = ch
                .sent
                .back()
                .is_some_and(|(_, s)| Arc::ptr_eq(&s.job, &job));
            if already && !force && ch.sent_difficulty == Some(difficulty) {
                return;
            }
            if ch.sent_difficulty != Some(difficulty) {
                out.push(Message::SetTarget {
                    channel_id: id,
                    maximum_target: sluice_sv2::target_bytes(target_of(difficulty)),
                });
                ch.sent_difficulty = Some(difficulty);
                if already && let Some((_, s)) = ch.sent.back_mut() {
                    s.retarget(difficulty, Instant::now());
                }
            }
            ch.last_notify = Instant::now();
            if !already {
                let job_id = ch.next_job_id;
                ch.next_job_id = ch.next_job_id.wrapping_add(1);
                let tip = job.job.prev_blockhash;
                let tip_moved = ch.last_tip != Some(tip);
                ch.last_tip = Some(tip);
                let min_ntime = (!tip_moved).then_some(job.job.time);
                let version = job.job.version.to_consensus() as u32;
                out.push(match ch.kind {
                    Kind::Extended => Message::NewExtendedMiningJob(ExtendedJob {
                        channel_id: id,
                        job_id,
                        min_ntime,
                        version,
                        version_rolling_allowed: mask_rolls,
                        merkle_path: job
                            .job
                            .merkle_branch
                            .iter()
                            .map(|n| n.to_byte_array())
                            .collect(),
                        coinbase_tx_prefix: job.work.coinbase1.clone(),
                        coinbase_tx_suffix: job.work.coinbase2.clone(),
                    }),
                    Kind::Standard => {
                        let txid = job.work.coinbase_txid(&ch.extranonce1, &ch.extranonce2);
                        let root = sluice_core::merkle::merkle_root(txid, &job.job.merkle_branch);
                        Message::NewMiningJob {
                            channel_id: id,
                            job_id,
                            min_ntime,
                            version,
                            merkle_root: root.to_byte_array(),
                        }
                    }
                });
                if tip_moved {
                    out.push(Message::SetNewPrevHash {
                        channel_id: id,
                        job_id,
                        prev_hash: tip.to_byte_array(),
                        min_ntime: job.job.time,
                        nbits: job.job.bits.to_consensus(),
                    });
                }
                if ch.sent.len() == SENT_JOBS {
                    ch.sent.pop_front();
                }
                ch.sent
                    .push_back((job_id, SentJob::new(Arc::clone(&job), difficulty)));
            }
        }
        for m in &out {
            self.queue(m);
        }
    }

    async fn submit(&mut self, share: SubmitShares, extranonce: Option<Vec<u8>>) {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let seq = share.sequence_number;
        let channel_id = share.channel_id;
        let refuse = |code: &str| Message::SubmitSharesError {
            channel_id,
            sequence_number: seq,
            error_code: code.to_owned(),
        };
        let board = Arc::clone(&self.board.borrow());
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
        let Some(pos) = ch.sent.iter().position(|(id, _)| *id == share.job_id) else {
            metrics.share("job_not_found");
            self.queue(&refuse(code::INVALID_JOB_ID));
            return;
        };
        let job_version = ch.sent[pos].1.job.job.version.to_consensus() as u32;
        if (share.version ^ job_version) & !mask != 0 {
            metrics.share("bad_version_bits");
            self.queue(&refuse(code::VERSION_ROLLING_NOT_ALLOWED));
            self.count_reject();
            return;
        }
        let extranonce1 = ch.extranonce1;
        let work = ShareWork {
            extranonce1: &extranonce1,
            extranonce2: &en2,
            ntime: share.ntime,
            nonce: share.nonce,
            version_bits: Some(share.version & mask),
        };
        let judgement = judge(
            &board,
            &mut ch.sent[pos].1,
            &work,
            mask,
            Instant::now(),
            now_secs(),
        );
        let from = Source {
            miner: &ch.miner,
            peer: self.peer.ip(),
            protocol: MiningProtocol::StratumV2,
        };
        let recorded = shared.account(&judgement, &work, Some(&mut ch.vardiff), Some(from));
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
        if self.rejects.reject(Instant::now()) {
            let banned = self.shared.admission.ban(self.peer.ip(), Instant::now());
            if banned {
                self.shared.metrics.bans.inc();
            }
            tracing::warn!(peer = %self.peer, banned, "sv2: too many rejected shares; connection closed");
            self.close = true;
        }
    }

    /// One SubmitShares.Success per channel for the shares accepted since the last.
    fn successes(&mut self) {
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

    fn identity(&self, ch: &Channel) -> MinerIdentity {
        let agent = self
            .setup
            .as_ref()
            .map(|s| format!("{} {} (sv2)", s.vendor, s.hardware_version))
            .unwrap_or_default();
        MinerIdentity {
            user_id: ch.miner.user_id,
            user_name: ch.miner.user.clone(),
            worker_id: ch.miner.worker_id,
            worker_name: ch.miner.worker.clone(),
            server_id: self.shared.server_id,
            extranonce1: u32::from_be_bytes(ch.extranonce1),
            client_ip: self.peer.ip(),
            miner_agent: agent,
        }
    }

    fn channel_closed(&self, ch: &Channel) {
        self.shared.metrics.sv2_channels.dec();
        self.shared
            .event(EventKind::MinerDisconnected(self.identity(ch)));
    }

    fn closed(&mut self, end: &End) {
        tracing::debug!(peer = %self.peer, %end, channels = self.channels.len(), "sv2 connection closed");
        self.shared.metrics.connections.dec();
        self.shared
            .metrics
            .closed
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: end.reason(),
            })
            .inc();
        for (_, ch) in std::mem::take(&mut self.channels) {
            self.channel_closed(&ch);
        }
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
