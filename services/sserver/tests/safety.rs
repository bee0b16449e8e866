//! sserver's limits and lifecycle over TCP on the real pipeline: bans for
//! invalid-share floods, per-IP connection rate, malformed-line limits,
//! vardiff raising a fast miner's difficulty, PROXY protocol addresses in
//! share records, miner events, the drain's `client.reconnect`, and another
//! pool's solved-share log refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{DIFF, Want, record_where, rig};
use sluice_core::record::EventKind;
use sluice_stratum::Notification;
use sluice_stratum::client::ClientEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_share_floods_are_banned() {
    let rig = rig(|c| c.limits.max_rejects_per_minute = 5).await;
    let (mut m, job) = rig.ready_miner().await;
    for i in 0..5 {
        let low = m.mine(&job, DIFF, None, Want::Low);
        assert_eq!(m.submit(low).await.unwrap_err().code, 23, "reject {i}");
    }
    let low = m.mine(&job, DIFF, None, Want::Low);
    m.submit(low).await.unwrap_err();
    m.until_closed().await;
    assert!(
        m.closed,
        "the sixth rejection in a minute closes the connection"
    );
    // And the address is refused for the ban's duration.
    let mut again = rig.miner().await;
    let seen = again.until_closed().await;
    assert!(
        matches!(seen.as_slice(), [ClientEvent::Answer(r)]
            if r.result.as_ref().is_err_and(|e| e.message.contains("banned for"))),
        "banned: told so, then closed: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_rate_and_bad_lines_are_limited() {
    let rig = rig(|c| {
        c.limits.connection_burst_per_ip = 2.0;
        c.limits.connections_per_ip_per_sec = 0.01;
        c.limits.max_bad_lines = 2;
    })
    .await;
    // A miner through the handshake first: the server is serving.
    let (mut a, _) = rig.ready_miner().await;
    // The second connection is served (it gets an answer) before the third
    // opens: the server admits connections in their own tasks, so without
    // this the two could race for the last token.
    let mut b = rig.miner().await;
    let r = b.session.subscribe("sluice-test/1.0");
    b.send(r).await;
    b.expect("the second connection subscribed", |e| {
        matches!(e, ClientEvent::Subscribed(_)).then_some(())
    })
    .await;
    let mut c = rig.miner().await;
    let seen = c.until_closed().await;
    assert!(
        matches!(seen.as_slice(), [ClientEvent::Answer(r)]
            if r.result.as_ref().is_err_and(|e| e.message.contains("too many new connections"))),
        "the third connection in a burst of two is told why, then closed: {seen:?}"
    );
    for _ in 0..2 {
        a.raw("{garbage").await;
        assert!(a.answer().await.is_err());
    }
    a.raw("{garbage").await;
    a.until_closed().await;
    assert!(
        a.closed,
        "more malformed lines than allowed close the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_network_skips_the_per_address_limits() {
    let rig = rig(|c| {
        c.limits.connection_burst_per_ip = 1.0;
        c.limits.connections_per_ip_per_sec = 0.01;
        c.limits.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    // Five from one address where the burst is one: all mining (each gets
    // a job after authorizing).
    let mut miners = vec![];
    for _ in 0..5 {
        miners.push(rig.ready_miner().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_says_so_before_closing() {
    let rig = rig(|c| c.limits.max_connections = 1).await;
    let (_a, _) = rig.ready_miner().await;
    let mut b = rig.miner().await;
    // The refused miner has already written its subscribe, as miners do:
    // the line still arrives (no reset from unread input).
    let r = b.session.subscribe("sluice-test/1.0");
    b.send(r).await;
    let seen = b.until_closed().await;
    assert!(
        matches!(seen.as_slice(), [ClientEvent::Answer(r)]
            if r.result.as_ref().is_err_and(|e| e.message.contains("server is full"))),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vardiff_raises_a_fast_miner() {
    let rig = rig(|c| {
        c.difficulty.share_interval_secs = 5.0;
        c.difficulty.retarget_secs = 30.0;
    })
    .await;
    let (mut m, mut job) = rig.ready_miner().await;
    // Eight shares as fast as this machine finds them (a miner 40x too fast
    // or more): the fast ramp retargets within a second of the eighth.
    for _ in 0..8 {
        let s = m.mine(&job, DIFF, None, Want::Share);
        m.submit(s).await.unwrap();
    }
    let d = m
        .expect("a higher difficulty", |e| match e {
            ClientEvent::Difficulty(d) if *d > DIFF => Some(*d),
            _ => None,
        })
        .await;
    assert!(d >= 4.0 * DIFF, "{d}");
    job = m.job().await;
    let shares = rig.shares().await;
    // A share the miner found at the old difficulty before it read the
    // retarget still counts, at the old difficulty (a real miner has work in
    // flight); one meeting the new difficulty counts at the new one; one
    // meeting neither is refused.
    let only_old = loop {
        let s = m.mine(&job, DIFF, None, Want::Share);
        let h = sluice_stratum::client::header(
            &job,
            &m.extranonce1(),
            &s.extranonce2,
            s.ntime,
            s.nonce,
            None,
            common::MASK,
        );
        if !sluice_core::Difficulty::new(d)
            .unwrap()
            .to_target()
            .is_met_by(h.block_hash())
        {
            break s;
        }
    };
    m.submit(only_old.clone()).await.unwrap();
    let rec = record_where(
        &shares,
        Duration::from_secs(20),
        "the old-difficulty share",
        |s| s.nonce == only_old.nonce && s.extranonce2 == only_old.extranonce2,
    )
    .await;
    assert_eq!(rec.share_difficulty, DIFF);
    let new = m.mine(&job, d, None, Want::Share);
    m.submit(new.clone()).await.unwrap();
    let rec = record_where(
        &shares,
        Duration::from_secs(20),
        "the new-difficulty share",
        |s| s.nonce == new.nonce && s.extranonce2 == new.extranonce2,
    )
    .await;
    assert_eq!(rec.share_difficulty, d);
    let low = m.mine(&job, DIFF, None, Want::Low);
    assert_eq!(m.submit(low).await.unwrap_err().code, 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_gives_the_real_address_and_events_tell_connects() {
    let rig = rig(|c| c.proxy_protocol = true).await;
    let events = rig.events().await;
    let shares = rig.shares().await;
    let mut m = rig.miner().await;
    m.raw_bytes(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 3333\r\n")
        .await;
    let job = m.handshake(&format!("{}.edge", rig.user)).await;
    let s = m.mine(&job, DIFF, None, Want::Share);
    m.submit(s.clone()).await.unwrap();
    let rec = record_where(&shares, Duration::from_secs(20), "the share", |r| {
        r.nonce == s.nonce
    })
    .await;
    assert_eq!(rec.client_ip, std::net::IpAddr::from([203, 0, 113, 9]));
    let connected = record_where(&events, Duration::from_secs(20), "MinerConnected", |e| {
        matches!(&e.kind, EventKind::MinerConnected(_))
    })
    .await;
    let EventKind::MinerConnected(who) = connected.kind else {
        unreachable!()
    };
    assert_eq!(
        (who.user_id, who.worker_name.as_str()),
        (rig.user_id, "edge")
    );
    assert_eq!(who.miner_agent, "sluice-test/1.0");
    drop(m);
    record_where(
        &events,
        Duration::from_secs(20),
        "MinerDisconnected",
        |e| matches!(&e.kind, EventKind::MinerDisconnected(d) if d.worker_name == "edge"),
    )
    .await;
    // Without a header the connection is closed.
    let mut bare = rig.miner().await;
    bare.raw(r#"{"id":1,"method":"mining.subscribe","params":[]}"#)
        .await;
    assert!(bare.until_closed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_client_reconnect() {
    let rig = rig(|c| c.limits.drain_spread_secs = 0.5).await;
    let (mut m, _job) = rig.ready_miner().await;
    rig.server_ctx.shutdown.token().cancel();
    let rest = m.until_closed().await;
    assert!(
        rest.iter()
            .any(|e| matches!(e, ClientEvent::Notification(Notification::Reconnect { .. }))),
        "{rest:?}"
    );
    // No new connections once draining.
    let refused = tokio::net::TcpStream::connect(rig.stratum).await;
    if let Ok(s) = refused {
        let mut late = common::Miner::new(s);
        assert!(late.until_closed().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_share_log_of_another_pool_is_refused_naming_both() {
    let rig = common::rig(|_| {}).await;
    let kafka = &rig.config.kafka;
    let ours = sluice_bus::TopicOwner::of(kafka, &kafka.topics.solved_share)
        .await
        .unwrap();
    let theirs = sluice_bus::TopicOwner {
        cluster_id: "AnotherPoolsClusterId0".into(),
        ..ours.clone()
    };
    let log = std::env::temp_dir().join(sluice_testkit::unique_name("foreign-solved-"));
    std::fs::write(&log, format!("owner {}\n", theirs.to_line())).unwrap();
    let config = sserver::Config {
        listen: format!("127.0.0.1:{}", sluice_testkit::free_port())
            .parse()
            .unwrap(),
        solved_log: log.clone(),
        ..rig.config.clone()
    };
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        sserver::run(config, sluice_rig::context()),
    )
    .await
    .expect("refused at once, not served");
    let why = format!("{:#}", ended.unwrap_err());
    assert!(
        why.contains(&ours.to_string()) && why.contains(&theirs.to_string()),
        "names both: {why}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("owner {}\n", theirs.to_line()),
        "the other pool's log is left as it was"
    );
    std::fs::remove_file(&log).unwrap();
}
