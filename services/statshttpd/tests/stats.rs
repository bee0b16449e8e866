//! statshttpd against the real broker and MariaDB (install/stack.sh up):
//! shares of known difficulty and time give exactly the expected windows,
//! API answers and table rows, across a restart and a MySQL outage, and a
//! replay of the day's share log rebuilds the same rows.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bitcoin::hashes::Hash;
use common::{MINUTE, Rig, TWO_32, num};
use sluice_core::ShareStatus::{Accepted, Block, LowDifficulty, Stale};
use sluice_core::record::ShareRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_tables_and_api_from_known_shares() {
    let mut rig = Rig::new().await;
    let t0 = rig.t0;
    let uid = rig.uid();
    let name = rig.user.1.clone();
    // Now is t0 + 20 min. Worker 1: 4 in the last 5 minutes, 2 (and a stale
    // 1) in the last 15, a rejected 8 within the hour. Worker 2: 0.5.
    for s in [
        rig.share(1, Accepted, 4.0, t0 + 19 * MINUTE + 30_000),
        rig.share(1, Accepted, 2.0, t0 + 10 * MINUTE + 30_000),
        rig.share(1, Stale, 1.0, t0 + 12 * MINUTE),
        rig.share(1, LowDifficulty, 8.0, t0 + MINUTE),
        rig.share(2, Accepted, 0.5, t0 + 18 * MINUTE),
    ] {
        rig.send(&s).await;
    }
    rig.start();
    rig.initialized().await;

    // The pool: every window exactly, and hashrate = accepted x 2^32 / secs.
    let (status, pool) = rig.get("/api/v1/pool").await.unwrap();
    assert_eq!(status, 200, "{pool}");
    let shares = |w: &str, k: &str| num(&pool["shares"][w][k]);
    assert_eq!(
        [
            shares("5m", "accept"),
            shares("15m", "accept"),
            shares("1h", "accept")
        ],
        [4.5, 6.5, 6.5]
    );
    assert_eq!([shares("15m", "stale"), shares("1h", "reject")], [1.0, 8.0]);
    assert_eq!(shares("15m", "reject"), 0.0, "the reject is 19 minutes old");
    assert_eq!(num(&pool["hashrate"]["5m"]), 4.5 * TWO_32 / 300.0);
    assert_eq!(num(&pool["hashrate"]["1h"]), 6.5 * TWO_32 / 3600.0);
    assert_eq!((num(&pool["users"]), num(&pool["workers"])), (1.0, 2.0));
    assert_eq!(num(&pool["accept_count"]), 3.0);
    assert_eq!(
        num(&pool["network_height"]),
        100.0,
        "below the newest job's height"
    );

    // The user and its workers.
    let user = rig
        .get_when(&format!("/api/v1/users/{name}"), "the user", |s, _| {
            s == 200
        })
        .await;
    assert_eq!(
        (num(&user["user_id"]), num(&user["workers"])),
        (f64::from(uid), 2.0)
    );
    assert_eq!(num(&user["shares"]["15m"]["accept"]), 6.5);
    let (_, workers) = rig
        .get(&format!("/api/v1/users/{name}/workers"))
        .await
        .unwrap();
    let list = workers["workers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "rig1");
    assert_eq!(num(&list[0]["shares"]["1h"]["reject"]), 8.0);
    assert_eq!(list[0]["last_share_ip"], "192.0.2.1");
    assert_eq!(
        num(&list[0]["last_share_time"]),
        ((t0 + 19 * MINUTE + 30_000) / 1000) as f64
    );
    assert_eq!(num(&list[1]["shares"]["5m"]["accept"]), 0.5);

    // Minute statistics: now is t0 + 20 min, so of 21 minutes the first is
    // t0's and the last the current (empty) one.
    let (status, minutes) = rig.get("/api/v1/minutes?minutes=21").await.unwrap();
    assert_eq!(status, 200, "{minutes}");
    assert_eq!(num(&minutes["start"]), (t0 / 1000) as f64);
    assert_eq!(num(&minutes["step"]), 60.0);
    let column = |v: &serde_json::Value, k: &str| -> Vec<f64> {
        v[k].as_array().unwrap().iter().map(num).collect()
    };
    let at = |minute: usize, value: f64| {
        let mut v = vec![0.0; 21];
        v[minute] = value;
        v
    };
    let mut shares = vec![0.0; 21];
    for m in [1, 10, 12, 18, 19] {
        shares[m] = 1.0;
    }
    assert_eq!(column(&minutes, "shares"), shares);
    let mut rejects = at(1, 1.0);
    rejects[12] = 1.0;
    assert_eq!(column(&minutes, "rejects"), rejects);
    let mut accept = at(19, 4.0);
    accept[10] = 2.0;
    accept[18] = 0.5;
    assert_eq!(column(&minutes, "accept"), accept);
    assert_eq!(num(&minutes["hashrate"][19]), 4.0 * TWO_32 / 60.0);
    let (_, whole_day) = rig.get("/api/v1/minutes").await.unwrap();
    assert_eq!(whole_day["shares"].as_array().unwrap().len(), 1440);
    let (_, user_minutes) = rig
        .get(&format!("/api/v1/users/{name}/minutes?minutes=21"))
        .await
        .unwrap();
    assert_eq!(column(&user_minutes, "shares"), shares);
    let (_, server_minutes) = rig
        .get("/api/v1/servers/7/minutes?minutes=21")
        .await
        .unwrap();
    assert_eq!(column(&server_minutes, "accept"), accept);
    let (status, worker_minutes) = rig
        .get(&format!(
            "/api/v1/users/{name}/workers/rig2/minutes?minutes=21"
        ))
        .await
        .unwrap();
    assert_eq!(status, 200, "{worker_minutes}");
    assert_eq!(column(&worker_minutes, "accept"), at(18, 0.5));
    for (bad, code) in [
        ("/api/v1/minutes?minutes=0", 400),
        ("/api/v1/minutes?minutes=1441", 400),
        ("/api/v1/servers/8/minutes", 404),
        ("/api/v1/users/nobody-here/minutes", 404),
    ] {
        let (status, body) = rig.get(bad).await.unwrap();
        assert_eq!(status, code, "{bad}: {body}");
    }
    let (status, _) = rig
        .get(&format!("/api/v1/users/{name}/workers/rig9/minutes"))
        .await
        .unwrap();
    assert_eq!(status, 404, "a worker without shares");

    // The dashboard's pages and our assets; the chart library is missing
    // here (web_dir points nowhere) and says where it should come from.
    for page in ["/pool", "/servers", "/blocks", &format!("/u/{name}")] {
        let port = rig.config.listen.port();
        let page = page.to_owned();
        let (status, text) =
            tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, &page))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(status, 200);
        assert!(text.contains("text/html"), "{text}");
        assert!(text.contains("/assets/dashboard.js"), "{text}");
    }
    let port = rig.config.listen.port();
    let (status, script) =
        tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, "/assets/dashboard.js"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200);
    assert!(
        script.contains("/api/v1/minutes"),
        "the script reads the API"
    );
    let (status, missing) =
        tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, "/assets/uplot.js"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 404);
    assert!(
        missing.contains("install/deps.sh installs uPlot"),
        "{missing}"
    );

    // btcpool's endpoints.
    let (_, root) = rig.get("/").await.unwrap();
    assert_btcpool(
        &root["data"]["pool"],
        [4.5, 6.5, 6.5],
        [1.0, 1.0],
        [0.0, 8.0],
    );
    let (_, ws) = rig
        .get(&format!("/worker_status?user_id={uid}&worker_id=1,0"))
        .await
        .unwrap();
    assert_eq!(ws["err_no"], 0);
    assert_eq!(
        ws["data"]["1"]["accept"],
        serde_json::json!([0, 4.0, 6.0, 6.0])
    );
    assert_eq!(ws["data"]["1"]["accept_count"], 2);
    assert_eq!(ws["data"]["0"]["workers"], 2);
    assert_eq!(
        ws["data"]["0"]["accept"],
        serde_json::json!([0, 4.5, 6.5, 6.5])
    );
    let (_, merged) = rig
        .get(&format!(
            "/worker_status?user_id={uid}&worker_id=1,2&is_merge=t"
        ))
        .await
        .unwrap();
    assert_eq!(
        merged["data"]["0"]["accept"],
        serde_json::json!([0, 4.5, 6.5, 6.5])
    );
    for bad in [
        "/worker_status",
        "/worker_status?user_id=1",
        "/worker_status?user_id=x&worker_id=1",
    ] {
        let (status, v) = rig.get(bad).await.unwrap();
        assert_eq!(
            (status, &v["err_no"], &v["err_msg"]),
            (200, &1.into(), &"invalid args".into()),
            "{bad}"
        );
    }

    // Errors: clear JSON with the right status.
    for (path, want) in [
        ("/api/v1/users/no-such-user-anywhere", 404),
        ("/api/v1/users/no-such-user-anywhere/workers", 404),
        ("/api/v1/blocks?limit=0", 400),
        ("/api/v1/blocks?limit=ten", 400),
        ("/api/v1/blocks?user_id=-1", 400),
        ("/api/v1/nothing", 404),
    ] {
        let (status, v) = rig.get(path).await.unwrap();
        assert_eq!(status, want, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
    let (status, blocks) = rig.get("/api/v1/blocks?limit=3").await.unwrap();
    assert_eq!(status, 200);
    assert!(blocks["blocks"].as_array().unwrap().len() <= 3);
    let (_, metrics) = rig
        .get("/metrics")
        .await
        .unwrap_or((0, serde_json::Value::Null));
    assert_eq!(
        metrics,
        serde_json::Value::Null,
        "metrics are text, not JSON"
    );
    let port = rig.config.listen.port();
    let text = tokio::task::spawn_blocking(move || sluice_testkit::http_get(port, "/metrics"))
        .await
        .unwrap()
        .unwrap()
        .1;
    assert!(text.contains("statshttpd_shares_total 5"), "{text}");

    // MySQL: mining_workers and the stats tables, flushed every second;
    // /flush_db_time moves once a whole flush is done.
    let flushed = rig
        .get_when("/flush_db_time", "a whole flush", |_, v| {
            v["data"]["flush_db_time"] != 0
        })
        .await;
    assert_eq!(
        num(&flushed["data"]["flush_db_time"]),
        ((t0 + 20 * MINUTE) / 1000) as f64
    );
    let row = sluice_testkit::eventually(Duration::from_secs(30), "worker 1's row", || async {
        rig.worker_row(1).await.filter(|r| r.accept_count == 2)
    })
    .await;
    assert_eq!(row.accept, [4.0, 6.0, 6.0]);
    assert_eq!((row.stale, row.reject), ([1.0, 1.0], [0.0, 8.0]));
    assert_eq!(row.hashrate_5m, 4.0 * TWO_32 / 300.0);
    assert_eq!(row.name, "rig1");
    let user_row = rig.worker_row(0).await.unwrap();
    assert_eq!(user_row.accept, [4.5, 6.5, 6.5]);
    let rows = rig.stats_rows().await;
    let hour = rig.day() * 100 + 12;
    let pool_hour = format!(
        "stats_pool_hour (0, 0, {hour}, 6.5, 1.0, 8.0, {}, \"3.0000000000000000000000000\", 15000000000)",
        8.0 / 14.5
    );
    assert!(rows.contains(&pool_hour), "{pool_hour} not in {rows:#?}");
    let worker1 = format!(
        "stats_workers_hour ({uid}, 1, {hour}, 6.0, 1.0, 8.0, {}, \"2.0000000000000000000000000\", 10000000000)",
        8.0 / 14.0
    );
    assert!(rows.contains(&worker1), "{worker1} not in {rows:#?}");
    assert_eq!(
        rows.len(),
        2 + 2 + 2 * 2,
        "pool, user and two workers, hour and day: {rows:#?}"
    );

    // A restart: the windows come back from the share log and the topic.
    rig.stop().await;
    rig.clock.set(t0 + 21 * MINUTE);
    rig.send(&rig.share(1, Accepted, 16.0, t0 + 20 * MINUTE + 30_000))
        .await;
    rig.start();
    rig.initialized().await;
    let (_, ws) = rig
        .get(&format!("/worker_status?user_id={uid}&worker_id=1"))
        .await
        .unwrap();
    assert_btcpool(&ws["data"]["1"], [20.0, 22.0, 22.0], [1.0, 1.0], [0.0, 8.0]);
    let (_, minutes) = rig.get("/api/v1/minutes?minutes=22").await.unwrap();
    let accepted: Vec<f64> = minutes["accept"]
        .as_array()
        .unwrap()
        .iter()
        .map(num)
        .collect();
    assert_eq!(
        (accepted[10], accepted[18], accepted[19], accepted[20]),
        (2.0, 0.5, 4.0, 16.0),
        "the minutes come back too: {minutes}"
    );
    // The share log is synced every second: each share in it once.
    let path = statshttpd::sharelog::path_of(&rig.config.data_dir, rig.day());
    let logged =
        sluice_testkit::eventually(Duration::from_secs(10), "six shares logged", || async {
            let mut logged = Vec::new();
            statshttpd::sharelog::read(&path, |e| logged.push((e.partition, e.offset))).unwrap();
            (logged.len() >= 6).then_some(logged)
        })
        .await;
    let mut unique = logged.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        (logged.len(), unique.len()),
        (6, 6),
        "every share logged once: {logged:?}"
    );

    // /api/v1/db: the server, the schema, the tables, the last flush.
    let db = rig
        .get_when("/api/v1/db", "a flush in /api/v1/db", |s, v| {
            s == 200 && v["last_flush"].as_u64().is_some_and(|t| t > 0)
        })
        .await;
    assert!(
        db["server"]["version"]
            .as_str()
            .is_some_and(|v| v.contains("MariaDB")),
        "{db}"
    );
    assert!(num(&db["server"]["schema_version"]) >= 5.0, "{db}");
    assert_eq!(db["server"]["pending_migrations"], serde_json::json!([]));
    assert!(
        db["server"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "mining_workers"),
        "{db}"
    );
    assert!(db["last_flush_ms"].is_number(), "{db}");

    // MySQL cut off: the windows go on, the flush waits, nothing is lost.
    rig.stop().await;
    let gate = sluice_testkit::Gate::start("127.0.0.1:3306".parse().unwrap())
        .await
        .unwrap();
    rig.config.mysql.url =
        sluice_testkit::mysql_url().replace("127.0.0.1:3306", &gate.addr().to_string());
    assert!(
        rig.config.mysql.url.contains(&gate.addr().to_string()),
        "{}",
        rig.config.mysql.url
    );
    gate.close();
    rig.start();
    rig.initialized().await;
    rig.send(&rig.share(2, Accepted, 1.0, t0 + 20 * MINUTE + 40_000))
        .await;
    rig.get_when(
        &format!("/worker_status?user_id={uid}&worker_id=2"),
        "worker 2's new share counted",
        |_, v| v["data"]["2"]["accept"][3] == 1.5,
    )
    .await;
    rig.get_when("/api/v1/health", "MySQL reported down", |s, v| {
        s == 503 && v["components"]["mysql"]["ok"] == false
    })
    .await;
    let (status, db) = rig.get("/api/v1/db").await.unwrap();
    assert_eq!((status, &db["reachable"]), (503, &false.into()), "{db}");
    assert!(db["error"].as_str().is_some_and(|e| !e.is_empty()), "{db}");
    assert_eq!(
        rig.worker_row(2).await.unwrap().accept[2],
        0.5,
        "not flushed while MySQL is away"
    );
    gate.open();
    let row = sluice_testkit::eventually(
        Duration::from_secs(30),
        "the flush after the outage",
        || async { rig.worker_row(2).await.filter(|r| r.accept[2] == 1.5) },
    )
    .await;
    assert_eq!(row.accept_count, 2);
    rig.stop().await;

    // Replaying the day's share log rebuilds exactly the rows the live
    // service wrote.
    let live_rows = rig.stats_rows().await;
    assert!(
        live_rows.iter().any(|r| r.contains(", 23.5, 1.0, 8.0,")),
        "{live_rows:#?}"
    );
    rig.delete_stats_rows().await;
    assert!(rig.stats_rows().await.is_empty());
    rig.config.mysql.url = sluice_testkit::mysql_url();
    let replayed = statshttpd::replay::replay(&rig.config, rig.day())
        .await
        .unwrap();
    assert_eq!(replayed.shares, 7);
    assert_eq!(rig.stats_rows().await, live_rows);
    std::fs::remove_dir_all(&rig.config.data_dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializing_until_the_topic_is_read() {
    let mut rig = Rig::new().await;
    rig.send(&rig.share(1, Accepted, 2.0, rig.t0 + 19 * MINUTE))
        .await;
    // The broker is behind a closed gate: statshttpd cannot read the topic.
    let gate = sluice_testkit::Gate::start(sluice_testkit::kafka_brokers().parse().unwrap())
        .await
        .unwrap();
    gate.close();
    let direct = rig.config.kafka.brokers.clone();
    rig.config.kafka.brokers = gate.addr().to_string();
    rig.start();
    let root = rig
        .get_when("/", "statshttpd answering", |s, _| s == 200)
        .await;
    assert_eq!(root["err_no"], 2, "{root}");
    assert_eq!(root["err_msg"], "service is initializing...");
    let (status, pool) = rig.get("/api/v1/pool").await.unwrap();
    assert_eq!((status, &pool["initializing"]), (503, &true.into()));
    let uid = rig.uid();
    let (_, ws) = rig
        .get(&format!("/worker_status?user_id={uid}&worker_id=1"))
        .await
        .unwrap();
    assert_eq!(ws["err_no"], 2);
    assert!(
        rig.worker_row(1).await.is_none(),
        "nothing is flushed while initializing"
    );
    gate.open();
    rig.initialized().await;
    let (_, ws) = rig
        .get(&format!("/worker_status?user_id={uid}&worker_id=1"))
        .await
        .unwrap();
    assert_eq!(
        ws["data"]["1"]["accept"],
        serde_json::json!([0, 2.0, 2.0, 2.0])
    );
    rig.stop().await;
    rig.config.kafka.brokers = direct;
    std::fs::remove_dir_all(&rig.config.data_dir).unwrap();
}

/// btcpool's arrays: accepted [5 m, 15 m, 1 h]; stale and rejected [15 m, 1 h]
/// (slot 0, and the 5 m slot of stale and reject, are always 0).
fn assert_btcpool(v: &serde_json::Value, accept: [f64; 3], stale: [f64; 2], reject: [f64; 2]) {
    assert_eq!(
        v["accept"],
        serde_json::json!([0, accept[0], accept[1], accept[2]]),
        "{v}"
    );
    assert_eq!(
        v["stale"],
        serde_json::json!([0, 0, stale[0], stale[1]]),
        "{v}"
    );
    assert_eq!(
        v["reject"],
        serde_json::json!([0, 0, reject[0], reject[1]]),
        "{v}"
    );
}

/// A block's effort is the accepted difficulty since the pool's previous
/// block over the network difficulty; the round under way is on /pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_block_s_effort_is_the_accepted_work_since_the_one_before() {
    let mut rig = Rig::new().await;
    let t0 = rig.t0;
    let hash = |_| bitcoin::BlockHash::from_byte_array(rand_bytes());
    let (first, second) = (hash(1), hash(2));
    let block_share = |worker, difficulty, at, h| ShareRecord {
        hash: h,
        ..rig.share(worker, Block, difficulty, at)
    };
    for s in [
        rig.share(1, Accepted, 2.0, t0 + MINUTE),
        rig.share(1, Stale, 5.0, t0 + MINUTE + 1),
        block_share(2, 1.0, t0 + 2 * MINUTE, first),
        rig.share(1, Accepted, 3.0, t0 + 3 * MINUTE),
        rig.share(1, LowDifficulty, 9.0, t0 + 3 * MINUTE + 1),
        block_share(1, 0.5, t0 + 5 * MINUTE, second),
        rig.share(2, Accepted, 4.0, t0 + 6 * MINUTE),
    ] {
        rig.send(&s).await;
    }
    for (h, height) in [(first, 101), (second, 102)] {
        rig.store
            .record_found_block(&sluice_store::FoundBlock {
                height,
                hash: h.to_string(),
                prev_hash: "00".repeat(32),
                user_id: rig.uid(),
                worker_id: 1,
                worker_name: "rig1".into(),
                job_id: 1,
                reward: 1,
                fees: 0,
                size: 1,
                tx_count: 1,
                submit_results: Default::default(),
                is_orphaned: false,
                solo_address: None,
            })
            .await
            .unwrap();
    }
    rig.start();
    rig.initialized().await;
    let network =
        sluice_core::Difficulty::from_compact(bitcoin::CompactTarget::from_consensus(0x207f_ffff))
            .unwrap()
            .get();
    let uid = rig.uid();
    let blocks = rig
        .get_when(
            &format!("/api/v1/blocks?user_id={uid}"),
            "both blocks with their work",
            |s, b| {
                s == 200
                    && b["blocks"]
                        .as_array()
                        .is_some_and(|l| l.len() == 2 && l.iter().all(|b| b["work"].is_number()))
            },
        )
        .await;
    let by_hash = |h: bitcoin::BlockHash| {
        blocks["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["hash"] == h.to_string())
            .unwrap()
            .clone()
    };
    // The first: 2 + 1 since the first share statshttpd saw (not whole).
    let b1 = by_hash(first);
    assert_eq!(
        (num(&b1["work"]), &b1["effort_whole"]),
        (3.0, &false.into())
    );
    assert_eq!(num(&b1["network_difficulty"]), network);
    assert_eq!(num(&b1["effort"]), 3.0 / network);
    assert_eq!(b1["status"], "pending");
    // The second: 3 + 0.5 since the first block (whole); stale and
    // low-difficulty shares are not work.
    let b2 = by_hash(second);
    assert_eq!((num(&b2["work"]), &b2["effort_whole"]), (3.5, &true.into()));
    assert_eq!(num(&b2["effort"]), 3.5 / network);

    let (_, pool) = rig.get("/api/v1/pool").await.unwrap();
    let round = &pool["round"];
    assert_eq!(num(&round["work"]), 4.0, "{pool}");
    assert_eq!(num(&round["since"]), ((t0 + 5 * MINUTE) / 1000) as f64);
    assert_eq!(round["whole"], true);
    assert_eq!(num(&round["effort"]), 4.0 / network);

    // A restart rebuilds the round from the share log.
    rig.stop().await;
    rig.start();
    rig.initialized().await;
    let (_, pool) = rig.get("/api/v1/pool").await.unwrap();
    assert_eq!(num(&pool["round"]["work"]), 4.0, "{pool}");
    std::fs::remove_dir_all(&rig.config.data_dir).unwrap();
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(6) {
        let n = u64::from_str_radix(&sluice_testkit::unique_name(""), 16).unwrap();
        chunk.copy_from_slice(&n.to_be_bytes()[2..2 + chunk.len()]);
    }
    bytes
}

/// The Share topic deleted and created again under a stopped statshttpd (a
/// broker that lost its data, an operator recreating topics): the new
/// topic numbers its records from 0, below what the share log holds. Its
/// shares are counted, from its first, and a restart after that counts
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_share_topic_is_counted_from_its_start_once() {
    let mut rig = Rig::new().await;
    let t0 = rig.t0;
    let accepted_1h = |pool: &serde_json::Value| num(&pool["shares"]["1h"]["accept"]);
    for i in 0..5 {
        rig.send(&rig.share(1, Accepted, 1.0, t0 + 15 * MINUTE + i * 1000))
            .await;
    }
    rig.start();
    rig.initialized().await;
    rig.get_when("/api/v1/pool", "5 shares counted", |_, p| {
        accepted_1h(p) == 5.0
    })
    .await;
    rig.stop().await;

    let kafka = rig.config.kafka.clone();
    let name = kafka.topics.share.clone();
    sluice_bus::delete_topics(&kafka, &[name.as_str()])
        .await
        .unwrap();
    // Deletion completes in the background: create until the broker takes it.
    sluice_testkit::eventually(Duration::from_secs(60), "the topic created again", || {
        let (kafka, name) = (kafka.clone(), name.clone());
        async move {
            let spec = sluice_bus::TopicSpec::scratch(&name, 3);
            let made = sluice_bus::create_topics(&kafka, &[spec]).await.ok()?;
            let marks = sluice_bus::fetch_watermarks(&kafka, &name).await.ok()?;
            // A fresh topic: every partition empty.
            (marks.len() == 3 && marks.iter().all(|&(_, _, high)| high == 0)).then_some(made)
        }
    })
    .await;
    // A new producer: the old one's idempotence state is the old topic's.
    rig.producer = sluice_bus::Producer::new(&kafka, 0).unwrap();
    for i in 0..2 {
        rig.send(&rig.share(1, Accepted, 1.0, t0 + 16 * MINUTE + i * 1000))
            .await;
    }
    rig.start();
    rig.initialized().await;
    rig.get_when(
        "/api/v1/pool",
        "the recreated topic's 2 shares counted beside the 5",
        |_, p| accepted_1h(p) == 7.0,
    )
    .await;
    rig.stop().await;
    rig.start();
    rig.initialized().await;
    let (_, pool) = rig.get("/api/v1/pool").await.unwrap();
    assert_eq!(accepted_1h(&pool), 7.0, "after another restart: {pool}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_quiet_for_an_hour_stays_listed_offline_with_its_last_share() {
    let mut rig = Rig::new().await;
    let (t0, name) = (rig.t0, rig.user.1.clone());
    let (last1, last2) = (t0 + 19 * MINUTE, t0 + 18 * MINUTE);
    rig.send(&rig.share(1, Accepted, 4.0, last1)).await;
    rig.send(&rig.share(2, Accepted, 0.5, last2)).await;
    rig.start();
    rig.initialized().await;
    for worker in [1, 2] {
        sluice_testkit::eventually(Duration::from_secs(30), "the worker's row", || async {
            rig.worker_row(worker).await.filter(|r| r.accept_count == 1)
        })
        .await;
    }
    // An hour and a minute without a share: the live windows forget both.
    rig.clock.set(last1 + 61 * MINUTE);
    rig.get_when(
        &format!("/api/v1/users/{name}"),
        "no worker online",
        |s, v| s == 200 && v["workers"] == 0,
    )
    .await;
    let (status, body) = rig
        .get(&format!("/api/v1/users/{name}/workers"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let list = body["workers"].as_array().unwrap();
    let listed: Vec<(&str, f64, f64, &str)> = list
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap(),
                num(&w["last_share_time"]),
                num(&w["hashrate"]["5m"]) + num(&w["hashrate"]["1h"]),
                w["last_share_ip"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("rig1", (last1 / 1000) as f64, 0.0, "192.0.2.1"),
            ("rig2", (last2 / 1000) as f64, 0.0, "192.0.2.2"),
        ],
        "both still listed, offline, with their last share: {body}"
    );
    assert_eq!(num(&list[0]["accept_count"]), 1.0);
    // A share brings one back online, listed once.
    rig.send(&rig.share(2, Accepted, 0.5, last1 + 61 * MINUTE))
        .await;
    let body = rig
        .get_when(
            &format!("/api/v1/users/{name}/workers"),
            "rig2 online again",
            |s, v| {
                s == 200
                    && v["workers"].as_array().is_some_and(|l| {
                        l.iter()
                            .any(|w| w["name"] == "rig2" && num(&w["hashrate"]["5m"]) > 0.0)
                    })
            },
        )
        .await;
    let names: Vec<&str> = body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rig2", "rig1"], "online first, each once: {body}");
    rig.stop().await;
}
