//! Floods beside honest miners. Each test measures 20 honest miners (the
//! simulator, from 127.0.0.2) quiet, then again while an attacker floods
//! the same server, and asserts what an operator relies on: no honest miner
//! disconnected, mining on, and the attacker's sockets closed as the limits
//! say. Their submit round trip p99 against twice the quiet one (with a
//! floor of 5 ms) is printed, not asserted: it is a performance figure, one
//! run of it is noise on two shared cores, and `install/bench-floods.sh`
//! measures it over several runs (BENCHMARKS.md). The heavy attackers run on a thread at nice 19
//! ([`from_elsewhere`]): in life they are other machines. The 19,000 idle
//! sockets and the 10,000-connection storm go to sserver run as its own
//! process (both ends of 19,000 sockets do not fit one process's 20,000
//! open files), whose memory is read from /proc.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DIFF, Rig, rig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Honest miners per test.
const HONEST: usize = 20;
/// Seconds each measurement runs.
const MEASURE_SECS: f64 = 6.0;
/// Below this the quiet p99 is not doubled but taken as this.
const FLOOR_MS: f64 = 5.0;
/// The pre-auth timeout the tests give the server.
const PREAUTH_SECS: u64 = 3;

/// One flood at a time: they measure latency on two shared cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn flood_rig() -> Rig {
    // Both ends of every socket are this process's.
    let _ = simulator::raise_file_limit();
    rig(|c| {
        c.difficulty.min = DIFF;
        c.difficulty.max = DIFF;
        c.limits.preauth_timeout_secs = PREAUTH_SECS;
    })
    .await
}

/// sserver as deployed: the binary as its own process, on a fresh pipeline.
struct Deployed {
    _pipeline: sluice_rig::Pipeline,
    server: std::process::Child,
    stratum: SocketAddr,
    admin: u16,
    user: String,
    dir: std::path::PathBuf,
}

/// The process with `limits` (lines of its `[limits]` table).
async fn deployed(limits: &str) -> Deployed {
    let rig = common::process_rig(common::BITS, "flood", |_| {
        format!("[difficulty]\ndefault = {DIFF}\nmin = {DIFF}\nmax = {DIFF}\n[limits]\n{limits}")
    })
    .await;
    let server = rig.start("sserver.log");
    let common::ProcessRig {
        pipeline,
        user,
        dir,
        port,
        admin,
        ..
    } = rig;
    let stratum: SocketAddr = ([127, 0, 0, 1], port).into();
    sluice_testkit::eventually(
        Duration::from_secs(30),
        "sserver listening",
        || async move { TcpStream::connect(stratum).await.ok().map(drop) },
    )
    .await;
    Deployed {
        _pipeline: pipeline,
        server,
        stratum,
        admin,
        user,
        dir,
    }
}

impl Deployed {
    fn target(&self) -> Target {
        Target {
            stratum: self.stratum,
            user: self.user.clone(),
        }
    }

    /// The process's resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A sample of its /metrics (`name` with its labels, as printed), 0 if
    /// absent.
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = sluice_testkit::http_get(self.admin, "/metrics").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the honest miners mine: a server's Stratum address and a user.
#[derive(Clone)]
struct Target {
    stratum: SocketAddr,
    user: String,
}

impl Rig {
    fn target(&self) -> Target {
        Target {
            stratum: self.stratum,
            user: self.user.clone(),
        }
    }
}

/// The honest miners for [`MEASURE_SECS`].
async fn honest(t: Target) -> simulator::Report {
    honest_for(&t, MEASURE_SECS).await
}

/// The quiet figures, after a first run that warms the server's broker
/// connection up (its first shares wait for the topic's metadata).
async fn quiet(t: &Target) -> simulator::Report {
    honest_for(t, 2.0).await;
    honest_for(t, MEASURE_SECS).await
}

async fn honest_for(t: &Target, seconds: f64) -> simulator::Report {
    let mut o = simulator::Options::new(t.stratum, HONEST);
    o.user = t.user.clone();
    o.password = format!("d={DIFF}");
    o.rate = 400.0;
    o.duration = seconds;
    simulator::run(
        o,
        Arc::new(simulator::Counters::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// `loud` (under the flood) against `quiet`.
fn unharmed(quiet: &simulator::Report, loud: &simulator::Report, flood: &str) {
    connected_and_mining(quiet, loud, flood);
    // The p99 against twice the quiet one is reported, not asserted: a
    // bound that fails at random keeps no one safe (install/bench-floods.sh
    // gives the figure over runs).
    let bound = 2.0 * quiet.submit_round_trip.p99_ms.max(FLOOR_MS);
    if loud.submit_round_trip.p99_ms > bound {
        eprintln!(
            "{flood}: honest submit p99 {:.2} ms is over twice the quiet one ({bound:.2} ms)",
            loud.submit_round_trip.p99_ms
        );
    }
}

/// [`unharmed`] without the p99 bound: no honest miner disconnected, and
/// they kept mining.
fn connected_and_mining(quiet: &simulator::Report, loud: &simulator::Report, flood: &str) {
    eprintln!(
        "{flood}: honest submit p99 {:.2} ms quiet, {:.2} ms under the flood; {} accepted",
        quiet.submit_round_trip.p99_ms, loud.submit_round_trip.p99_ms, loud.accepted
    );
    assert_eq!(
        (loud.connected, loud.reconnects),
        (HONEST as u64, 0),
        "{flood}: every honest miner stayed connected: {loud:?}"
    );
    assert!(
        loud.accepted as f64 >= 0.5 * quiet.accepted as f64,
        "{flood}: honest miners kept mining: {} accepted vs {} quiet",
        loud.accepted,
        quiet.accepted
    );
}

/// Starts `attack` on a thread of its own at the lowest CPU priority (nice
/// 19, by `renice` on the thread's id): in life the attacker is another
/// machine, not a taker of the pool's two cores. What is measured is then
/// the server's handling of the flood, not the attacker's CPU.
fn from_elsewhere<F, T>(
    attack: impl FnOnce() -> F + Send + 'static,
) -> impl std::future::Future<Output = T>
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        // "PID/task/TID"
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let tid = me.file_name().unwrap().to_string_lossy().into_owned();
        let reniced = std::process::Command::new("renice")
            .args(["-n", "19", "-p", &tid])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(reniced.success(), "renice of the attacker's thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(runtime.block_on(attack()));
    });
    async move { rx.await.expect("the attacker's thread panicked") }
}

/// A connection from `source` (any 127.0.0.0/8 address) to `server`.
async fn connect_from(server: SocketAddr, source: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    socket.connect(server).await
}

/// Reads until the server closes `s` (or `within` passes): whether it did.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// Slowloris: connections that send a byte every second and never a whole
/// line. Each is closed at the pre-auth timeout, not kept by the trickle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_at_the_pre_auth_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = flood_rig().await;
    let quiet = quiet(&rig.target()).await;
    let stop = CancellationToken::new();
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..500u32 {
        let (rig_addr, stop) = (rig.stratum, stop.clone());
        let source = [127, 0, 1, (i % 200) as u8 + 1];
        attackers.spawn(async move {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            let mut s = socket.connect(rig_addr).await.unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) {
                        return Some(started.elapsed());
                    },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if s.write_all(b"{").await.is_err() {
                            return Some(started.elapsed());
                        }
                    }
                }
            }
        });
    }
    let loud = honest(rig.target()).await;
    stop.cancel();
    let mut closed = vec![];
    while let Some(r) = attackers.join_next().await {
        closed.push(r.unwrap());
    }
    unharmed(&quiet, &loud, "slowloris (500 connections)");
    let limit = Duration::from_secs(PREAUTH_SECS + 2);
    assert!(
        closed.iter().all(|c| c.is_some_and(|t| t <= limit)),
        "every trickling connection closed within {limit:?}: {:?}",
        closed
            .iter()
            .filter(|c| c.is_none_or(|t| t > limit))
            .count()
    );
}

/// 19,000 sockets that connect and never say a word, to sserver run as its
/// own process (the attacker's ends fill this one's open-file limit): its
/// memory grows by a few KiB per socket, each is closed at the pre-auth
/// timeout, and the honest miners are unharmed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_at_the_pre_auth_timeout() {
    const IDLE: usize = 19_000;
    /// Long enough for all of them to be open at once.
    const PREAUTH: u64 = 30;
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = simulator::raise_file_limit();
    let server = deployed(&format!("preauth_timeout_secs = {PREAUTH}")).await;
    let target = server.target();
    let quiet = quiet(&target).await;
    let rss_before = server.rss_kib();
    let addr = target.stratum;
    let attack = from_elsewhere(move || async move {
        let opened = Instant::now();
        let mut idle = Vec::with_capacity(IDLE);
        for i in 0..IDLE {
            // 95 from each of 200 addresses: within the per-address burst.
            let source = [127, 0, 2, (i % 200) as u8 + 1];
            idle.push(connect_from(addr, source).await.unwrap());
        }
        let all_open = opened.elapsed();
        // Each closed at the pre-auth timeout (counted from its connect).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(PREAUTH + 10);
        let mut open = 0;
        for s in &mut idle {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !closed_within(s, left).await {
                open += 1;
            }
        }
        (all_open, open)
    });
    let loud = honest(target.clone());
    tokio::pin!(attack);
    let loud = tokio::select! {
        loud = loud => loud,
        (all_open, open) = &mut attack => panic!("the idle sockets all closed ({open} open) after {all_open:?}, before the honest run ended"),
    };
    // Each idle session now wakes once, at its deadline (it had a one-second
    // tick: 19,000 wake-ups a second); the p99 over runs is in BENCHMARKS.md.
    unharmed(&quiet, &loud, "idle sockets (19,000)");

    // All of them open on the server at once (the honest miners are gone).
    let mut rss_peak = 0;
    sluice_testkit::eventually(Duration::from_secs(20), "19,000 open connections", || {
        rss_peak = rss_peak.max(server.rss_kib());
        let open = server.metric("sserver_connections");
        async move { (open >= IDLE as f64).then_some(()) }
    })
    .await;
    rss_peak = rss_peak.max(server.rss_kib());
    let per_socket = (rss_peak.saturating_sub(rss_before)) as f64 / IDLE as f64;
    eprintln!(
        "idle sockets: sserver RSS {rss_before} KiB before, {rss_peak} KiB with them ({per_socket:.2} KiB each)"
    );
    assert!(
        per_socket <= 8.0,
        "an idle socket costs sserver {per_socket:.2} KiB"
    );

    let (all_open, open) = attack.await;
    eprintln!("idle sockets: {IDLE} open in {all_open:?}");
    assert_eq!(open, 0, "idle sockets still open past the pre-auth timeout");
    let timed_out = server.metric("sserver_connections_closed_total{reason=\"authorize_timeout\"}");
    assert!(
        timed_out >= IDLE as f64,
        "{timed_out} closed at the pre-auth timeout"
    );
}

/// Lines longer than the limit, on connection after connection: each is
/// answered with an error and closed; nothing of them is buffered past the
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_lines_close_their_connection() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = flood_rig().await;
    let quiet = quiet(&rig.target()).await;
    let stop = CancellationToken::new();
    let attack = {
        let (stop, addr) = (stop.clone(), rig.stratum);
        from_elsewhere(move || async move {
            let huge = vec![b'x'; 1 << 20];
            let mut closed = 0u64;
            while !stop.is_cancelled() {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(([127, 0, 3, 1], 0).into()).unwrap();
                let Ok(mut s) = socket.connect(addr).await else {
                    continue;
                };
                // The server closes mid-write: the write may fail.
                let _ = s.write_all(&huge).await;
                let mut answer = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
                if String::from_utf8_lossy(&answer).contains("line longer than") {
                    closed += 1;
                }
            }
            closed
        })
    };
    let loud = honest(rig.target()).await;
    stop.cancel();
    let closed = attack.await;
    unharmed(&quiet, &loud, "oversized lines");
    assert!(
        closed >= 10,
        "each 1 MiB line answered \"line longer than\" and closed: {closed}"
    );
}

/// A flood of invalid shares from one authorized connection: it is banned,
/// and the honest miners (another address) mine on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_share_flood_is_banned() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = flood_rig().await;
    let quiet = quiet(&rig.target()).await;
    let attack = async {
        let (mut m, job) = rig.ready_miner().await;
        let mut sent = 0u32;
        while !m.closed && sent < 5_000 {
            let low = m.mine(&job, DIFF, None, common::Want::Low);
            let r = m.session.submit(low, 0);
            m.send(r).await;
            sent += 1;
        }
        m.until_closed().await;
        (m.closed, sent)
    };
    let (loud, (closed, sent)) = tokio::join!(honest(rig.target()), attack);
    unharmed(&quiet, &loud, "invalid shares");
    assert!(closed, "the flooding connection is closed ({sent} sent)");
    // And its address is refused, told why.
    let mut again = rig.miner().await;
    let seen = again.until_closed().await;
    assert!(format!("{seen:?}").contains("banned"), "{seen:?}");
}

/// A connect storm of 10,000 connections from 250 addresses (connect, then
/// hang up, as fast as the attacker's thread can), against sserver run as
/// its own process: the honest miners do not notice it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_storm_leaves_honest_miners_mining() {
    const STORM: usize = 10_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = simulator::raise_file_limit();
    let server = deployed("").await;
    let target = server.target();
    let quiet = quiet(&target).await;
    let addr = target.stratum;
    let storm = from_elsewhere(move || async move {
        let started = Instant::now();
        let mut made = 0usize;
        let mut batch = tokio::task::JoinSet::new();
        for i in 0..STORM {
            // 40 from each address: within the per-address burst.
            let source = [127, 0, 4 + (i / 250) as u8 % 50, (i % 250) as u8 + 1];
            batch.spawn(async move { connect_from(addr, source).await.ok() });
            if batch.len() >= 500 {
                while let Some(r) = batch.join_next().await {
                    made += usize::from(r.unwrap().is_some());
                }
            }
        }
        while let Some(r) = batch.join_next().await {
            made += usize::from(r.unwrap().is_some());
        }
        (made, started.elapsed())
    });
    let (loud, (made, took)) = tokio::join!(honest(target.clone()), storm);
    eprintln!("connect storm: {made} connections in {took:?}");
    unharmed(&quiet, &loud, "connect storm (10,000 from 250 addresses)");
    assert_eq!(made, STORM, "every storm connection was accepted");
    let accepted = server.metric("sserver_connections_accepted_total");
    assert!(
        accepted >= STORM as f64,
        "sserver took every storm connection: {accepted}"
    );
}

/// A miner that stops reading and goes on sending requests, each of which
/// asks for an answer and a job (`mining.suggest_difficulty`). Nothing more
/// is queued for it once the socket is full (the server waits on that
/// write, reading none of its requests), and it is dropped at the write
/// timeout, counted as such; the honest miners mine on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_never_reads_is_dropped_at_the_write_timeout() {
    const WRITE_TIMEOUT_SECS: u64 = 3;
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = simulator::raise_file_limit();
    let rig = rig(|c| {
        c.difficulty.min = DIFF;
        c.difficulty.max = DIFF;
        c.limits.write_timeout_secs = WRITE_TIMEOUT_SECS;
    })
    .await;
    let quiet = quiet(&rig.target()).await;
    let user = rig.user.clone();
    let attack = async {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(([127, 0, 5, 1], 0).into()).unwrap();
        let mut s = socket.connect(rig.stratum).await.unwrap();
        let hello = format!(
            "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}}\n\
             {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"{user}.deaf\",\"x\"]}}\n"
        );
        s.write_all(hello.as_bytes()).await.unwrap();
        // Requests until the server stops taking them (its reads wait on
        // the write it cannot finish), then until it drops the connection.
        let started = Instant::now();
        let mut sent = 0u64;
        let ask = b"{\"id\":3,\"method\":\"mining.suggest_difficulty\",\"params\":[0.001]}\n";
        loop {
            match tokio::time::timeout(Duration::from_secs(1), s.write_all(ask)).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) => break,
                Err(_) if started.elapsed() > Duration::from_secs(60) => break,
                Err(_) => {}
            }
        }
        (sent, started.elapsed())
    };
    let (loud, (sent, dropped_after)) = tokio::join!(honest(rig.target()), attack);
    eprintln!("never-reading miner: {sent} requests sent, dropped after {dropped_after:?}");
    unharmed(&quiet, &loud, "a miner that never reads");
    let metrics = &rig.server_ctx.metrics;
    sluice_testkit::eventually(
        Duration::from_secs(10),
        "the connection counted as dropped at the write timeout",
        || {
            let counted = metrics
                .encode()
                .contains("sserver_connections_closed_total{reason=\"write_timeout\"} 1");
            async move { counted.then_some(()) }
        },
    )
    .await;
    assert!(
        dropped_after < Duration::from_secs(WRITE_TIMEOUT_SECS + 30),
        "dropped after {dropped_after:?}"
    );
}
