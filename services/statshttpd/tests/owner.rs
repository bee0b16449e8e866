//! statshttpd counts only its own pool's share log: a file of another
//! topic or cluster is refused naming both, and the rebuilt figures are
//! checked against the topic's records they came from (a share log of the
//! first format, which named no owner, must agree with the topic).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::Rig;
use sluice_bus::{TopicOwner, TopicSpec, create_topics};
use sluice_core::record::{ShareRecord, ShareStatus::Accepted};
use sluice_proto::Payload;
use statshttpd::sharelog;

/// `shares` as a share log of the first format (no owner line) at `path`.
fn write_first_format(path: &Path, shares: &[(i32, i64, &ShareRecord)]) {
    let mut bytes = b"SLUICE-SHARELOG1".to_vec();
    for (partition, offset, share) in shares {
        let body = share.encode_to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&partition.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&body);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_topic_s_share_log_is_refused_naming_both() {
    let mut rig = Rig::new().await;
    rig.start();
    rig.initialized().await;
    let t = rig.t0 + 10 * common::MINUTE;
    rig.send(&rig.share(1, Accepted, 2.0, t)).await;
    let path = sharelog::path_of(&rig.config.data_dir, rig.day());
    sluice_testkit::eventually(Duration::from_secs(20), "the share logged", || async {
        (sharelog::read(&path, |_| {}).unwrap() > 0).then_some(())
    })
    .await;
    rig.stop().await;
    let ours = TopicOwner::of(&rig.config.kafka, &rig.config.kafka.topics.share)
        .await
        .unwrap();
    assert_eq!(
        sharelog::header(&path).unwrap(),
        sharelog::Header::Owned(ours.clone())
    );

    // A second pool on the same broker, its own Share topic, the same data_dir.
    let other = sluice_testkit::unique_name("sluice-test-share-");
    create_topics(&rig.config.kafka, &[TopicSpec::scratch(&other, 1)])
        .await
        .unwrap();
    rig.config.kafka.topics.share = other.clone();
    rig.start();
    let why = rig.refused().await;
    assert!(
        why.contains(&ours.to_string())
            && why.contains(&format!(
                "topic {other} of Kafka cluster {}",
                ours.cluster_id
            )),
        "the error names both: {why}"
    );
    assert!(why.contains("another pool's share log"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_log_that_disagrees_with_the_topic_is_refused() {
    let mut rig = Rig::new().await;
    let t = rig.t0 + 10 * common::MINUTE;
    let real = rig.share(1, Accepted, 2.0, t);
    let on_topic = rig
        .producer
        .send(&rig.shares, &rig.uid().to_be_bytes(), &real)
        .await
        .unwrap();
    let path = sharelog::path_of(&rig.config.data_dir, rig.day());
    let owner = TopicOwner::of(&rig.config.kafka, &rig.config.kafka.topics.share)
        .await
        .unwrap();

    // This pool's owner line, but not the share the topic holds there (a
    // pool figure no share on the topic explains).
    let forged = rig.share(1, Accepted, 3.4e13, t);
    let mut w = sharelog::Writer::new(&rig.config.data_dir, owner).unwrap();
    w.append(on_topic.partition, on_topic.offset, &forged)
        .unwrap();
    w.sync().unwrap();
    drop(w);
    rig.start();
    let why = rig.refused().await;
    assert!(why.contains("is not the topic's"), "{why}");

    // The first format names no owner: a file whose last share is past the
    // topic's end is nobody's this pool can vouch for.
    write_first_format(&path, &[(on_topic.partition, 2_037, &real)]);
    rig.start();
    let why = rig.refused().await;
    assert!(why.contains("names no owner"), "{why}");

    // A file of the first format that agrees with the topic is this pool's:
    // counted once, and the pool reads on from it.
    write_first_format(&path, &[(on_topic.partition, on_topic.offset, &real)]);
    rig.start();
    rig.initialized().await;
    let pool = rig
        .get_when("/api/v1/pool", "the logged share counted", |s, v| {
            s == 200 && v["shares"]["1h"]["accept"].as_f64() == Some(2.0)
        })
        .await;
    assert_eq!(pool["shares"]["1h"]["accept"].as_f64(), Some(2.0), "{pool}");
    rig.stop().await;
}
