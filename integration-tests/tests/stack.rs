//! The local stack as install/stack.sh leaves it: the pool's topics with
//! their partitions, and the pool database at the current schema.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use sluice_bus::{BusConfig, fetch_partitions};
use sluice_store::Store;
use sluice_testkit::{kafka_brokers, mysql_url};

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_topics_exist_with_their_partitions() {
    let config = BusConfig {
        brokers: kafka_brokers(),
        ..BusConfig::default()
    };
    let t = config.topics.clone();
    for (topic, partitions) in [
        (t.raw_gbt, 1),
        (t.job, 1),
        (t.share, 4),
        (t.solved_share, 1),
        (t.event, 1),
    ] {
        let got = fetch_partitions(&config, &topic).await.unwrap();
        assert_eq!(got.len(), partitions, "{topic}");
    }
}

#[tokio::test]
async fn the_pool_database_is_migrated() {
    let store = Store::new(&mysql_url()).unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), Vec::<u32>::new());
    store.close().await;
}
