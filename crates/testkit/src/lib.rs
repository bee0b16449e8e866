//! Test helpers shared by adapter and end-to-end tests: where the local stack
//! is (the same environment variables install/ and the services read), unique
//! names so tests never collide, and polling with a deadline instead of sleeps.

use std::future::Future;
use std::time::Duration;

/// Kafka bootstrap servers of the local stack.
pub fn kafka_brokers() -> String {
    std::env::var("SLUICE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// ZooKeeper connect string of the local stack.
pub fn zookeeper() -> String {
    std::env::var("SLUICE_ZK").unwrap_or_else(|_| "127.0.0.1:2181".to_owned())
}

/// MySQL URL of the local stack's pool database.
pub fn mysql_url() -> String {
    std::env::var("SLUICE_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://sluice:sluice@127.0.0.1:3306/sluice".to_owned())
}

/// `prefix` plus 12 random hex digits: a name no other test run uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Polls `probe` every 50 ms until it yields `Some`, or panics with `what`
/// once `deadline` has passed.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a child process's
/// admin server, which the test must know in advance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding port 0 on loopback")
}

/// A service binary (`env!("CARGO_BIN_EXE_<name>")`) as its own process
/// with `-c config`, as supervisord runs it; its log (stderr) goes to `log`.
pub fn spawn_service(
    binary: &str,
    config: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("creating the service's log file"))
        .spawn()
        .expect("starting the service binary")
}

/// `GET path` on 127.0.0.1:`port`: the status code and the whole response,
/// or `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out))
}

/// A TCP forwarder to `target` that a test can close and open again: an
/// outage of a real server (MariaDB, a node) without stopping it for every
/// other test. Closing drops every forwarded connection and refuses new
/// ones until opened again.
pub struct Gate {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Listens on an OS-chosen loopback port, open, forwarding to `target`.
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<Gate> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, state) = tokio::sync::watch::channel(true);
        let mut stop = state.clone();
        tokio::spawn(async move {
            // Ends when the Gate (the only sender) is dropped.
            let dropped = async move { while stop.changed().await.is_ok() {} };
            tokio::pin!(dropped);
            loop {
                let accepted = tokio::select! {
                    () = &mut dropped => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let mut is_open = state.clone();
                if !*is_open.borrow_and_update() {
                    continue; // dropped: the client sees the connection reset
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = is_open.wait_for(|o| !*o) => {}
                    }
                });
            }
        });
        Ok(Gate { addr, open })
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Forwards again.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}
