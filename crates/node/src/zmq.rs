//! The ZMQ `hashblock` or `rawblock` subscriber of one node (gbtmaker's
//! trigger for a template, jobmaker's for an empty-block job).
//!
//! ZMQ SUB sockets can go silently dead (a node restart behind a NAT, a
//! dropped TCP session that libzmq-style reconnects never notice). The node
//! subscriber's user tells this task to reconnect when it finds a tip that
//! ZMQ did not announce; socket errors reconnect with backoff too.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use sluice_service::Backoff;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv};

/// A new block's notification and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct HashBlock {
    /// The new block.
    pub hash: BlockHash,
    /// Its header, when the notification was `rawblock`.
    pub header: Option<Header>,
    /// When the notification was read.
    pub at: Instant,
}

/// Which notification to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `hashblock`: the block's hash.
    HashBlock,
    /// `rawblock`: the whole block, of which the header is kept.
    RawBlock,
}

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Topic::HashBlock => "hashblock",
            Topic::RawBlock => "rawblock",
        }
    }
}

/// Subscribes to `topic` at `endpoint` until `token` is cancelled,
/// forwarding notifications; reconnects when `reconnect` is notified or the
/// socket fails.
pub async fn subscribe(
    node: String,
    endpoint: String,
    topic: Topic,
    out: mpsc::Sender<HashBlock>,
    reconnect: Arc<Notify>,
    token: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    while !token.is_cancelled() {
        let mut socket = zeromq::SubSocket::new();
        let connected = async {
            socket.connect(&endpoint).await?;
            socket.subscribe(topic.name()).await
        };
        if let Err(error) = connected.await {
            tracing::warn!(%node, %endpoint, %error, retry_in = ?backoff.delay(), "ZMQ connect failed");
            if !backoff.wait(&token).await {
                return;
            }
            continue;
        }
        tracing::info!(%node, %endpoint, topic = topic.name(), "ZMQ subscribed");
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
                        if let Some((hash, header)) = parse(&msg.into_vec()) {
                            let _ = out.send(HashBlock { hash, header, at: Instant::now() }).await;
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

/// `[hashblock, 32-byte display-order hash, sequence]` → the hash;
/// `[rawblock, serialized block, sequence]` → the hash and header (the rest
/// of the block is not read).
fn parse(frames: &[bytes::Bytes]) -> Option<(BlockHash, Option<Header>)> {
    let (topic, body) = (frames.first()?, frames.get(1)?);
    match topic.as_ref() {
        b"hashblock" if body.len() == 32 => {
            let mut internal: [u8; 32] = body.as_ref().try_into().ok()?;
            internal.reverse();
            Some((BlockHash::from_byte_array(internal), None))
        }
        b"rawblock" => {
            let header: Header = bitcoin::consensus::deserialize(body.get(..80)?).ok()?;
            Some((header.block_hash(), Some(header)))
        }
        _ => None,
    }
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
        let (hash, header) = parse(&frames).unwrap();
        assert!(hash.to_string().starts_with("aa") && header.is_none());
        assert_eq!(parse(&frames[..1]), None);
        let wrong = vec![bytes::Bytes::from_static(b"hashtx"), frames[1].clone()];
        assert_eq!(parse(&wrong), None);
    }

    #[test]
    fn a_raw_block_gives_its_header_and_hash() {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        let frames = vec![
            bytes::Bytes::from_static(b"rawblock"),
            bytes::Bytes::from(bitcoin::consensus::serialize(&genesis)),
            bytes::Bytes::from_static(&[0, 0, 0, 0]),
        ];
        let (hash, header) = parse(&frames).unwrap();
        assert_eq!((hash, header), (genesis.block_hash(), Some(genesis.header)));
        let short = vec![frames[0].clone(), frames[1].slice(..79)];
        assert_eq!(parse(&short), None, "less than a header");
    }
}
