//! The bus against the real Kafka broker of the local stack (install/stack.sh
//! up). Every test uses topics of its own, named `sluice-test-*`
//! (install/test.sh deletes them before the next run).

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_bus::{
    BusConfig, GroupConsumer, LogConsumer, Producer, Start, TailConsumer, Topic, TopicSpec,
    create_topics, delete_topics, fetch_partitions, list_topics,
};
mod support;
use support::event;

use sluice_core::record::{Event, EventKind, Figure};
use sluice_proto::Payload;
use sluice_testkit::{kafka_brokers, unique_name};

fn config() -> BusConfig {
    BusConfig {
        brokers: kafka_brokers(),
        client_id: unique_name("bus-test-"),
        ..BusConfig::default()
    }
}

async fn new_topic(config: &BusConfig, partitions: i32) -> Topic<Event> {
    let name = unique_name("sluice-test-");
    let spec = TopicSpec::scratch(&name, partitions);
    let applied = create_topics(config, std::slice::from_ref(&spec))
        .await
        .expect("broker of the local stack is reachable");
    assert_eq!(applied.created, vec![name.clone()]);
    // Creating again is not an error and changes nothing.
    let again = create_topics(config, &[spec]).await.unwrap();
    assert_eq!(again, sluice_bus::TopicsApplied::default());
    Topic::new(name)
}

async fn next_within<T: Payload>(c: &GroupConsumer<T>) -> sluice_bus::Record<T> {
    tokio::time::timeout(Duration::from_secs(30), c.next())
        .await
        .expect("a message within 30 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_created_with_their_partitions() {
    let config = config();
    let topic = new_topic(&config, 4).await;
    let mut partitions = fetch_partitions(&config, topic.name()).await.unwrap();
    partitions.sort_unstable();
    assert_eq!(partitions, vec![0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_says_its_id_and_a_topic_owner_reads_back_from_its_line() {
    let config = config();
    let owner = sluice_bus::TopicOwner::of(&config, "BtcShare")
        .await
        .unwrap();
    // KRaft's cluster ids are 16 bytes in URL-safe base64: 22 characters.
    assert_eq!(owner.cluster_id.len(), 22, "{owner}");
    assert_eq!(
        sluice_bus::cluster_id(&config).await.unwrap(),
        owner.cluster_id,
        "the same cluster, the same id"
    );
    let line = owner.to_line();
    assert_eq!(
        sluice_bus::TopicOwner::from_line(&line),
        Some(owner.clone())
    );
    assert_eq!(sluice_bus::TopicOwner::from_line("solved 00ff"), None);
    // A broker nobody listens at: an error naming the request, not a hang.
    let nowhere = BusConfig {
        brokers: "127.0.0.1:1".into(),
        ..config
    };
    let err = sluice_bus::cluster_id(&nowhere).await.unwrap_err();
    assert!(err.to_string().contains("cluster id"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_looked_up_by_its_offset_and_one_the_partition_lacks_is_none() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 0).unwrap();
    for n in 0..5 {
        producer.send(&topic, b"k", &event(n)).await.unwrap();
    }
    let within = Duration::from_secs(10);
    let third = sluice_bus::record_at(&config, &topic, 0, 2, within)
        .await
        .unwrap()
        .expect("offset 2 is held");
    assert_eq!((third.offset, third.value), (2, event(2)));
    for (partition, offset) in [(0, 5), (0, 2_037), (0, -1), (3, 0)] {
        assert!(
            sluice_bus::record_at(&config, &topic, partition, offset, within)
                .await
                .unwrap()
                .is_none(),
            "{partition}/{offset} is not held"
        );
    }
}

/// A current-thread runtime on purpose: no blocking call may panic it.
#[tokio::test]
async fn tail_consumer_starts_n_from_the_end_then_follows() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 0).unwrap();
    for n in 0..10 {
        let d = producer.send(&topic, b"k", &event(n)).await.unwrap();
        assert_eq!(d.offset, n as i64, "one partition, offsets in order");
    }
    let tail = TailConsumer::new(&config, &topic, 3).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(30), tail.next())
            .await
            .unwrap()
            .unwrap();
        got.push(r.value.timestamp_ms);
    }
    assert_eq!(got, vec![7, 8, 9]);
    producer.send(&topic, b"k", &event(10)).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.value, event(10));
    assert_eq!(r.key, b"k");
}

#[tokio::test(flavor = "multi_thread")]
async fn group_consumer_resumes_after_the_last_done_record() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    let group = unique_name("group-");
    let producer = Producer::new(&config, 5).unwrap();
    for n in 0..10 {
        producer.send(&topic, b"k", &event(n)).await.unwrap();
    }

    // First consumer reads 7 but finishes the effect of only 5, then stops.
    let first = GroupConsumer::<Event>::new(&config, &topic, &group).unwrap();
    for n in 0..7 {
        let r = next_within(&first).await;
        assert_eq!(r.value.timestamp_ms, n);
        if n < 5 {
            first.done(&r).unwrap();
        }
    }
    first.close().await.unwrap();

    // Its successor sees everything not done: at least once, nothing lost.
    let second = GroupConsumer::<Event>::new(&config, &topic, &group).unwrap();
    for n in 5..10 {
        let r = next_within(&second).await;
        assert_eq!(r.value.timestamp_ms, n);
        second.done(&r).unwrap();
    }
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn log_consumer_starts_at_the_later_of_committed_and_resume() {
    let config = config();
    let topic = new_topic(&config, 2).await;
    let group = unique_name("log-");
    let producer = Producer::new(&config, 0).unwrap();
    for n in 0..6 {
        let key = if n % 2 == 0 { b"even" } else { b"odd!" };
        producer.send(&topic, key, &event(n)).await.unwrap();
    }
    let counts = fetch_watermarks_by_partition(&config, &topic).await;
    // A new group with nothing to resume reads from the start.
    let none = std::collections::HashMap::new();
    let (c, starts) = LogConsumer::<Event>::new(&config, &topic, &group, &none)
        .await
        .unwrap();
    assert!(starts.iter().all(|s| s.offset == 0));
    assert_eq!(starts.iter().map(|s| s.high).sum::<i64>(), 6);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = tokio::time::timeout(Duration::from_secs(30), c.next())
            .await
            .unwrap()
            .unwrap();
        seen.push(r.value.timestamp_ms);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..6).collect::<Vec<_>>());
    // Commit one past the first message of every partition.
    let committed: std::collections::HashMap<i32, i64> = counts.keys().map(|&p| (p, 1)).collect();
    c.commit(&committed).unwrap();
    let p0 = *counts.keys().min().unwrap();
    let resume = std::collections::HashMap::from([(p0, 2)]);
    let starts = sluice_testkit::eventually(Duration::from_secs(30), "the commit lands", || {
        let (config, topic, group, resume) = (&config, &topic, &group, &resume);
        async move {
            let (_, starts) = LogConsumer::<Event>::new(config, topic, group, resume)
                .await
                .unwrap();
            starts
                .iter()
                .all(|s| s.reset || s.offset >= s.high.min(1))
                .then_some(starts)
        }
    })
    .await;
    for Start {
        partition,
        offset,
        high,
        reset,
    } in starts
    {
        let want = if partition == p0 { 2 } else { 1 };
        assert_eq!(reset, want > high, "partition {partition}");
        let expected = if reset { 0 } else { want };
        assert_eq!(offset, expected, "partition {partition}");
    }
    // A position past a partition's end is an older log's (a recreated
    // topic numbers from 0 again): read this one from its start.
    let beyond = std::collections::HashMap::from([(p0, 1_000)]);
    let (_, starts) = LogConsumer::<Event>::new(&config, &topic, &unique_name("group-"), &beyond)
        .await
        .unwrap();
    let s = starts.iter().find(|s| s.partition == p0).unwrap();
    assert!(s.reset && s.offset == 0, "{s:?}");
}

async fn fetch_watermarks_by_partition(
    config: &BusConfig,
    topic: &Topic<Event>,
) -> std::collections::HashMap<i32, i64> {
    sluice_bus::fetch_watermarks(config, topic.name())
        .await
        .unwrap()
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_counted_and_skipped() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 0).unwrap();
    producer
        .send_bytes(topic.name(), b"k", &[0xff, 0xff, 0xff])
        .await
        .unwrap();
    producer.send(&topic, b"k", &event(42)).await.unwrap();
    let consumer = GroupConsumer::<Event>::new(&config, &topic, &unique_name("group-")).unwrap();
    let r = next_within(&consumer).await;
    assert_eq!(r.value, event(42));
    assert_eq!(r.offset, 1);
    assert_eq!(consumer.poison_count(), 1);
    // ... and on /metrics, by topic.
    let metrics = sluice_service::Metrics::default();
    sluice_bus::register_metrics(&metrics);
    let line = format!(
        "sluice_bus_poison_messages_total{{topic=\"{}\"}} 1",
        topic.name()
    );
    assert!(metrics.encode().contains(&line), "{}", metrics.encode());
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_messages_spread_over_partitions_and_all_arrive() {
    let config = config();
    let topic = new_topic(&config, 4).await;
    let producer = Producer::new(&config, 5).unwrap();
    let sends = (0..200u64).map(|n| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            producer
                .send(&topic, &n.to_le_bytes(), &event(n))
                .await
                .unwrap()
        }
    });
    let deliveries = futures::future::join_all(sends).await;
    let used: std::collections::BTreeSet<i32> = deliveries.iter().map(|d| d.partition).collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
    let consumer = GroupConsumer::<Event>::new(&config, &topic, &unique_name("group-")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 200 {
        let r = next_within(&consumer).await;
        seen.insert(r.value.timestamp_ms);
        consumer.done(&r).unwrap();
    }
    assert_eq!(seen, (0..200).collect());
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_local_queue_makes_senders_wait_and_loses_nothing() {
    let mut config = config();
    config
        .librdkafka
        .insert("queue.buffering.max.messages".into(), "5".into());
    let topic = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 5).unwrap();
    let sends = (0..300u64).map(|n| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move { producer.send(&topic, b"k", &event(n)).await }
    });
    for result in futures::future::join_all(sends).await {
        result.expect("every send is delivered, none dropped");
    }
    assert!(
        producer.queue_full_waits() > 0,
        "the 5-message queue filled up"
    );
    let consumer = GroupConsumer::<Event>::new(&config, &topic, &unique_name("group-")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 300 {
        seen.insert(next_within(&consumer).await.value.timestamp_ms);
    }
    assert_eq!(seen, (0..300).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_broker_fails_the_send_instead_of_hanging() {
    let config = BusConfig {
        brokers: "127.0.0.1:1".into(),
        message_timeout_ms: 2_000,
        ..config()
    };
    let producer = Producer::new(&config, 0).unwrap();
    let topic: Topic<Event> = Topic::new("nowhere");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        producer.send(&topic, b"k", &event(1)),
    )
    .await
    .expect("the send gives up after message_timeout_ms")
    .unwrap_err();
    assert!(err.to_string().starts_with("producing to nowhere"), "{err}");
    assert!(producer.ping(Duration::from_secs(1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_arrive_with_identity_uptime_and_a_last_stopping_beat() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 0).unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let identity = sluice_bus::Identity::new("testsvc", "i-1", "host-1", "9.9.9");
    let beat = tokio::spawn(sluice_bus::heartbeat(
        producer,
        topic.clone(),
        identity,
        Duration::from_millis(100),
        || {
            (
                true,
                vec![Figure {
                    name: "connections".into(),
                    value: 3.0,
                }],
                vec!["mysql: connection refused".into()],
            )
        },
        token.clone(),
    ));
    let consumer = GroupConsumer::<Event>::new(&config, &topic, &unique_name("group-")).unwrap();
    let first = next_within(&consumer).await;
    assert_eq!(first.key, b"i-1");
    let EventKind::ServiceStatus(s) = first.value.kind else {
        panic!("not a status")
    };
    assert_eq!(
        (s.service.as_str(), s.instance.as_str(), s.version.as_str()),
        ("testsvc", "i-1", "9.9.9")
    );
    assert!(s.healthy);
    assert_eq!(s.host, "host-1");
    assert_eq!(s.problems, ["mysql: connection refused"]);
    assert_eq!(
        s.figures,
        vec![Figure {
            name: "connections".into(),
            value: 3.0
        }]
    );
    token.cancel();
    beat.await.unwrap();
    // The last beat says the service is stopping.
    loop {
        let EventKind::ServiceStatus(s) = next_within(&consumer).await.value.kind else {
            panic!()
        };
        if !s.healthy {
            assert!(s.figures.is_empty());
            assert_eq!(s.problems, ["stopping"]);
            break;
        }
    }
}

/// A topic's settings as the broker reports them.
async fn topic_setting(config: &BusConfig, topic: &str, key: &str) -> String {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .unwrap();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource.get(key).unwrap().value.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_topics_are_brought_to_their_declared_settings() {
    let config = config();
    let name = unique_name("sluice-test-");
    let mut spec = TopicSpec::scratch(&name, 1);
    create_topics(&config, std::slice::from_ref(&spec))
        .await
        .unwrap();
    assert_eq!(
        topic_setting(&config, &name, "max.message.bytes").await,
        (16 * 1024 * 1024 + 64 * 1024).to_string(),
        "a full block's template fits"
    );
    assert_eq!(
        topic_setting(&config, &name, "cleanup.policy").await,
        "delete"
    );

    // The operator declares a longer retention and more partitions.
    spec.retention_ms = 7_200_000;
    spec.partitions = 3;
    let applied = create_topics(&config, std::slice::from_ref(&spec))
        .await
        .unwrap();
    assert_eq!(applied.updated, vec![name.clone()]);
    assert_eq!(
        topic_setting(&config, &name, "retention.ms").await,
        "7200000"
    );
    let partitions = fetch_partitions(&config, &name).await.unwrap();
    assert_eq!(partitions.len(), 3);
    let again = create_topics(&config, std::slice::from_ref(&spec))
        .await
        .unwrap();
    assert!(again.updated.is_empty() && again.created.is_empty());

    // Kafka cannot take partitions away: a clear error, nothing changed.
    spec.partitions = 2;
    let error = create_topics(&config, &[spec]).await.unwrap_err();
    assert!(
        error.to_string().contains("more than the 2 declared"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_topic_deletes_only_that_topic() {
    let config = config();
    let doomed = new_topic(&config, 2).await;
    let kept = new_topic(&config, 1).await;
    let producer = Producer::new(&config, 0).unwrap();
    producer.send(&kept, b"k", &event(7)).await.unwrap();
    delete_topics(&config, &[doomed.name(), "sluice-test-never-created"])
        .await
        .unwrap();
    sluice_testkit::eventually(Duration::from_secs(30), "the topic to be gone", || async {
        let names = list_topics(&config).await.unwrap();
        (!names.iter().any(|n| n == doomed.name())).then_some(())
    })
    .await;
    let names = list_topics(&config).await.unwrap();
    assert!(names.iter().any(|n| n == kept.name()));
    assert!(
        names.iter().all(|n| !n.starts_with("__")),
        "internal topics are not listed"
    );
    let tail = TailConsumer::<Event>::new(&config, &kept, 1).await.unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value, event(7), "the other topic keeps its messages");
}

/// A full block's template is several megabytes of transactions that do not
/// compress: such a message is written and read back whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_twelve_megabyte_message_round_trips() {
    let config = config();
    let topic = new_topic(&config, 1).await;
    // xorshift: bytes lz4 cannot shrink, spelled as letters for a string field.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: String = (0..12 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut big = event(1);
    if let EventKind::ServiceStatus(s) = &mut big.kind {
        s.host = noise;
    }
    let tail = TailConsumer::<Event>::new(&config, &topic, 0)
        .await
        .unwrap();
    let producer = Producer::new(&config, 0).unwrap();
    producer.send(&topic, b"k", &big).await.unwrap();
    let record = tokio::time::timeout(Duration::from_secs(60), tail.next())
        .await
        .expect("the message within 60 s")
        .unwrap();
    assert_eq!(tail.poison_count(), 0);
    assert!(record.value == big, "the message arrives unchanged");
}

/// Shares are enqueued, not awaited: one the broker refuses (here: its
/// topic does not exist yet, and the 1 s message timeout passes) is sent
/// again until it is written, once; so is one librdkafka refuses outright.
#[tokio::test(flavor = "multi_thread")]
async fn an_enqueued_message_the_broker_refuses_is_sent_again_until_written() {
    let mut config = BusConfig {
        message_timeout_ms: 1_000,
        ..config()
    };
    // Once the cluster says the topic does not exist, librdkafka refuses
    // messages for it at once instead of holding them for 30 s.
    config
        .librdkafka
        .insert("topic.metadata.propagation.max.ms".into(), "10".into());
    let name = unique_name("sluice-test-");
    let topic: Topic<Event> = Topic::new(name.clone());
    let producer = Producer::new(&config, 5).unwrap();
    producer.enqueue(&topic, b"k", &event(42)).await;
    sluice_testkit::eventually(Duration::from_secs(60), "a refusal", || {
        let refused = producer.refused();
        async move { (refused > 0).then_some(()) }
    })
    .await;
    assert_eq!(producer.unacknowledged(), 1, "still waiting to be written");
    // librdkafka now knows the topic is missing and refuses new messages
    // for it at once: the next enqueue waits and hands its message over
    // again until it is taken, it does not fail.
    let second = tokio::spawn({
        let (producer, topic) = (producer.clone(), topic.clone());
        async move { producer.enqueue(&topic, b"k", &event(43)).await }
    });
    create_topics(&config, &[TopicSpec::scratch(&name, 1)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("taken once the topic exists")
        .unwrap();
    producer
        .flush(Duration::from_secs(60))
        .await
        .expect("written once the topic exists");
    assert_eq!(producer.unacknowledged(), 0);
    assert!(producer.stalled_for().is_zero());
    let (_, low, high) = sluice_bus::fetch_watermarks(&config, &name).await.unwrap()[0];
    assert_eq!(high - low, 2, "each written exactly once");
    let tail = TailConsumer::<Event>::new(&config, &topic, 2)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let record = tokio::time::timeout(Duration::from_secs(30), tail.next())
            .await
            .unwrap()
            .unwrap();
        got.push(record.value.timestamp_ms);
    }
    got.sort_unstable();
    assert_eq!(got, [42, 43]);
}
