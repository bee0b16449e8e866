//! The ZMQ `hashblock` subscriber of one node.
//!
//! ZMQ SUB sockets can go silently dead (a node restart behind a NAT, a
//! dropped TCP session that libzmq-style reconnects never notice). The node
//! loop tells this task to reconnect when polling finds a tip that ZMQ did
//! not announce; socket errors reconnect with backoff too.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use bitcoin::hashes::Hash;
use sluice_service::Backoff;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv};

/// A `hashblock` notification and when it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashBlock {
    pub(crate) hash: BlockHash,
    pub(crate) at: Instant,
}

/// Subscribes to `endpoint` until `token` is cancelled, forwarding
/// notifications; reconnects when `reconnect` is notified or the socket fails.
pub(crate) async fn subscribe(
    node: String,
    endpoint: String,
    out: mpsc::Sender<HashBlock>,
    reconnect: Arc<Notify>,
    token: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    while !token.is_cancelled() {
        let mut socket = zeromq::SubSocket::new();
        let connected = async {
            socket.connect(&endpoint).await?;
            socket.subscribe("hashblock").await
        };
        if let Err(error) = connected.await {
            tracing::warn!(%node, %endpoint, %error, retry_in = ?backoff.delay(), "ZMQ connect failed");
            if !backoff.wait(&token).await {
                return;
            }
            continue;
        }
        tracing::info!(%node, %endpoint, "ZMQ hashblock subscribed");
        backoff.reset();
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = reconnect.notified() => {
                    tracing::warn!(%node, %endpoint, "ZMQ missed a block: reconnecting");
                    break;
                }
                msg = socket.recv() => match msg {
                    Ok(msg) => {
                        if let Some(hash) = parse(&msg.into_vec()) {
                            let _ = out.send(HashBlock { hash, at: Instant::now() }).await;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%node, %error, "ZMQ receive failed: reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// `[topic, 32-byte display-order hash, sequence]` → the hash.
fn parse(frames: &[bytes::Bytes]) -> Option<BlockHash> {
    let (topic, hash) = (frames.first()?, frames.get(1)?);
    if topic.as_ref() != b"hashblock" || hash.len() != 32 {
        return None;
    }
    let mut internal: [u8; 32] = hash.as_ref().try_into().ok()?;
    internal.reverse();
    Some(BlockHash::from_byte_array(internal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cores_framing_and_ignores_the_rest() {
        let mut display = [0u8; 32];
        display[0] = 0xaa; // display order: first byte is the most significant
        let frames = vec![
            bytes::Bytes::from_static(b"hashblock"),
            bytes::Bytes::copy_from_slice(&display),
            bytes::Bytes::from_static(&[0, 0, 0, 0]),
        ];
        let hash = parse(&frames).unwrap();
        assert!(hash.to_string().starts_with("aa"));
        assert_eq!(parse(&frames[..1]), None);
        let wrong = vec![bytes::Bytes::from_static(b"hashtx"), frames[1].clone()];
        assert_eq!(parse(&wrong), None);
    }
}
