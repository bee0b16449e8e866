//! sserver heartbeats make the servers view; miner connects name workers
//! and their mining software in `mining_workers`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{MINUTE, Rig, TWO_32, num};
use sluice_core::ShareStatus::Accepted;
use sluice_core::record::{Event, EventKind, Figure, MinerIdentity, ServiceStatus};

fn heartbeat(instance: &str, at_ms: u64) -> Event {
    let figure = |name: &str, value: f64| Figure {
        name: name.into(),
        value,
    };
    Event {
        timestamp_ms: at_ms,
        kind: EventKind::ServiceStatus(ServiceStatus {
            service: "sserver".into(),
            instance: instance.into(),
            host: "edge-1".into(),
            version: "0.1.0".into(),
            uptime_secs: 42,
            healthy: true,
            figures: vec![
                figure("server_id", 7.0),
                figure("connections", 3.0),
                figure("shares_per_sec", 0.5),
                figure("hashrate", 1.0e12),
                figure("last_job_age_secs", 4.0),
            ],
            problems: Vec::new(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_from_heartbeats_and_agents_from_connects() {
    let mut rig = Rig::new().await;
    let now = rig.t0 + 20 * MINUTE;
    rig.send_event(&heartbeat("sserver-a", now - 5_000)).await;
    // A server that stopped beating a minute ago is listed, but down.
    rig.send_event(&heartbeat("sserver-b", now - MINUTE)).await;
    // Other services' heartbeats are not servers (but services).
    let mut other = heartbeat("jobmaker-a", now);
    if let EventKind::ServiceStatus(s) = &mut other.kind {
        s.service = "jobmaker".into();
        s.healthy = false;
        s.problems = vec!["templates: no template for 75s".into()];
    }
    rig.send_event(&other).await;
    rig.send_event(&Event {
        timestamp_ms: now,
        kind: EventKind::MinerConnected(MinerIdentity {
            user_id: rig.uid(),
            user_name: rig.user.1.clone(),
            worker_id: 3,
            worker_name: "rig3".into(),
            server_id: 7,
            extranonce1: 0x0700_0003,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            miner_agent: "cgminer/4.12.1".into(),
        }),
    })
    .await;
    rig.send(&rig.share(3, Accepted, 8.0, now - 30_000)).await;
    rig.start();
    rig.initialized().await;

    let servers = rig
        .get_when("/api/v1/servers", "both sservers listed", |s, v| {
            s == 200 && v["servers"].as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
    let a = &servers["servers"][0];
    assert_eq!(
        (&a["instance"], &a["host"], &a["up"]),
        (&"sserver-a".into(), &"edge-1".into(), &true.into())
    );
    assert_eq!(
        (
            num(&a["server_id"]),
            num(&a["connections"]),
            num(&a["last_job_age_secs"])
        ),
        (7.0, 3.0, 4.0)
    );
    assert_eq!(
        num(&a["from_shares"]["hashrate"]["5m"]),
        8.0 * TWO_32 / 300.0
    );
    assert_eq!(servers["servers"][1]["up"], false, "{servers}");

    // Every service, with why it is unhealthy.
    let (status, services) = rig.get("/api/v1/services").await.unwrap();
    assert_eq!(status, 200, "{services}");
    let find = |service: &str, instance: &str| {
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == service && s["instance"] == instance)
            .cloned()
            .unwrap_or_else(|| panic!("{service} {instance} not in {services}"))
    };
    let jobmaker = find("jobmaker", "jobmaker-a");
    assert_eq!(
        (&jobmaker["up"], &jobmaker["healthy"]),
        (&true.into(), &false.into())
    );
    assert_eq!(jobmaker["problems"][0], "templates: no template for 75s");
    let b = find("sserver", "sserver-b");
    assert_eq!(b["up"], false);
    assert_eq!(
        num(&find("sserver", "sserver-a")["figures"]["connections"]),
        3.0
    );

    let row = sluice_testkit::eventually(Duration::from_secs(30), "worker 3's agent", || async {
        rig.worker_row(3)
            .await
            .filter(|r| !r.agent.is_empty() && r.accept_count == 1)
    })
    .await;
    assert_eq!(
        (row.name.as_str(), row.agent.as_str()),
        ("rig3", "cgminer/4.12.1")
    );
    assert_eq!(row.accept[0], 8.0);
    // statshttpd beats too, like every service.
    let beats = sluice_bus::TailConsumer::<Event>::new(&rig.config.kafka, &rig.events, 100)
        .await
        .unwrap();
    let beat = beats
        .next_matching(Duration::from_secs(30), |e| {
            matches!(&e.kind, EventKind::ServiceStatus(s) if s.service == "statshttpd"
                && s.figures.iter().any(|f| f.name == "workers" && f.value >= 1.0))
        })
        .await
        .unwrap()
        .expect("a statshttpd heartbeat within 30 s");
    let EventKind::ServiceStatus(s) = beat.kind else {
        unreachable!()
    };
    assert!(s.healthy, "{s:?}");
    rig.stop().await;
    std::fs::remove_dir_all(&rig.config.data_dir).unwrap();
}
