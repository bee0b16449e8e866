//! One SV2 connection after its handshake: frames read and answered, the
//! setup, the session's deadlines and drain; its channels in `channels.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_sv2::Message;
use sluice_sv2::codec::{
    PROTOCOL_MINING, REQUIRES_FIXED_VERSION, REQUIRES_VERSION_ROLLING, REQUIRES_WORK_SELECTION,
    SetupConnection,
};
use sluice_sv2::stream::{self, FrameReader, FrameWriter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::channels::{Kind, Sv2Channel};
use super::{End, code};
use crate::jobs::Board;
use crate::limits::RejectWindow;
use crate::shared::Shared;

pub(super) struct Session<W> {
    pub(super) shared: Arc<Shared>,
    pub(super) board: watch::Receiver<Arc<Board>>,
    pub(super) peer: SocketAddr,
    pub(super) out: FrameWriter<W>,
    /// The client's SetupConnection, once accepted.
    pub(super) setup: Option<SetupConnection>,
    pub(super) channels: HashMap<u32, Sv2Channel>,
    pub(super) next_channel_id: u32,
    /// The group of its standard channels, once one is open (and the
    /// device takes group jobs).
    pub(super) group: Option<super::group::Group>,
    pub(super) started: Instant,
    pub(super) last_read: Instant,
    pub(super) rejects: RejectWindow,
    pub(super) unacked: Vec<crate::spool::Unacked>,
    pub(super) close: bool,
}

impl<W: AsyncWrite + Unpin> Session<W> {
    pub(super) async fn run<R: AsyncRead + Unpin>(&mut self, mut rd: FrameReader<R>) -> End {
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
                    if self.channels.values().any(|ch| ch.channel.vardiff.may_be_fast()) {
                        wake = wake.min(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    timer.as_mut().reset(wake);
                }
                changed = self.board.changed(), if !self.channels.is_empty() => {
                    if changed.is_err() {
                        return End::Drained;
                    }
                    self.notify_group();
                    let ids: Vec<u32> = self.channels.keys().copied().collect();
                    for id in ids {
                        if !self.in_group(id) {
                            self.notify(id, false);
                        }
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
                .map(|ch| ch.channel.next_wake(self.started, c.notify_interval))
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
        let clock = self.started.elapsed().as_secs_f64();
        let interval = c.notify_interval;
        let ids: Vec<u32> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            if ch.channel.due(clock, interval) {
                self.notify(id, true);
                if let Some(ch) = self.channels.get_mut(&id) {
                    ch.channel.sent.waited(Instant::now());
                }
            }
        }
        None
    }

    pub(super) fn queue(&mut self, m: &Message) {
        if let Err(error) = self.out.queue(m) {
            tracing::warn!(%error, "sv2: could not seal a frame; closing");
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
                tracing::debug!(extension_type, msg_type, "sv2: unknown message skipped");
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
            Message::RequestExtensions {
                request_id,
                requested,
            } => {
                // No extension is offered: the spec's answer to a request
                // none of whose extensions the server supports is the
                // error naming them (an empty request is granted nothing).
                self.queue(&if requested.is_empty() {
                    Message::RequestExtensionsSuccess {
                        request_id,
                        supported: Vec::new(),
                    }
                } else {
                    Message::RequestExtensionsError {
                        request_id,
                        unsupported: requested,
                        required: Vec::new(),
                    }
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
        let rolls = self.shared.config.version_mask != 0;
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
        } else if setup.flags & REQUIRES_VERSION_ROLLING != 0 && !rolls {
            // The pool's version mask is empty: nothing may be rolled.
            Some(refuse(
                REQUIRES_VERSION_ROLLING,
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
        tracing::debug!(vendor = %setup.vendor, hardware = %setup.hardware_version, "sv2 connection set up");
        // Standard and extended channels offered; version rolling as the
        // pool's mask allows (an empty mask: the version is fixed).
        let flags = if rolls { 0 } else { REQUIRES_FIXED_VERSION };
        self.queue(&Message::SetupConnectionSuccess {
            used_version: 2,
            flags,
        });
        self.setup = Some(setup);
        Ok(())
    }

    pub(super) fn closed(&mut self, end: &End) {
        tracing::debug!(%end, channels = self.channels.len(), "sv2 connection closed");
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
