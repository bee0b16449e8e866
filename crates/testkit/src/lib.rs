//! Test helpers shared by adapter and end-to-end tests: where the local stack
//! is (the same environment variables install/ and the services read), unique
//! names so tests never collide, and polling with a deadline instead of sleeps.

mod database;
pub mod telegram;

pub use database::Database;

use std::future::Future;
use std::time::Duration;

/// The checkout's top directory (the one holding `install/`), found at run
/// time from the directory cargo runs the test in. Not `env!`: a shared
/// target dir can hand this checkout a test binary built in another one,
/// whose compile-time paths point there.
pub fn repo_root() -> std::path::PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .expect("CARGO_MANIFEST_DIR or a current directory");
    start
        .ancestors()
        .find(|d| d.join("install/lib.sh").is_file())
        .unwrap_or_else(|| panic!("no install/lib.sh above {}", start.display()))
        .to_path_buf()
}

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

/// Runs `supervisorctl <args>` on the local stack's supervisord
/// (install/stack.sh) and returns what it printed, panicking if it fails.
fn supervisorctl_output(args: &str) -> String {
    let lib = repo_root().join("install/lib.sh");
    let lib = lib.display();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {lib} && supervisorctl_ {args}"))
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "supervisorctl {args} (is install/stack.sh up running?): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `supervisorctl <action> <program>` on the local stack's supervisord
/// (install/stack.sh), panicking if it fails.
pub fn supervisorctl(action: &str, program: &str) {
    supervisorctl_output(&format!("{action} {program}"));
}

/// Sends `signal` (`STOP`, `KILL`, ...) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Kills `program` with SIGKILL and keeps it down: supervisord would start
/// a program that died on its own again at once, but not one it was told
/// to stop. So the process is frozen (SIGSTOP: it runs no more code, its
/// shutdown hooks included), supervisord is told to stop it, and once the
/// stop is under way the frozen process is killed.
async fn kill_and_keep_down(program: &'static str) {
    let pid: u32 = supervisorctl_output(&format!("pid {program}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{program} is running under supervisord"));
    signal(pid, "STOP");
    let stop = tokio::task::spawn_blocking(move || supervisorctl("stop", program));
    eventually(
        Duration::from_secs(30),
        "supervisord to begin the stop",
        || async {
            supervisorctl_output(&format!("status {program}"))
                .contains("STOPPING")
                .then_some(())
        },
    )
    .await;
    signal(pid, "KILL");
    stop.await.expect("supervisorctl stop");
}

/// Whether something listens on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// Waits (30 s at most) until 127.0.0.1:`port` is `open` or closed.
pub async fn until_port(port: u16, open: bool) {
    let what = format!("port {port} {}", if open { "open" } else { "closed" });
    eventually(Duration::from_secs(30), &what, || async move {
        (port_open(port) == open).then_some(())
    })
    .await;
}

/// An outage of one of the local stack's servers: the supervisord program
/// is stopped (its stop signal: a clean shutdown) or killed, and started
/// again by [`Outage::end`], or on drop if the test fails first. Tests that
/// take one must not run beside other tests of the same binary.
pub struct Outage {
    program: &'static str,
    port: u16,
    ended: bool,
}

impl Outage {
    /// Stops `program` with its stop signal and waits until its `port` is
    /// closed.
    pub async fn begin(program: &'static str, port: u16) -> Outage {
        supervisorctl("stop", program);
        Outage::down(program, port).await
    }

    /// Kills `program` with SIGKILL (no shutdown of any kind), keeps it
    /// down and waits until its `port` is closed.
    pub async fn kill(program: &'static str, port: u16) -> Outage {
        kill_and_keep_down(program).await;
        Outage::down(program, port).await
    }

    async fn down(program: &'static str, port: u16) -> Outage {
        let outage = Outage {
            program,
            port,
            ended: false,
        };
        until_port(port, false).await;
        outage
    }

    /// Starts the program again and waits until its port is open.
    pub async fn end(mut self) {
        self.ended = true;
        supervisorctl("start", self.program);
        until_port(self.port, true).await;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            supervisorctl("start", self.program);
        }
    }
}
