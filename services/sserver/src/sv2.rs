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
//! once. Extended channels roll the V1 extranonce2; standard channels have a
//! fixed extranonce2, random per channel, and are in the connection's group
//! (one extended job for all of them: see `group`), or, on a device that
//! requires standard jobs, get one merkle root per job computed here.
//! Accepted shares are answered in batches (one `SubmitShares.Success` per
//! channel for all a read brought, after the broker acknowledged them, as V1
//! answers wait); rejections at once with the spec's error codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice_sv2::AuthorityKeys;
use sluice_sv2::noise::Responder;
use sluice_sv2::stream::{self, StreamError, unix_now};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::limits::RejectWindow;
use crate::listener::{admitted, canonical_ip, read_proxy_header};
use crate::shared::Shared;
use session::Session;

mod channels;
mod group;
mod session;

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

impl Sv2Config {
    /// The port on `listen` with the key pair in `authority_key_file`, the
    /// certificates' times as the config file's defaults.
    pub fn new(listen: SocketAddr, authority_key_file: PathBuf) -> Self {
        Sv2Config {
            listen,
            authority_key_file,
            cert_backdate_secs: default_backdate(),
            cert_validity_secs: default_validity(),
        }
    }
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
/// The error codes of the spec (mining protocol §5.3, common messages §3.6).
mod code {
    pub(super) const UNSUPPORTED_FEATURE_FLAGS: &str = "unsupported-feature-flags";
    pub(super) const UNSUPPORTED_PROTOCOL: &str = "unsupported-protocol";
    pub(super) const PROTOCOL_VERSION_MISMATCH: &str = "protocol-version-mismatch";
    pub(super) const UNKNOWN_USER: &str = "unknown-user";
    /// Ours, not the spec's: a solo address of another network, or one no
    /// output should pay.
    pub(super) const INVALID_SOLO_ADDRESS: &str = "invalid-solo-address";
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
        group: None,
        started: Instant::now(),
        last_read: Instant::now(),
        rejects: RejectWindow::new(max_rejects, Duration::from_secs(60)),
        unacked: Vec::new(),
        close: false,
    };
    // A connection's lines carry its peer (its channels' logins are in
    // their own lines).
    let span = tracing::info_span!("sv2", %peer);
    let end = session.run(reader).instrument(span.clone()).await;
    span.in_scope(|| session.closed(&end));
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
