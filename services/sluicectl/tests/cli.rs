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
fn sv2_keygen_writes_a_key_once_and_prints_its_public_half() {
    let dir = std::env::temp_dir().join(format!("sluicectl-sv2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("authority.toml");
    let _ = std::fs::remove_file(&path);
    let run = || {
        let out = sluicectl()
            .args(["sv2-keygen", "--out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let public = run();
    let keys = sluice_sv2::AuthorityKeys::load(&path).unwrap();
    assert_eq!(public, keys.public().to_string());
    // A second run keeps the key miners already trust.
    assert_eq!(run(), public);
    std::fs::remove_dir_all(&dir).unwrap();
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

/// `offsets` then `count-shares` and `missing-blocks`, the kill matrix's
/// audit, on topics of their own: a user's accepted shares counted from
/// where the topic stood, a share accepted twice seen as one distinct hash,
/// another user's and earlier shares not counted; a block without its
/// found_blocks row named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_shares_audits_one_users_accepted_shares_from_a_position() {
    use bitcoin::hashes::Hash;
    use sluice_core::record::{ShareRecord, ShareStatus};

    let prefix = sluice_testkit::unique_name("ctl-audit-");
    let path = write_config(&format!(
        "[kafka]\nbrokers = \"{}\"\n[kafka.topics]\nraw_gbt = \"{prefix}-gbt\"\njob = \"{prefix}-job\"\nshare = \"{prefix}-share\"\nsolved_share = \"{prefix}-solved\"\nevent = \"{prefix}-event\"\n[mysql]\nurl = \"{}\"\n",
        sluice_testkit::kafka_brokers(),
        sluice_testkit::mysql_url(),
    ));
    let run = |args: &[&str]| {
        let out = sluicectl()
            .arg("-c")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluicectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["create-topics"]);
    let store = sluice_store::Store::new(&sluice_testkit::mysql_url()).unwrap();
    let (audited, other) = (
        sluice_testkit::unique_name("audited"),
        sluice_testkit::unique_name("other"),
    );
    let audited_id = store.ensure_user(&audited).await.unwrap().id;
    let other_id = store.ensure_user(&other).await.unwrap().id;
    let bus = sluice_bus::BusConfig {
        brokers: sluice_testkit::kafka_brokers(),
        ..sluice_bus::BusConfig::default()
    };
    let producer = sluice_bus::Producer::new(&bus, 0).unwrap();
    let topic = sluice_bus::Topic::<ShareRecord>::new(format!("{prefix}-share"));
    let share = |user_id: u32, status: ShareStatus, hash: u8| ShareRecord {
        job_id: sluice_core::JobId(1),
        user_id,
        worker_id: 1,
        worker_name: "w".into(),
        server_id: 1,
        extranonce1: 1,
        extranonce2: vec![0; 8],
        ntime: 1,
        nonce: u32::from(hash),
        version_bits: 0,
        share_difficulty: 1.0,
        network_bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
        height: 1,
        status,
        hash: bitcoin::BlockHash::from_byte_array([hash; 32]),
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        timestamp_ms: 1,
        protocol: sluice_core::record::MiningProtocol::StratumV1,
        solo: false,
    };
    let send = |s: ShareRecord| {
        let (producer, topic) = (&producer, &topic);
        async move {
            producer
                .send(topic, &s.user_id.to_be_bytes(), &s)
                .await
                .unwrap()
        }
    };
    // Before the position: not counted.
    send(share(audited_id, ShareStatus::Accepted, 1)).await;
    let from = run(&["offsets", "share"]);
    let from = from.trim();
    assert!(from.split(',').count() >= 1 && from.contains(':'), "{from}");
    send(share(audited_id, ShareStatus::Accepted, 2)).await;
    send(share(audited_id, ShareStatus::Block, 3)).await;
    send(share(audited_id, ShareStatus::Accepted, 3)).await; // the same header again
    send(share(audited_id, ShareStatus::Stale, 4)).await;
    send(share(other_id, ShareStatus::Accepted, 5)).await;
    let counted: serde_json::Value =
        serde_json::from_str(&run(&["count-shares", "--user", &audited, "--from", from])).unwrap();
    assert_eq!(
        counted,
        serde_json::json!({"user_id": audited_id, "records": 4, "accepted": 3, "distinct": 2})
    );
    // From the beginning, the first share too.
    let all: serde_json::Value =
        serde_json::from_str(&run(&["count-shares", "--user", &audited])).unwrap();
    assert_eq!(
        (&all["records"], &all["accepted"], &all["distinct"]),
        (&5.into(), &4.into(), &3.into()),
        "{all}"
    );
    // By identity: the hashes the miners were told were accepted, one
    // never recorded and one recorded twice among them.
    let hex = |b: u8| bitcoin::BlockHash::from_byte_array([b; 32]).to_string();
    let told = std::env::temp_dir().join(sluice_testkit::unique_name("accepted-"));
    std::fs::write(&told, format!("{}\n{}\n{}\n", hex(2), hex(3), hex(9))).unwrap();
    let checked: serde_json::Value = serde_json::from_str(&run(&[
        "count-shares",
        "--user",
        &audited,
        "--from",
        from,
        "--accepted",
        told.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(checked["told_accepted"], 3, "{checked}");
    assert_eq!(checked["missing"], serde_json::json!([hex(9)]), "{checked}");
    assert_eq!(checked["twice"], serde_json::json!([hex(3)]), "{checked}");
    let _ = std::fs::remove_file(&told);

    // missing-blocks names the hashes without a found_blocks row.
    let unknown = bitcoin::BlockHash::from_byte_array([0xab; 32]).to_string();
    let mut child = sluicectl()
        .arg("-c")
        .arg(&path)
        .arg("missing-blocks")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{unknown}\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), unknown);
    store.close().await;
    // Deleted under the default config: under this one they are the pool's.
    let deleted = sluicectl()
        .args(["delete-topics", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
}
