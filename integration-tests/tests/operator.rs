//! What the operator sees, on the whole pool: the Telegram bot (against a
//! local fake of the Bot API; everything else real) answers from live data
//! that match statshttpd's API and the simulator's own count, and tells
//! each incident once and its end once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    InProcess, MINERS, ONE_POOL_AT_A_TIME, http_json, start_mining, start_pool, statshttpd_credits,
};
use sluice_testkit::telegram::FakeTelegram;
use sluice_testkit::{Outage, eventually, free_port, mysql_url, unique_name};

const TOKEN: &str = "4242:operator-test";
const OPERATOR: i64 = 777;
const TWO_32: f64 = 4_294_967_296.0;

/// "1.23 TH/s" → hashes per second.
fn rate(text: &str) -> f64 {
    let mut words = text.split_whitespace();
    let value: f64 = words.next().unwrap().parse().unwrap();
    let unit = words.next().unwrap();
    let scale = match unit {
        "H/s" => 1.0,
        "kH/s" => 1e3,
        "MH/s" => 1e6,
        "GH/s" => 1e9,
        "TH/s" => 1e12,
        "PH/s" => 1e15,
        "EH/s" => 1e18,
        other => panic!("unit {other}"),
    };
    value * scale
}

/// The text after `label` on the line that starts with it.
fn after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no line {label:?} in {text}"))
        .trim()
}

fn within(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 0.05 * b.abs().max(f64::MIN_POSITIVE),
        "{what}: {a} is not within 5% of {b}"
    );
}

/// Asks `command` and waits for the reply that starts with `start`.
async fn ask(tg: &FakeTelegram, command: &str, start: &str) -> String {
    let before = tg.sent().len();
    tg.say(OPERATOR, command);
    eventually(Duration::from_secs(10), command, || async {
        tg.sent()
            .into_iter()
            .skip(before)
            .find(|(c, t)| *c == OPERATOR && t.starts_with(start))
            .map(|(_, t)| t)
    })
    .await
}

/// The workers named in messages `prefix`…`marker`a, b, c until all the
/// miners are.
async fn workers_told(
    tg: &FakeTelegram,
    prefix: &str,
    marker: &str,
) -> std::collections::BTreeSet<String> {
    let named = || -> std::collections::BTreeSet<String> {
        tg.sent()
            .iter()
            .flat_map(|(_, t)| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_once(marker).map(|(_, names)| names.to_owned()))
            .flat_map(|names| names.split(", ").map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let names = named();
        if names.len() == MINERS {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {MINERS} workers told as {marker:?}: {} named; messages: {:#?}",
            names.len(),
            tg.sent()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn told(tg: &FakeTelegram, prefix: &str) {
    eventually(Duration::from_secs(40), prefix, || async {
        tg.find(|c, t| c == OPERATOR && t.starts_with(prefix))
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_from_live_data_and_tells_each_incident_once() {
    let _one = ONE_POOL_AT_A_TIME.lock().await;
    let pool = start_pool(&mysql_url(), InProcess::ALL).await;
    let (sim, counters) = start_mining(&pool, 8.0, |_| {}).await;
    let report = sim.await.unwrap().unwrap();
    statshttpd_credits(&pool, &counters).await;

    let tg = FakeTelegram::start(TOKEN, free_port()).await;
    let token_file = std::env::temp_dir().join(unique_name("e2e-tgbot-token-"));
    std::fs::write(&token_file, TOKEN).unwrap();
    let state_file = std::env::temp_dir().join(unique_name("e2e-tgbot-subscriptions-"));
    let config = tgbot::Config {
        service: sluice_rig::local(),
        kafka: pool.pipeline.kafka.clone(),
        telegram: tgbot::TelegramConfig {
            token_file: Some(token_file.clone()),
            api_url: tg.url(),
            allowed_chats: vec![OPERATOR],
            poll_timeout_secs: 1,
            ..tgbot::TelegramConfig::default()
        },
        stats_url: format!("http://127.0.0.1:{}", pool.api_port),
        // Short, so that the test sees workers go offline and come back.
        worker_offline_secs: 3,
        alerts: tgbot::alerts::AlertConfig {
            hold_secs: 1,
            check_interval_secs: 1,
            ..tgbot::alerts::AlertConfig::default()
        },
        state_file: state_file.clone(),
    };
    let ctx = sluice_rig::context();
    let bot = tokio::spawn(tgbot::run(config, ctx.clone()));

    // /pool: the 5-minute hashrate is all the simulated work (8 s of it, in
    // the last minutes) over 300 s, as statshttpd and the simulator count it.
    let answer = ask(&tg, "/pool", "Pool").await;
    let (_, api) = http_json(pool.api_port, "/api/v1/pool").await.unwrap();
    let five = rate(after(&answer, "5 min"));
    within(
        five,
        api["hashrate"]["5m"].as_f64().unwrap(),
        "/pool 5 min vs the API",
    );
    within(
        five,
        report.accepted_difficulty * TWO_32 / 300.0,
        "/pool 5 min vs the simulator's accepted work",
    );
    within(
        rate(after(&answer, "1 h")),
        api["hashrate"]["1h"].as_f64().unwrap(),
        "/pool 1 h",
    );
    assert!(
        answer.contains(&format!("users 1, workers {MINERS}")),
        "{answer}"
    );

    // /speed: the one sserver's 5-minute hashrate from its shares.
    // (The first heartbeat, sent before ZooKeeper gave the server its id,
    // names no id; the next one, 10 s later, does.)
    let servers = eventually(Duration::from_secs(30), "the server's id", || async {
        let (_, servers) = http_json(pool.api_port, "/api/v1/servers").await?;
        servers["servers"][0]["from_shares"]
            .is_object()
            .then_some(servers)
    })
    .await;
    let server = &servers["servers"][0];
    let instance = server["instance"].as_str().unwrap().to_owned();
    let answer = ask(&tg, "/speed", "Hashrate by server").await;
    let line = after(&answer, &format!("{instance} #"));
    let five = line
        .split_once(": ")
        .unwrap()
        .1
        .split(" / ")
        .next()
        .unwrap();
    within(
        rate(five),
        server["from_shares"]["hashrate"]["5m"].as_f64().unwrap(),
        "/speed vs the API",
    );

    // /status: the server up, the other services, the infrastructure.
    let answer = ask(&tg, "/status", "Servers (1)").await;
    assert!(answer.contains(&format!("{instance} up:")), "{answer}");
    assert!(answer.contains("Services ("), "{answer}");
    assert!(answer.contains("mysql ok"), "{answer}");
    assert!(answer.contains("node:sim ok"), "{answer}");

    // /workers: every simulated miner (offline after 3 s without a share).
    let answer = ask(&tg, &format!("/workers {}", pool.user), &pool.user).await;
    assert!(
        answer.starts_with(&format!("{}: {MINERS} workers, ", pool.user)),
        "{answer}"
    );

    // /results and /blocks: the blocks the API lists.
    let (_, blocks) = http_json(pool.api_port, "/api/v1/blocks?limit=1000")
        .await
        .unwrap();
    let now = sluice_service::now_ms() / 1000;
    let today = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["found_at"].as_u64().unwrap() >= now - now % 86_400)
        .count();
    let answer = ask(&tg, "/results", "Blocks today").await;
    assert!(
        answer.starts_with(&format!("Blocks today {today}, ")),
        "{answer}"
    );
    let answer = ask(&tg, "/blocks 3", "Last ").await;
    assert_eq!(answer.lines().count(), 4, "{answer}");

    // /db: the database and the stats flushes.
    let answer = ask(&tg, "/db", "MariaDB at").await;
    assert!(answer.contains(": reachable\n"), "{answer}");
    assert!(answer.contains("(current)"), "{answer}");
    assert!(answer.contains("last stats flush"), "{answer}");

    // /subscribe: the user's workers come back when mining resumes and go
    // offline when it stops, told in batches; kept in the state file.
    let user = pool.user.clone();
    let answer = ask(&tg, &format!("/subscribe {user}"), "Following").await;
    assert!(answer.contains("Offline now: "), "{answer}");
    assert!(
        std::fs::read_to_string(&state_file)
            .unwrap()
            .contains(&user)
    );
    let (sim, _) = start_mining(&pool, 4.0, |_| {}).await;
    let back = workers_told(&tg, &format!("{user}: "), " back: ").await;
    sim.await.unwrap().unwrap();
    let gone = workers_told(&tg, &format!("{user}: "), "offline (no share for 3 s): ").await;
    assert_eq!(back, gone, "the same {MINERS} workers");
    let answer = ask(&tg, &format!("/unsubscribe {user}"), "No longer following").await;
    assert!(answer.ends_with(&format!("{user}.")), "{answer}");
    assert!(
        !std::fs::read_to_string(&state_file)
            .unwrap()
            .contains(&user)
    );

    // MariaDB stopped: told once, and its return once.
    let outage = Outage::begin("mariadb", 3306).await;
    told(&tg, "ALERT MariaDB is unreachable").await;
    outage.end().await;
    told(&tg, "RECOVERED MariaDB is unreachable").await;
    assert_eq!(tg.count(OPERATOR, "ALERT MariaDB is unreachable"), 1);
    assert_eq!(tg.count(OPERATOR, "RECOVERED MariaDB is unreachable"), 1);

    // The node stopped: unreachable, told once; started again on its
    // address (an empty chain: nodesim keeps none), its recovery once.
    let rpc = pool.pipeline.node.endpoints.rpc;
    pool.pipeline.node.ctx.shutdown.token().cancel();
    told(&tg, "ALERT node sim is unreachable").await;
    let _back = sluice_rig::Node::start(nodesim::Config {
        rpc_listen: rpc,
        ..nodesim::Config::ephemeral()
    })
    .await;
    told(&tg, "RECOVERED node sim is unreachable").await;
    assert_eq!(tg.count(OPERATOR, "ALERT node sim is unreachable"), 1);
    assert_eq!(tg.count(OPERATOR, "RECOVERED node sim is unreachable"), 1);

    // The sserver stopped: it is gone, told once; started again, its
    // recovery once.
    pool.ctxs[0].shutdown.token().cancel();
    let gone = format!("ALERT sserver {instance} is gone");
    told(&tg, &gone).await;
    let again = sluice_rig::context();
    tokio::spawn(sserver::run(pool.sserver.clone(), again.clone()));
    let back = format!("RECOVERED sserver {instance} is gone");
    told(&tg, &back).await;
    assert_eq!(tg.count(OPERATOR, &gone), 1);
    assert_eq!(tg.count(OPERATOR, &back), 1);
    again.shutdown.token().cancel();

    ctx.shutdown.token().cancel();
    tokio::time::timeout(Duration::from_secs(10), bot)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    std::fs::remove_file(token_file).unwrap();
    std::fs::remove_file(state_file).unwrap();
}
