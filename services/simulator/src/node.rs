//! Blocks made on the node (`--node-rpc`), to time new-block → clean job.

use std::time::{Duration, Instant};

use base64::Engine;
use bitcoin::BlockHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::Options;

/// `http://user:password@host:port` split into (host:port, credentials).
fn parse(url: &str) -> Result<(String, Option<String>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--node-rpc {url:?}: only http:// URLs"))?;
    let rest = rest.trim_end_matches('/');
    Ok(match rest.rsplit_once('@') {
        Some((auth, host)) => (host.to_owned(), Some(auth.to_owned())),
        None => (rest.to_owned(), None),
    })
}

/// One JSON-RPC call over a fresh HTTP/1.1 connection.
pub(crate) async fn call(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let (host, auth) = parse(url)?;
    let body = serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(auth);
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("{method} to {host} timed out"))??;
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("{method}: not JSON-RPC ({e}): {body:.200}"))?;
    if !v["error"].is_null() {
        return Err(format!("{method}: {}", v["error"]));
    }
    Ok(v["result"].clone())
}

/// Makes a block every `block_interval` until `stop`; returns each block's
/// hash with the moment just before it was asked for.
pub(crate) async fn make_blocks(
    url: String,
    o: Options,
    stop: CancellationToken,
) -> Vec<(BlockHash, Instant)> {
    let mut made = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(o.block_interval));
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return made,
            _ = tick.tick() => {}
        }
        let at = Instant::now();
        match call(
            &url,
            "generatetoaddress",
            serde_json::json!([1, o.block_address]),
        )
        .await
        {
            Ok(v) => match v[0].as_str().map(str::parse::<BlockHash>) {
                Some(Ok(hash)) => made.push((hash, at)),
                _ => tracing::warn!(answer = %v, "generatetoaddress gave no block hash"),
            },
            Err(error) => tracing::warn!(%error, "could not make a block"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_urls_split_into_host_and_credentials() {
        assert_eq!(
            parse("http://u:p@127.0.0.1:18443/").unwrap(),
            ("127.0.0.1:18443".into(), Some("u:p".into()))
        );
        assert_eq!(parse("http://h:1").unwrap(), ("h:1".into(), None));
        assert!(parse("https://h:1").is_err());
    }
}
