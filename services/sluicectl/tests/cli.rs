//! The operator tool as an operator runs it.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn sluicectl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
}

fn write_config(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "sluicectl-{}-{}.toml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unknown_config_key_exits_64_with_one_line() {
    let path = write_config("[kafka]\nbrokerz = \"x\"\n");
    let out = sluicectl()
        .arg("-c")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown field `brokerz`"), "{err}");
}

#[test]
fn invalid_values_exit_64() {
    let path = write_config("share_partitions = 0\n");
    let out = sluicectl()
        .arg("-c")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("share_partitions must be at least 1"));
}

#[test]
fn unreachable_dependencies_are_reported_not_panicked() {
    let path = write_config(
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[zookeeper]\nconnect = \"127.0.0.1:1\"\n[mysql]\nurl = \"mysql://u:p@127.0.0.1:1/x\"\n",
    );
    let out = sluicectl()
        .arg("-c")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for dep in ["kafka", "zookeeper", "mysql"] {
        assert!(stdout.contains(&format!("FAIL  {dep}:")), "{stdout}");
    }
}

/// The local stack (install/stack.sh up) is healthy and migrated.
#[test]
fn the_local_stack_checks_ok() {
    let out = sluicectl().arg("check").output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        3,
        "{stdout}"
    );
}

/// The commented example config is valid and describes the local stack.
#[test]
fn the_example_config_checks_ok() {
    let example = sluice_testkit::repo_root().join("deploy/config/sluicectl.toml");
    let out = sluicectl()
        .arg("-c")
        .arg(example)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
