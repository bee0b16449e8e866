//! install/render-config.py: the configs the local services run with are the
//! examples in deploy/config/, with the operator's settings from the
//! environment applied, and every service accepts the result.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    sluice_testkit::repo_root()
}

fn render(env: &[(&str, &str)]) -> (PathBuf, std::process::Output) {
    let out = std::env::temp_dir().join(sluice_testkit::unique_name("rendered-"));
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("install/render-config.py")).arg(&out);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SLUICE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let output = cmd.output().unwrap();
    (out, output)
}

fn load<C: serde::de::DeserializeOwned + sluice_service::Validate>(dir: &Path, name: &str) -> C {
    sluice_service::load_config(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_solo_fee_out_of_range_is_refused() {
    let (_, output) = render(&[("SLUICE_SOLO_FEE_BPS", "10001")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SLUICE_SOLO_FEE_BPS='10001' is not 0 to 10000"),
        "{stderr}"
    );
}

#[test]
fn without_settings_the_examples_are_used_as_they_are() {
    let (dir, output) = render(&[]);
    assert!(output.status.success(), "{output:?}");
    for entry in std::fs::read_dir(repo().join("deploy/config")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "{name:?}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_operators_own_bitcoind_and_infrastructure_reach_every_service() {
    let payout = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    let (dir, output) = render(&[
        ("SLUICE_KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092"),
        ("SLUICE_ZK", "zk-1:2181"),
        ("SLUICE_MYSQL_URL", "mysql://pool:s3cr%2Ft@db:3306/pool"),
        ("SLUICE_NODE_RPC_URL", "http://10.0.0.5:8332"),
        ("SLUICE_NODE_COOKIE", "/var/lib/bitcoind/.cookie"),
        ("SLUICE_NODE_ZMQ", "tcp://10.0.0.5:28332"),
        ("SLUICE_PAYOUT_ADDRESS", payout),
        ("SLUICE_NETWORK", "mainnet"),
        ("SLUICE_MIN_DIFFICULTY", "4096"),
        ("SLUICE_NODE_WALLET", "pool"),
        ("SLUICE_SOLO_FEE_BPS", "200"),
    ]);
    assert!(output.status.success(), "{output:?}");

    let gbt: gbtmaker::Config = load(&dir, "gbtmaker.toml");
    let node = &gbt.nodes[0];
    assert_eq!(node.rpc_url, "http://10.0.0.5:8332");
    assert_eq!(
        node.cookie_file.as_deref(),
        Some(Path::new("/var/lib/bitcoind/.cookie"))
    );
    assert_eq!(node.zmq_hashblock.as_deref(), Some("tcp://10.0.0.5:28332"));
    assert_eq!(gbt.kafka.brokers, "kafka-1:9092,kafka-2:9092");
    for name in ["jobmaker.toml", "jobmaker-standby.toml"] {
        let job: jobmaker::Config = load(&dir, name);
        assert_eq!(
            (job.payout_address.as_str(), job.network.as_str()),
            (payout, "mainnet")
        );
        assert_eq!(job.zookeeper.connect, "zk-1:2181");
        // Solo mining on, both jobmakers alike (whichever leads makes the jobs).
        assert!(job.solo.enabled, "{name}");
        assert_eq!(job.solo.fee_bps, 200, "{name}");
        // jobmaker mines only on its nodes' templates: the operator's node,
        // whose announcements make its empty-block jobs.
        assert_eq!(job.nodes.len(), 1);
        assert_eq!(
            job.nodes[0].zmq_hashblock.as_deref(),
            Some("tcp://10.0.0.5:28332")
        );
        // Their node publishes rawblock only if they say so (not here).
        assert_eq!(job.nodes[0].zmq_rawblock, None);
        assert_eq!(
            (job.nodes[0].name.as_str(), job.nodes[0].rpc_url.as_str()),
            ("10.0.0.5:8332", "http://10.0.0.5:8332")
        );
        assert!(job.nodes[0].cookie_file.is_some());
    }
    let ss: sserver::Config = load(&dir, "sserver.toml");
    assert_eq!((ss.difficulty.min, ss.difficulty.default), (4096.0, 4096.0));
    assert_eq!(ss.mysql.url, "mysql://pool:s3cr%2Ft@db:3306/pool");
    // The farm agent's example runs as it is (in front of the local pool).
    let farm: agent::Config = load(&dir, "agent.toml");
    sluice_service::Validate::validate(&farm).unwrap();
    assert_eq!(farm.upstream.pools, vec!["127.0.0.1:3333".to_owned()]);
    // On a real node the farm starts at the pool's difficulty, not nodesim's.
    assert_eq!(farm.upstream.password, "");
    let blk: blkmaker::Config = load(&dir, "blkmaker.toml");
    assert_eq!(blk.nodes[0].rpc_url, "http://10.0.0.5:8332");
    assert!(blk.nodes[0].cookie_file.is_some());
    let stats: statshttpd::Config = load(&dir, "statshttpd.toml");
    assert_eq!(stats.network, "mainnet");
    assert_eq!(stats.nodes[0].rpc_url, "http://10.0.0.5:8332");
    // The payer pays from the operator's wallet, to addresses of their network.
    let payer: payer::Config = load(&dir, "payer.toml");
    let payouts = payer.payouts.as_ref().unwrap();
    assert_eq!(
        (payer.network.as_str(), payouts.wallet.as_str()),
        ("mainnet", "pool")
    );
    assert_eq!(payouts.node.rpc_url, "http://10.0.0.5:8332");
    assert!(payouts.node.cookie_file.is_some());
    assert_eq!(payer.mysql.url, "mysql://pool:s3cr%2Ft@db:3306/pool");
    // Health and logs name the node by its address, not the example's name.
    let job: jobmaker::Config = load(&dir, "jobmaker.toml");
    for node in [
        &gbt.nodes[0],
        &job.nodes[0],
        &blk.nodes[0],
        &stats.nodes[0],
        &payouts.node,
    ] {
        assert_eq!(node.name, "10.0.0.5:8332");
    }
    // nodesim is the stand-in, not the operator's node: untouched.
    assert_eq!(
        std::fs::read_to_string(dir.join("nodesim.toml")).unwrap(),
        std::fs::read_to_string(repo().join("deploy/config/nodesim.toml")).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_path_a_service_writes_follows_sluice_state() {
    let state = "/srv/pool-b";
    let (dir, output) = render(&[("SLUICE_STATE", state)]);
    assert!(output.status.success(), "{output:?}");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("/var/lib/sluice"),
            "{path:?} still names the default state directory:\n{text}"
        );
    }
    let stats: statshttpd::Config = load(&dir, "statshttpd.toml");
    assert_eq!(stats.data_dir, Path::new("/srv/pool-b/sharelog"));
    let ss: sserver::Config = load(&dir, "sserver.toml");
    assert_eq!(ss.solved_log, Path::new("/srv/pool-b/sserver-solved.log"));
    let bot = std::fs::read_to_string(dir.join("tgbot.toml")).unwrap();
    assert!(
        bot.contains("\"/srv/pool-b/tgbot/subscriptions.json\""),
        "{bot}"
    );
    assert!(bot.contains("\"/srv/pool-b/config/tgbot.token\""), "{bot}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_operator_names_their_node() {
    let (dir, output) = render(&[
        ("SLUICE_NODE_RPC_URL", "http://rpc:pw@10.0.0.5:8332"),
        ("SLUICE_NODE_NAME", "core-fra-1"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stats: statshttpd::Config = load(&dir, "statshttpd.toml");
    assert_eq!(stats.nodes[0].name, "core-fra-1");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_difficulty_is_refused_with_the_variable_named() {
    let (dir, output) = render(&[("SLUICE_MIN_DIFFICULTY", "lots")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SLUICE_MIN_DIFFICULTY"));
    let _ = std::fs::remove_dir_all(dir);
}
