//! sserver over TCP on the real pipeline: the handshake, accepted shares on
//! the Share topic, every rejection code, duplicates, stale shares after a new
//! tip, version rolling inside and outside the mask, and a block candidate
//! reaching SolvedShare.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{DIFF, MASK, Want, record_where, rig};
use sluice_core::ShareStatus;
use sluice_stratum::client::ClientEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_from_handshake_to_kafka() {
    let rig = rig(|_| {}).await;
    let (mut m, job) = rig.ready_miner().await;
    assert!(job.clean, "the first job after authorize is clean");
    assert_eq!(m.session.difficulty, Some(DIFF));
    assert_eq!(
        m.session.version_mask,
        Some(MASK),
        "granted within the server's mask"
    );
    let en1 = m.extranonce1();
    assert_eq!(en1.len(), 4);
    assert!(
        en1[0] >= 1,
        "extranonce1 starts with the ZooKeeper server id"
    );

    let shares = rig.shares().await;
    let good = m.mine(&job, DIFF, Some(0x0000_6000), Want::Share);
    m.submit(good.clone()).await.unwrap();
    let rec = record_where(&shares, Duration::from_secs(20), "accepted", |s| {
        s.nonce == good.nonce
    })
    .await;
    assert_eq!(rec.status, ShareStatus::Accepted);
    assert_eq!(rec.user_id, rig.user_id);
    assert_eq!(rec.worker_name, "rig1");
    assert_eq!(rec.worker_id, sluice_core::worker::worker_id("rig1"));
    assert_eq!(
        rec.extranonce1,
        u32::from_be_bytes(en1.clone().try_into().unwrap())
    );
    assert_eq!(rec.share_difficulty, DIFF);
    assert_eq!(rec.version_bits, 0x6000);
    assert_eq!(rec.protocol, sluice_core::record::MiningProtocol::StratumV1);
    assert_eq!(rec.client_ip, std::net::IpAddr::from([127, 0, 0, 1]));
    // The record re-verifies offline: its hash is the header the fields describe.
    let h = sluice_stratum::client::header(
        &job,
        &en1,
        &rec.extranonce2,
        rec.ntime,
        rec.nonce,
        Some(rec.version_bits),
        MASK,
    );
    assert_eq!(h.block_hash(), rec.hash);

    // 22: the same share again.
    assert_eq!(m.submit(good).await.unwrap_err().code, 22);
    // 23: a hash above the share target.
    let low = m.mine(&job, DIFF, None, Want::Low);
    assert_eq!(m.submit(low.clone()).await.unwrap_err().code, 23);
    let rec = record_where(&shares, Duration::from_secs(20), "low", |s| {
        s.nonce == low.nonce && s.extranonce2 == low.extranonce2
    })
    .await;
    assert_eq!(rec.status, ShareStatus::LowDifficulty);
    // 20: version bits outside the negotiated mask.
    let mut outside = m.mine(&job, DIFF, Some(0x0000_6000), Want::Share);
    outside.version_bits = Some(0x0000_0001);
    let e = m.submit(outside).await.unwrap_err();
    assert_eq!(e.code, 20);
    assert!(e.message.contains("mask"), "{e}");
    // 20: ntime before the template's mintime, and two hours ahead.
    let mut old = m.mine(&job, DIFF, None, Want::Share);
    old.ntime = 1;
    assert_eq!(m.submit(old).await.unwrap_err().message, "Time too old");
    let mut new = m.mine(&job, DIFF, None, Want::Share);
    new.ntime = job.time + 3 * 3600 + (sluice_service::now_ms() / 1000) as u32 - job.time;
    assert_eq!(m.submit(new).await.unwrap_err().message, "Time too new");
    // 20: extranonce2 of the wrong size.
    let mut short = m.mine(&job, DIFF, None, Want::Share);
    short.extranonce2.truncate(4);
    assert!(
        m.submit(short)
            .await
            .unwrap_err()
            .message
            .contains("extranonce2")
    );
    // 21: a job id never sent.
    let mut unknown = m.mine(&job, DIFF, None, Want::Share);
    unknown.job_id = "ffffffffffff".into();
    assert_eq!(m.submit(unknown).await.unwrap_err().code, 21);

    // A new tip from outside: a clean job, and shares of the old one are stale.
    let before = m.mine(&job, DIFF, None, Want::Share);
    rig.generate().await;
    let fresh = m
        .expect("a clean job on the new tip", |e| match e {
            ClientEvent::Job(n) if n.prev_hash != job.prev_hash => Some(n.clone()),
            _ => None,
        })
        .await;
    assert!(fresh.clean);
    let e = m.submit(before.clone()).await.unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (21, "Stale share"));
    let rec = record_where(&shares, Duration::from_secs(20), "stale", |s| {
        s.nonce == before.nonce && s.extranonce2 == before.extranonce2
    })
    .await;
    assert_eq!(rec.status, ShareStatus::Stale);
    let ok = m.mine(&fresh, DIFF, None, Want::Share);
    m.submit(ok).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_candidate_reaches_solved_share() {
    let rig = rig(|_| {}).await;
    let (mut m, job) = rig.ready_miner().await;
    let solved = rig.solved().await;
    let shares = rig.shares().await;
    let block = m.mine(&job, DIFF, Some(0x0200_0000), Want::Block);
    m.submit(block.clone()).await.unwrap();
    let s = record_where(&solved, Duration::from_secs(20), "the candidate", |_| true).await;
    assert_eq!(s.header.nonce, block.nonce);
    assert_eq!(s.header.block_hash(), s.block_hash);
    assert_eq!(s.header.version.to_consensus() as u32 & MASK, 0x0200_0000);
    assert_eq!(s.user_id, rig.user_id);
    assert_eq!(s.worker_name, "rig1");
    // Its coinbase is the one the header commits to.
    let tx = sluice_core::coinbase::coinbase_transaction(&s.coinbase).unwrap();
    assert_eq!(
        sluice_core::merkle_root(tx.compute_txid(), &job.merkle_branch),
        s.header.merkle_root
    );
    assert!(bitcoin::Target::from_compact(s.header.bits).is_met_by(s.block_hash));
    let rec = record_where(&shares, Duration::from_secs(20), "the block share", |r| {
        r.nonce == block.nonce
    })
    .await;
    assert_eq!(rec.status, ShareStatus::Block);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_is_enforced_and_every_request_answered() {
    let rig = rig(|_| {}).await;
    let mut m = rig.miner().await;
    // 25 before subscribe, for submit and authorize.
    m.raw(r#"{"id":1,"method":"mining.submit","params":["a.b","1","0000000000000000","00000000","00000000"]}"#).await;
    assert_eq!(m.answer().await.unwrap_err().code, 25);
    m.raw(r#"{"id":2,"method":"mining.authorize","params":["a.b","x"]}"#)
        .await;
    assert_eq!(m.answer().await.unwrap_err().code, 25);
    // Malformed lines get a precise error and the connection stays.
    m.raw("this is not json").await;
    assert!(
        m.answer()
            .await
            .unwrap_err()
            .message
            .starts_with("malformed JSON")
    );
    m.raw(r#"{"id":3,"method":"mining.submit","params":["w"]}"#)
        .await;
    assert!(m.answer().await.unwrap_err().message.contains("5 or 6"));
    m.raw(r#"{"id":4,"method":"mining.get_transactions","params":[]}"#)
        .await;
    assert!(
        m.answer()
            .await
            .unwrap_err()
            .message
            .contains("unsupported")
    );
    let r = m.session.subscribe("t");
    m.send(r).await;
    m.answer().await.unwrap();
    // 24 after subscribe, before authorize; and unknown users.
    m.raw(r#"{"id":5,"method":"mining.submit","params":["a.b","1","0000000000000000","00000000","00000000"]}"#).await;
    assert_eq!(m.answer().await.unwrap_err().code, 24);
    let r = m.session.authorize("nobody-by-this-name.w", "x");
    m.send(r).await;
    let e = m.answer().await.unwrap_err();
    assert_eq!(e.code, 24);
    assert!(e.message.contains("unknown user"), "{e}");
    // A retry with a real user works on the same connection.
    let r = m.session.authorize(&format!("{}.w", rig.user), "d=0.5");
    m.send(r).await;
    m.answer().await.unwrap();
    let d = m
        .expect("a difficulty", |e| match e {
            ClientEvent::Difficulty(d) => Some(*d),
            _ => None,
        })
        .await;
    assert_eq!(d, 0.5, "d= in the password sets the start difficulty");
    m.job().await;
    // An oversized line is refused and the connection closed.
    let long = format!(
        r#"{{"id":6,"method":"mining.subscribe","params":["{}"]}}"#,
        "x".repeat(10_000)
    );
    m.raw(&long).await;
    let rest = m.until_closed().await;
    assert!(
        rest.iter().any(|e| matches!(e, ClientEvent::Answer(r) if r.result.as_ref().is_err_and(|e| e.message.contains("longer than")))),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_in_mysql_is_refused_after_the_next_refresh() {
    let rig = rig(|c| c.users.refresh_secs = 1).await;
    // Authorized while enabled (the cache holds the user).
    let _ = rig.ready_miner().await;
    let store = sluice_store::Store::new(&sluice_testkit::mysql_url()).unwrap();
    {
        use mysql_async::prelude::Queryable;
        let mut conn = store.pool().get_conn().await.unwrap();
        conn.exec_drop("UPDATE users SET disabled = 1 WHERE id = ?", (rig.user_id,))
            .await
            .unwrap();
    }
    store.close().await;
    // The incremental refresh (rows changed since the last look) sees it.
    let refused =
        sluice_testkit::eventually(Duration::from_secs(20), "the user refused", || async {
            let mut m = rig.miner().await;
            let r = m.session.subscribe("t");
            m.send(r).await;
            m.answer().await.unwrap();
            let r = m.session.authorize(&format!("{}.w", rig.user), "x");
            m.send(r).await;
            m.answer().await.err()
        })
        .await;
    assert_eq!(refused.code, 24);
    assert!(refused.message.contains("disabled"), "{refused}");
}

/// A miner's JSON-RPC id comes back exactly as it sent it, whatever JSON it
/// is: integers beyond 64 bits, strings with escapes, null, arrays; on
/// answers and on errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_is_echoed_exactly_as_the_miner_wrote_it() {
    let rig = rig(|_| {}).await;
    let mut miner = rig.miner().await;
    let cases = [
        (
            "340282366920938463463374607431768211457",
            r#"{"id": 340282366920938463463374607431768211457, "method": "mining.subscribe", "params": ["test/1"]}"#,
        ),
        (
            r#""w\u00e9 \"1\"""#,
            r#"{"id": "w\u00e9 \"1\"", "method": "mining.authorize", "params": ["alice.rig1", "x"]}"#,
        ),
        (
            r#"[7, {"k": null}]"#,
            r#"{"id": [7, {"k": null}], "method": "mining.submit", "params": ["alice.rig1"]}"#,
        ),
        (
            "null",
            r#"{"id": null, "method": "mining.extranonce.subscribe", "params": []}"#,
        ),
        ("-0.5e-7", r#"{"method": 12, "id": -0.5e-7}"#),
    ];
    for (id, line) in cases {
        miner.raw(line).await;
        // Notifications (difficulty, job) may come before the answer.
        let answer = loop {
            let l = miner.raw_line().await.expect("an answer");
            if !l.contains("\"method\"") {
                break l;
            }
        };
        assert!(
            answer.starts_with(&format!(r#"{{"id":{id},"#)),
            "{line}\nanswered {answer}"
        );
    }
}
