//! The ZMQ publisher: `hashblock` then `rawblock` for every new tip, framed
//! as Bitcoin Core frames them (`zmqpublishnotifier.cpp`): topic, the
//! 32-byte hash in display (reversed) order or the serialized block, and a
//! 4-byte little-endian sequence number counted per topic. Core publishes
//! each topic only where `-zmqpub<topic>` asks; here both go to the one
//! endpoint, and a subscriber gets the topics it subscribes to.

use std::sync::Arc;

use bitcoin::BlockHash;
use bitcoin::hashes::Hash;
use bytes::Bytes;
use sluice_service::Context;
use tokio::sync::broadcast;
use zeromq::{Socket, SocketSend, ZmqMessage};

/// Binds `endpoint` and publishes every tip from `blocks` (its bytes read
/// from `node`'s chain); returns the bound endpoint.
pub(crate) async fn start(
    endpoint: &str,
    mut blocks: broadcast::Receiver<BlockHash>,
    node: Arc<crate::Node>,
    ctx: &Context,
) -> anyhow::Result<String> {
    let mut socket = zeromq::PubSocket::new();
    let bound = socket
        .bind(endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("binding ZMQ {endpoint}: {e}"))?
        .to_string();
    let token = ctx.shutdown.token().clone();
    ctx.shutdown.tracker().spawn(async move {
        let mut sequence: u32 = 0;
        loop {
            let hash = tokio::select! {
                () = token.cancelled() => break,
                next = blocks.recv() => match next {
                    Ok(hash) => hash,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "ZMQ publisher fell behind");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            let mut display = hash.to_byte_array();
            display.reverse();
            let raw = node
                .chain()
                .block_by_hash(&hash)
                .map(|stored| bitcoin::consensus::serialize(&stored.block));
            let mut messages = vec![(&b"hashblock"[..], display.to_vec())];
            messages.extend(raw.map(|raw| (&b"rawblock"[..], raw)));
            for (topic, body) in messages {
                let frames = vec![
                    Bytes::from_static(topic),
                    Bytes::from(body),
                    Bytes::copy_from_slice(&sequence.to_le_bytes()),
                ];
                let message = ZmqMessage::try_from(frames).expect("three frames is not empty");
                if let Err(error) = socket.send(message).await {
                    tracing::warn!(%error, "ZMQ publish failed");
                }
            }
            sequence = sequence.wrapping_add(1);
        }
    });
    Ok(bound)
}
