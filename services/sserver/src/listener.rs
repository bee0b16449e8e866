//! The accept loop apart from the sessions it starts: listening sockets,
//! the accept pace and the connection cap, per-address admission, the
//! error line a refused miner is told, and the PROXY header a balancer
//! puts first. Each admitted connection goes to its protocol's handler
//! (`connection` for V1 and TLS, `sv2`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_service::Context;
use sluice_stratum::{ErrorCode, Id, Response, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::shared::Shared;
use crate::{connection, limits, sv2};

/// Connections the kernel completes and holds for the accept loop (it
/// caps this at `net.core.somaxconn`, 4,096 on Debian 12). Thousands of
/// miners reconnecting at once (a restart, a pool switching back) overflow
/// the 1,024 of a default listener, and each dropped handshake waits a
/// second before its retry.
const LISTEN_BACKLOG: u32 = 8192;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (and SO_REUSEADDR,
/// as std sets it, for a restart while old connections linger).
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections accepted before the accept loop lets other tasks run.
const ACCEPTS_PER_TURN: u32 = 8;

/// What a listener speaks.
#[derive(Clone)]
pub(crate) enum Port {
    V1,
    Tls(TlsAcceptor),
    Sv2(Arc<sv2::Sv2Server>),
}

/// Accepts connections until the shared drain token is cancelled. Every
/// listener shares the connection cap.
pub(crate) async fn accept(
    listener: &TcpListener,
    port: &Port,
    shared: &Arc<Shared>,
    semaphore: &Arc<Semaphore>,
    ctx: &Context,
) {
    let tracker = ctx.shutdown.tracker();
    let c = &shared.config;
    let mut pace = limits::Pace::new(c.accepts_per_sec, c.accept_burst, Instant::now());
    let mut since_yield = 0u32;
    loop {
        // In a connect storm the listener is always ready: without a turn
        // given up, a poll of this loop queues a hundred new sessions ahead
        // of the miners already mining (tokio's budget is 128 operations),
        // and their answers wait behind them.
        since_yield += 1;
        if since_yield == ACCEPTS_PER_TURN {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        let wait = pace.turn(Instant::now());
        if !wait.is_zero() {
            tokio::select! {
                () = shared.drain.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let accepted = tokio::select! {
            () = shared.drain.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // Out of file descriptors and the like: pause, do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(semaphore).try_acquire_owned() else {
            shared.metrics.connections_refused.inc();
            tracing::debug!(%peer, "connection cap reached; refused");
            if matches!(port, Port::V1) {
                refuse(
                    stream,
                    "refused: this server is full; retry in a few seconds",
                    shared,
                );
            }
            continue;
        };
        let shared = Arc::clone(shared);
        let port = port.clone();
        tracker.spawn(async move {
            match port {
                Port::V1 => connection::serve(stream, peer, shared).await,
                Port::Tls(acceptor) => connection::serve_tls(stream, peer, shared, acceptor).await,
                Port::Sv2(server) => sv2::serve(stream, peer, shared, server).await,
            }
            drop(permit);
        });
    }
}

/// Per-IP rate limits and bans; a refusal comes with what to tell the miner.
pub(crate) fn admitted(shared: &Shared, peer: SocketAddr) -> Result<(), String> {
    let now = Instant::now();
    shared.admission.admit(peer.ip(), now).map_err(|refusal| {
        shared.metrics.connections_refused.inc();
        tracing::debug!(%peer, ?refusal, "connection refused");
        refusal.message(now)
    })
}

/// Refused connections lingering at once to deliver their error line; more
/// are closed at once (a connect storm must not hold sockets open).
pub(crate) const MAX_LINGERING: usize = 1024;

/// How long a refused connection waits for the miner to close first.
const LINGER: Duration = Duration::from_secs(2);

/// Tells a refused miner why, in one JSON-RPC error line (`"id": null`), and
/// closes: its log says what happened instead of showing a silent reset.
/// The write never waits (a fresh socket's buffer is empty). The close waits
/// up to [`LINGER`] for the miner's own close, reading and discarding what
/// it sent: closing a socket with unread input sends a reset, which can
/// destroy the line before the miner reads it.
pub(crate) fn refuse(stream: TcpStream, message: &str, shared: &Shared) {
    let mut line =
        ServerMessage::from(Response::error(Id::null(), ErrorCode::Other, message)).to_line();
    line.push('\n');
    if stream.try_write(line.as_bytes()).is_err() {
        return;
    }
    let Ok(permit) = Arc::clone(&shared.lingering).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 1024];
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
        drop(permit);
    });
}

/// Reads the PROXY header: the real source (if the balancer gave one) and
/// the bytes after the header, which belong to the miner's protocol.
pub(crate) async fn read_proxy_header(
    rd: &mut OwnedReadHalf,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(128);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match crate::proxy::parse(&buf) {
            Ok(Some(h)) => {
                return Ok((h.source, buf.split_off(h.len)));
            }
            Ok(None) if buf.len() < 536 => {}
            Ok(None) => return Err("PROXY header too long".into()),
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout_at(deadline, rd.read(&mut chunk))
            .await
            .map_err(|_| "timed out waiting for the PROXY header".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the PROXY header".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The client's address as recorded in shares (IPv4-mapped IPv6 unmapped).
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
