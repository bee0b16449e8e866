//! What every service inherits from the scaffolding, checked on a real
//! process (examples/idle_service.rs): exit 64 on a bad config, /health on
//! the admin port, and a drain on SIGTERM or SIGINT bounded by the grace period.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    // target/debug/deps/lifecycle-… → target/debug/examples/idle_service
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("idle_service")
}

fn config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("idle-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn health_status(port: u16) -> Option<u16> {
    sluice_testkit::http_get(port, "/health").map(|(status, _)| status)
}

fn start(name: &str, drain_ms: u64, grace_secs: u64) -> (Child, u16) {
    let port = sluice_testkit::free_port();
    let path = config(
        name,
        &format!(
            "drain_ms = {drain_ms}\n[service]\nadmin_listen = \"127.0.0.1:{port}\"\nshutdown_grace_secs = {grace_secs}\n"
        ),
    );
    let child = Command::new(binary())
        .arg("-c")
        .arg(path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health_status(port) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "service never became healthy on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for exit with a deadline; returns the code and what it logged.
fn wait(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unknown_key_exits_64_with_one_line() {
    let path = config("bad", "drain_ms = 1\nsurprise = true\n");
    let out = Command::new(binary()).arg("-c").arg(path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("idle_service: invalid config"), "{err}");
    assert!(err.contains("unknown field `surprise`"), "{err}");
}

#[test]
fn failed_validation_and_missing_file_exit_64() {
    let path = config("invalid", "drain_ms = 999999\n");
    let out = Command::new(binary()).arg("-c").arg(path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("drain_ms must be at most 60000"));
    let out = Command::new(binary())
        .arg("-c")
        .arg("/nonexistent.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let (child, port) = start("term", 300, 5);
    signal(&child, "TERM");
    let (code, log) = wait(child, Duration::from_secs(5));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("SIGTERM: draining") && log.contains("flushed"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a pipe or a file has no colour codes: {log:?}"
    );
    assert_eq!(health_status(port), None, "admin port closed after exit");
}

#[test]
fn sigint_drains_too() {
    let (child, _) = start("int", 0, 5);
    signal(&child, "INT");
    let (code, log) = wait(child, Duration::from_secs(5));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGINT: draining"), "{log}");
}

#[test]
fn a_drain_longer_than_the_grace_period_is_cut_and_reported() {
    let (child, _) = start("slow", 30_000, 1);
    let sent = Instant::now();
    signal(&child, "TERM");
    let (code, log) = wait(child, Duration::from_secs(10));
    assert_eq!(code, Some(70), "{log}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "stopped at the 1 s grace, not the 30 s drain"
    );
    assert!(log.contains("drain exceeded the grace period"), "{log}");
}
