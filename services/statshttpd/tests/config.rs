//! The example config loads and validates; bad values get one clear line.
#![allow(clippy::unwrap_used)]

use sluice_service::Validate;

#[test]
fn the_example_config_is_valid() {
    let path = sluice_testkit::repo_root().join("deploy/config/statshttpd.toml");
    let config: statshttpd::Config = sluice_service::load_config(&path).unwrap();
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(config.service.admin_listen.port(), 9106);
    assert_eq!(config.nodes.len(), 1);
    assert!(config.zookeeper.is_some());
    assert_eq!(
        config.group(),
        format!("sluice-statshttpd-{}", config.service.instance)
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let parse = |text: &str| -> statshttpd::Config { toml::from_str(text).unwrap() };
    assert!(parse("").validate().is_ok(), "every key has a default");
    let refused = |text: &str, why: &str| {
        let e = parse(text).validate().unwrap_err();
        assert!(e.contains(why), "{text:?}: {e}");
    };
    refused("network = \"main\"", "network \"main\"");
    refused("flush_interval_secs = 0", "flush_interval_secs");
    refused("data_dir = \"\"", "data_dir");
    refused("[mysql]\nurl = \"postgres://x\"", "mysql.url");
    refused("[zookeeper]\nroot = \"sluice\"", "zookeeper.root");
    refused(
        "[[nodes]]\nname = \"a\"\nrpc_url = \"127.0.0.1:8332\"",
        "rpc_url",
    );
    assert!(
        toml::from_str::<statshttpd::Config>("flush = 1").is_err(),
        "unknown keys are errors"
    );
}

#[test]
fn the_binaries_refuse_bad_input_clearly() {
    let dir = std::env::temp_dir().join(sluice_testkit::unique_name("stats-config-"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "network = \"moon\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statshttpd"))
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("network \"moon\""));

    let good = dir.join("good.toml");
    std::fs::write(&good, format!("data_dir = {:?}\n", dir.join("logs"))).unwrap();
    let sharelog = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sharelog"))
            .arg("-c")
            .arg(&good)
            .args(args)
            .output()
            .unwrap()
    };
    let out = sharelog(&["dump", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a day"));
    // A day without a file dumps nothing and cannot be replayed.
    let out = sharelog(&["dump", "2026-11-21"]);
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
    let out = sharelog(&["replay", "2026-11-21"]);
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no share log for 20261121"));
    std::fs::remove_dir_all(&dir).unwrap();
}
