//! The admin endpoints over real HTTP on loopback.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use prometheus_client::metrics::counter::Counter;
use sluice_service::{AdminServer, Health, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let (health, metrics) = (Health::default(), Metrics::default());
    let shares = Counter::<u64>::default();
    metrics.register(|r| r.register("shares", "Shares checked", shares.clone()));
    let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), health.clone(), metrics)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(stop.clone()));

    // Nothing reported yet: not healthy.
    assert_eq!(get(addr, "/health").await.0, 503);
    health.set("kafka", true, "3 brokers");
    health.set("mysql", false, "connection refused");
    let (status, body) = get(addr, "/health").await;
    assert_eq!(status, 503);
    assert!(
        body.contains(r#""mysql":{"ok":false,"detail":"connection refused"}"#),
        "{body}"
    );
    health.set("mysql", true, "ok");
    assert_eq!(get(addr, "/health").await.0, 200);

    shares.inc_by(5);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("shares_total 5"), "{body}");
    assert!(
        body.contains("sluice_health{component=\"kafka\"} 1"),
        "{body}"
    );
    health.set("kafka", false, "no broker");
    let (_, body) = get(addr, "/metrics").await;
    assert!(
        body.contains("sluice_health{component=\"kafka\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("sluice_health{component=\"mysql\"} 1"),
        "{body}"
    );

    stop.cancel();
    task.await.unwrap();
}
