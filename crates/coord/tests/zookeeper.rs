//! Id allocation and leader election against the real ZooKeeper of the local
//! stack (install/stack.sh up). Each test uses a root of its own.

use std::time::Duration;

use sluice_coord::{Coord, CoordConfig, CoordError};
use sluice_testkit::{eventually, unique_name, zookeeper};

fn config(root: &str) -> CoordConfig {
    CoordConfig {
        connect: zookeeper(),
        root: root.to_owned(),
        session_timeout: Duration::from_secs(6),
    }
}

async fn session(root: &str) -> Coord {
    Coord::connect(&config(root))
        .await
        .expect("ZooKeeper of the local stack is reachable")
}

#[tokio::test]
async fn ids_are_unique_lowest_free_and_freed_with_the_session() {
    let root = unique_name("/sluice-test-");
    let (a, b) = (session(&root).await, session(&root).await);
    let id_a = a.acquire_id("sserver", 1..=255, b"a").await.unwrap();
    let id_b = b.acquire_id("sserver", 1..=255, b"b").await.unwrap();
    assert_eq!((id_a.id(), id_b.id()), (1, 2));

    // A closes its session: id 1 becomes free for the next server.
    drop(id_a);
    drop(a);
    let c = session(&root).await;
    let id_c = eventually(Duration::from_secs(10), "id 1 to be freed", || async {
        let lease = c.acquire_id("sserver", 1..=255, b"c").await.unwrap();
        if lease.id() == 1 {
            Some(lease)
        } else {
            lease.release().await.ok().and(None)
        }
    })
    .await;
    assert_eq!(id_c.id(), 1);
    assert_eq!(id_b.id(), 2, "B keeps its id throughout");
}

#[tokio::test]
async fn a_full_range_is_a_clear_error() {
    let root = unique_name("/sluice-test-");
    let sessions = [
        session(&root).await,
        session(&root).await,
        session(&root).await,
    ];
    let _one = sessions[0].acquire_id("sserver", 1..=2, b"").await.unwrap();
    let _two = sessions[1].acquire_id("sserver", 1..=2, b"").await.unwrap();
    let err = sessions[2]
        .acquire_id("sserver", 1..=2, b"")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoordError::NoFreeId {
                first: 1,
                last: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn released_id_is_reported_lost_to_its_holder() {
    let root = unique_name("/sluice-test-");
    let a = session(&root).await;
    let lease = a.acquire_id("sserver", 1..=255, b"").await.unwrap();
    let other = session(&root).await;
    // Someone (an operator) deletes the node: the holder must notice.
    let path = lease.path().to_owned();
    let deleter = tokio::spawn(async move {
        let c = zookeeper_client::Client::connect(&zookeeper())
            .await
            .unwrap();
        c.delete(&path, None).await.unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), lease.lost())
        .await
        .expect("loss noticed");
    deleter.await.unwrap();
    drop(other);
}

#[tokio::test]
async fn standby_takes_over_with_a_higher_epoch() {
    let root = unique_name("/sluice-test-");
    let (a, b) = (session(&root).await, session(&root).await);
    let cand_a = a.candidate("jobmaker", b"a").await.unwrap();
    let cand_b = b.candidate("jobmaker", b"b").await.unwrap();
    let lead_a = cand_a.leadership().await.unwrap();

    // B must not lead while A does.
    let b_wait = tokio::spawn(async move { (cand_b.leadership().await, cand_b) });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), async {
            while !b_wait.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err(),
        "B became leader while A was alive"
    );

    // A's process dies (session closed): B leads within seconds, with a higher epoch.
    drop(cand_a);
    drop(a);
    let (lead_b, _cand_b) = tokio::time::timeout(Duration::from_secs(10), b_wait)
        .await
        .expect("B elected")
        .unwrap();
    let lead_b = lead_b.unwrap();
    assert!(
        lead_b.epoch > lead_a.epoch,
        "{} !> {}",
        lead_b.epoch,
        lead_a.epoch
    );
}

#[tokio::test]
async fn a_leader_notices_when_its_node_is_gone() {
    let root = unique_name("/sluice-test-");
    let s = session(&root).await;
    let candidate = s.candidate("jobmaker", b"").await.unwrap();
    candidate.leadership().await.unwrap();
    let path = candidate.path();
    let operator = zookeeper_client::Client::connect(&zookeeper())
        .await
        .unwrap();
    let watch = tokio::spawn(async move { candidate.lost().await });
    operator.delete(&path, None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("loss noticed")
        .unwrap();
}

#[tokio::test]
async fn resigning_hands_over_at_once() {
    let root = unique_name("/sluice-test-");
    let s = session(&root).await;
    let first = s.candidate("jobmaker", b"").await.unwrap();
    let second = s.candidate("jobmaker", b"").await.unwrap();
    let e1 = first.leadership().await.unwrap().epoch;
    first.resign().await.unwrap();
    let e2 = tokio::time::timeout(Duration::from_secs(5), second.leadership())
        .await
        .unwrap()
        .unwrap()
        .epoch;
    assert!(e2 > e1);
}

#[tokio::test]
async fn an_unreachable_ensemble_is_a_clear_error() {
    let cfg = CoordConfig {
        connect: "127.0.0.1:1".to_owned(),
        ..config("/sluice")
    };
    let err = tokio::time::timeout(Duration::from_secs(20), Coord::connect(&cfg))
        .await
        .expect("connect gives up instead of hanging")
        .unwrap_err();
    assert!(
        err.to_string().starts_with("zookeeper at 127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_relative_root_is_refused() {
    let err = Coord::connect(&config("sluice")).await.unwrap_err();
    assert!(matches!(err, CoordError::BadRoot(_)));
}
