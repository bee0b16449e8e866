//! The bot against a local fake of the Telegram Bot API over HTTP (the
//! `/bot<token>/<method>` routes teloxide calls): commands from an allowed
//! chat are answered, any other chat is refused, Telegram's rate limiting
//! and absence are waited out without losing a message.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_bus::{BusConfig, Producer, Topic, TopicNames, TopicSpec, create_topics};
use sluice_core::bitcoin::BlockHash;
use sluice_core::bitcoin::hashes::Hash;
use sluice_core::record::{
    BlockFound, BlockStanding, BlockStatus, Event, EventKind, ServiceStatus,
};
use sluice_service::{CommonConfig, Context, Health, Metrics, Shutdown};
use sluice_testkit::telegram::FakeTelegram;
use sluice_testkit::{eventually, free_port, kafka_brokers, unique_name};

const TOKEN: &str = "123456:test-token";
const OPERATOR: i64 = 1001;
const STRANGER: i64 = 2002;

async fn config(api_port: u16) -> tgbot::Config {
    let event = unique_name("sluice-test-event-");
    let kafka = BusConfig {
        brokers: kafka_brokers(),
        client_id: unique_name("tgbot-test-"),
        topics: TopicNames {
            event: event.clone(),
            ..TopicNames::default()
        },
        ..BusConfig::default()
    };
    create_topics(&kafka, &[TopicSpec::scratch(&event, 1)])
        .await
        .expect("the local stack's broker is up");
    let token_file = std::env::temp_dir().join(unique_name("tgbot-token-"));
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    tgbot::Config {
        service: CommonConfig {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..CommonConfig::default()
        },
        kafka,
        telegram: tgbot::TelegramConfig {
            token_file: Some(token_file),
            api_url: format!("http://127.0.0.1:{api_port}"),
            allowed_chats: vec![OPERATOR],
            poll_timeout_secs: 1,
            ..tgbot::TelegramConfig::default()
        },
        // Nothing listens there: the answers say statshttpd is unreachable.
        stats_url: format!("http://127.0.0.1:{}", free_port()),
        worker_offline_secs: 600,
        // No alert within a test unless it asks for them.
        alerts: tgbot::alerts::AlertConfig {
            hold_secs: 3600,
            ..tgbot::alerts::AlertConfig::default()
        },
        state_file: std::env::temp_dir().join(unique_name("tgbot-subscriptions-")),
    }
}

fn context() -> Context {
    Context {
        shutdown: Shutdown::new(),
        health: Health::default(),
        metrics: Metrics::default(),
    }
}

async fn sent_where(
    tg: &FakeTelegram,
    what: &str,
    pred: impl Fn(&(i64, String)) -> bool,
) -> (i64, String) {
    eventually(Duration::from_secs(20), what, || async {
        tg.find(|c, t| pred(&(c, t.to_owned())))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_answered_strangers_refused_and_telegram_outages_waited_out() {
    let port = free_port();
    let tg = FakeTelegram::unstarted(TOKEN, port);
    // Telegram is not there yet when the bot starts.
    let config = config(port).await;
    let ctx = context();
    let bot = tokio::spawn(tgbot::run(config, ctx.clone()));
    eventually(
        Duration::from_secs(10),
        "the bot says Telegram is away",
        || async {
            ctx.health
                .snapshot()
                .get("telegram")
                .filter(|c| !c.ok && c.detail.starts_with("getUpdates"))
                .map(|_| ())
        },
    )
    .await;

    tg.say(OPERATOR, "/help");
    tg.say(STRANGER, "/status");
    tg.say(OPERATOR, "/pool@sluice_bot");
    tg.say(OPERATOR, "/blocks 500");
    tg.rate_limit_next(1);
    tg.serve().await;

    let (_, help) = sent_where(&tg, "the answer to /help", |(c, t)| {
        *c == OPERATOR && t.starts_with("Sluice pool bot")
    })
    .await;
    assert!(
        help.contains("/status") && help.contains("/workers USER"),
        "{help}"
    );
    let (_, refusal) = sent_where(&tg, "the stranger's refusal", |(c, _)| *c == STRANGER).await;
    assert!(refusal.contains("(2002) is not allowed"), "{refusal}");
    let (_, pool) = sent_where(&tg, "the answer to /pool", |(_, t)| {
        t.contains("/pool") && !t.starts_with("Sluice pool bot")
    })
    .await;
    assert_eq!(
        pool, "Cannot answer /pool: statshttpd unreachable (connection refused)",
        "the bot says why it has no figures"
    );
    let (_, usage) = sent_where(&tg, "the usage of /blocks", |(_, t)| t.starts_with("Usage")).await;
    assert_eq!(usage, "Usage: /blocks N (1 to 50)");
    assert!(ctx.health.snapshot()["telegram"].ok);

    // Each message once, though the first send was rate limited; the
    // stranger got nothing but the refusal.
    let sent = tg.sent();
    assert_eq!(sent.len(), 4, "{sent:#?}");
    assert_eq!(sent.iter().filter(|(c, _)| *c == STRANGER).count(), 1);
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains("tgbot_refused_total 1"), "{metrics}");
    assert!(metrics.contains("tgbot_send_retries_total "), "{metrics}");
    assert!(
        !metrics.contains("tgbot_send_retries_total 0\n"),
        "a retry was counted: {metrics}"
    );
    let calls = tg.calls();
    assert!(
        calls
            .iter()
            .all(|c| c == "getupdates" || c == "sendmessage"),
        "long polling and sendMessage only: {calls:?}"
    );

    ctx.shutdown.token().cancel();
    tokio::time::timeout(Duration::from_secs(10), bot)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn beat(healthy: bool, problems: &[&str]) -> Event {
    Event {
        timestamp_ms: sluice_service::now_ms(),
        kind: EventKind::ServiceStatus(ServiceStatus {
            service: "blkmaker".into(),
            instance: "bm-test".into(),
            host: "h".into(),
            version: "0".into(),
            uptime_secs: 5,
            healthy,
            figures: Vec::new(),
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_from_the_event_topic_are_told_once_and_recovered_once() {
    let port = free_port();
    let tg = FakeTelegram::start(TOKEN, port).await;
    let mut config = config(port).await;
    config.alerts = tgbot::alerts::AlertConfig {
        hold_secs: 1,
        check_interval_secs: 1,
        ..tgbot::alerts::AlertConfig::default()
    };
    let producer = Producer::new(&config.kafka, 0).unwrap();
    let events = Topic::<Event>::new(config.kafka.topics.event.clone());
    let ctx = context();
    let bot = tokio::spawn(tgbot::run(config, ctx.clone()));

    // A service unhealthy for a while: told once, however many beats say so.
    let unhealthy = "ALERT blkmaker bm-test is unhealthy: mysql: connection refused";
    let sick = beat(false, &["mysql: connection refused"]);
    producer.send(&events, b"bm-test", &sick).await.unwrap();
    sent_where(&tg, "the alert", |(c, t)| *c == OPERATOR && t == unhealthy).await;
    for _ in 0..3 {
        producer.send(&events, b"bm-test", &sick).await.unwrap();
    }
    // statshttpd is not there either: its own alert.
    sent_where(&tg, "statshttpd's alert", |(_, t)| {
        t.starts_with("ALERT statshttpd cannot be read: statshttpd unreachable")
    })
    .await;
    producer
        .send(&events, b"bm-test", &beat(true, &[]))
        .await
        .unwrap();
    let (_, recovered) = sent_where(&tg, "the recovery", |(_, t)| {
        t.starts_with("RECOVERED blkmaker bm-test is unhealthy")
    })
    .await;
    assert!(
        recovered.ends_with(" s)"),
        "how long it lasted: {recovered}"
    );

    // A block found is news at once.
    let block = Event {
        timestamp_ms: sluice_service::now_ms(),
        kind: EventKind::BlockFound(BlockFound {
            height: 4242,
            hash: BlockHash::from_byte_array([9; 32]),
            prev_hash: BlockHash::from_byte_array([8; 32]),
            user_id: 1,
            worker_id: 2,
            worker_name: "alice.rig1".into(),
            job_id: sluice_core::JobId(3),
            reward_sat: 5_000_000_000,
            accepted: true,
            solo_address: None,
        }),
    };
    producer.send(&events, b"blk", &block).await.unwrap();
    sent_where(&tg, "the block", |(_, t)| {
        t.starts_with(
            "Block found at height 4242 by alice.rig1, accepted by a node, reward 50.00000000 BTC",
        )
    })
    .await;
    // ... and so is its orphaning later.
    let orphaned = Event {
        timestamp_ms: sluice_service::now_ms(),
        kind: EventKind::BlockStanding(BlockStanding {
            height: 4242,
            hash: BlockHash::from_byte_array([9; 32]),
            status: BlockStatus::Orphaned,
            confirmations: 0,
            worker_name: "alice.rig1".into(),
            reward_sat: 5_000_000_000,
        }),
    };
    producer.send(&events, b"blk", &orphaned).await.unwrap();
    sent_where(&tg, "the orphaning", |(_, t)| {
        t.starts_with("Block 4242 ORPHANED")
    })
    .await;
    assert_eq!(tg.count(OPERATOR, "Block 4242 ORPHANED"), 1);

    assert_eq!(tg.count(OPERATOR, unhealthy), 1, "told once");
    assert_eq!(
        tg.count(OPERATOR, "RECOVERED blkmaker"),
        1,
        "recovered once"
    );
    assert_eq!(tg.count(STRANGER, ""), 0, "alerts go to allowed chats only");
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("tgbot_alerts_open 1"),
        "statshttpd's only: {:#?}",
        tg.sent()
    );
    ctx.shutdown.token().cancel();
    tokio::time::timeout(Duration::from_secs(10), bot)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn without_a_token_the_bot_is_off_and_exits_cleanly() {
    let mut config = config(free_port()).await;
    config.telegram.token_file = None;
    // SLUICE_TGBOT_TOKEN is not set in the test environment.
    assert!(std::env::var(tgbot::TOKEN_ENV).is_err());
    tokio::time::timeout(Duration::from_secs(5), tgbot::run(config, context()))
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn the_example_config_is_valid_and_bad_values_are_refused_with_the_reason() {
    let example = sluice_testkit::repo_root().join("deploy/config/tgbot.toml");
    let c: tgbot::Config = sluice_service::load_config(&example).unwrap();
    assert_eq!(c.service.admin_listen.port(), 9108);
    assert!(
        c.telegram.allowed_chats.is_empty(),
        "the operator's chats go there"
    );
    assert_eq!(c.telegram.api_url, "https://api.telegram.org");
    let dir = std::env::temp_dir().join(unique_name("tgbot-config-"));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, reason) in [
        (
            "stats_url = \"ftp://x\"\n",
            "stats_url \"ftp://x\": not http or https",
        ),
        ("[telegram]\napi_url = \"not a url\"\n", "telegram.api_url"),
        (
            "[telegram]\npoll_timeout_secs = 0\n",
            "poll_timeout_secs must be 1 to 50",
        ),
        ("[telegram]\ntoken = \"123:abc\"\n", "unknown field `token`"),
    ] {
        let path = dir.join("tgbot.toml");
        std::fs::write(&path, text).unwrap();
        let error = sluice_service::load_config::<tgbot::Config>(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains(reason), "{text:?}: {error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
