//! The agent without a pool: miners are served while no pool answers, and
//! told to reconnect (then closed) only once the configured grace is over;
//! a configuration it cannot run is refused with a precise error.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sluice_service::Validate;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn config(listen: std::net::SocketAddr, pool: std::net::SocketAddr, grace: u64) -> agent::Config {
    toml::from_str(&format!(
        r#"
listen = "{listen}"
[upstream]
pools = ["{pool}"]
account = "farm"
sessions = 1
retry_max_secs = 0.2
[miners]
reconnect_grace_secs = {grace}
"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_stay_until_the_grace_then_are_told_to_reconnect() {
    // A pool address nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pool = dead.local_addr().unwrap();
    drop(dead);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ctx = sluice_service::Context {
        shutdown: sluice_service::Shutdown::new(),
        health: sluice_service::Health::default(),
        metrics: sluice_service::Metrics::default(),
    };
    tokio::spawn(agent::serve(listener, config(addr, pool, 3), ctx.clone()));

    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(
        b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cgminer/4.10\"]}\n\
          {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"farm.rig9\",\"x\"]}\n",
    )
    .await
    .unwrap();
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), rd.read_line(&mut l))
            .await
            .expect("an answer or the close in time")
            .unwrap();
        if n == 0 {
            break;
        }
        lines.push(l);
    }
    let gone = started.elapsed();
    // Subscribed with a 16-bit session id and 4 bytes to roll, authorized.
    assert!(lines[0].contains("\"00000001\",4]"), "{lines:?}");
    assert!(lines[1].contains("\"result\":true"), "{lines:?}");
    // Then nothing until the grace ended: a reconnect, and the close.
    assert!(
        lines.last().unwrap().contains("client.reconnect"),
        "{lines:?}"
    );
    assert!(gone >= Duration::from_secs(3), "told to go after {gone:?}");
    let health = ctx.health.snapshot();
    assert!(!health["upstream0"].ok, "{health:?}");
    ctx.shutdown.token().cancel();
}

#[test]
fn configurations_it_cannot_run_are_refused_precisely() {
    let listen = "127.0.0.1:3340".parse().unwrap();
    let pool = "127.0.0.1:3333".parse().unwrap();
    assert!(config(listen, pool, 60).validate().is_ok());
    let refused = |edit: &dyn Fn(&mut agent::Config), says: &str| {
        let mut c = config(listen, pool, 60);
        edit(&mut c);
        let e = c.validate().unwrap_err();
        assert!(e.contains(says), "{e}");
    };
    refused(&|c| c.upstream.pools.clear(), "upstream.pools");
    refused(&|c| c.upstream.pools = vec!["nohost".into()], "host:port");
    refused(
        &|c| c.upstream.account = "farm.rig1".into(),
        "upstream.account",
    );
    refused(&|c| c.upstream.sessions = 0, "upstream.sessions");
    refused(&|c| c.miners.max_miners = 70_000, "miners.max_miners");
    // Unknown keys are errors, not silently ignored.
    let typo = toml::from_str::<agent::Config>(
        "listen = \"127.0.0.1:1\"\n[upstream]\npools = [\"a:1\"]\naccount = \"x\"\nsesions = 2\n",
    );
    assert!(typo.unwrap_err().to_string().contains("sesions"));
}
