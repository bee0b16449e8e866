//! Blocks made on the node (`--node-rpc`), to time new-block → clean job.

use std::time::{Duration, Instant};

use bitcoin::BlockHash;
use sluice_node::{NodeConfig, NodeRpc};
use tokio_util::sync::CancellationToken;

use crate::Options;

/// `http://user:password@host:port` as a node's settings.
fn node_config(url: &str) -> Result<NodeConfig, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--node-rpc {url:?}: only http:// URLs"))?
        .trim_end_matches('/');
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    let (user, password) = auth
        .map(|a| a.split_once(':').unwrap_or((a, "")))
        .unwrap_or_default();
    Ok(NodeConfig {
        name: "node".into(),
        rpc_url: format!("http://{host}"),
        rpc_user: user.into(),
        rpc_password: password.into(),
        cookie_file: None,
        zmq_hashblock: None,
        zmq_rawblock: None,
    })
}

/// Makes a block every `block_interval` until `stop`; returns each block's
/// hash with the moment just before it was asked for.
pub(crate) async fn make_blocks(
    url: String,
    o: Options,
    stop: CancellationToken,
) -> Vec<(BlockHash, Instant)> {
    let mut made = Vec::new();
    let rpc = match node_config(&url)
        .and_then(|c| NodeRpc::new(&c, Duration::from_secs(30)).map_err(|e| e.to_string()))
    {
        Ok(rpc) => rpc,
        Err(error) => {
            tracing::warn!(%error, "cannot make blocks");
            return made;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(o.block_interval));
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return made,
            _ = tick.tick() => {}
        }
        let at = Instant::now();
        match rpc.generate_to_address(1, &o.block_address).await {
            Ok(hashes) => made.extend(hashes.into_iter().map(|h| (h, at))),
            Err(error) => tracing::warn!(%error, "could not make a block"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rpc_urls_split_into_address_and_credentials() {
        let c = node_config("http://u:p@127.0.0.1:18443/").unwrap();
        assert_eq!(
            (
                c.rpc_url.as_str(),
                c.rpc_user.as_str(),
                c.rpc_password.as_str()
            ),
            ("http://127.0.0.1:18443", "u", "p")
        );
        let c = node_config("http://h:1").unwrap();
        assert_eq!(
            (c.rpc_url.as_str(), c.rpc_user.as_str()),
            ("http://h:1", "")
        );
        assert!(node_config("https://h:1").is_err());
    }
}
