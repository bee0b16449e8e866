//! Bench binary: one broker hop, as every step of the new-block path takes it.
//! A producer (acks=all, linger 0) sends a message to a fresh topic while a
//! tail consumer waits on it; the time from the send to the consumer's
//! receipt is one sample. Messages are spaced out so that every one finds the
//! consumer's fetch parked at the broker, the case of a new block. Needs the
//! local stack's broker (install/stack.sh up).
//!
//!     cargo bench -p sluice-bus --bench hop [-- N [FETCH_WAIT_MS]]
//!
//! FETCH_WAIT_MS is the consumer's `fetch.wait.max.ms` (librdkafka's default,
//! 500, when not given).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use sluice_bus::{
    BusConfig, Producer, TailConsumer, Topic, TopicSpec, create_topics, delete_topics,
};
#[path = "../tests/support/mod.rs"]
mod support;
use support::event;

use sluice_core::record::Event;
use sluice_testkit::{kafka_brokers, unique_name};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let n = args.next().unwrap_or(200) as usize;
    let fetch_wait = args.next();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = BusConfig {
            brokers: kafka_brokers(),
            client_id: unique_name("sluice-test-hop-"),
            ..BusConfig::default()
        };
        let name = unique_name("sluice-test-hop-");
        create_topics(&config, &[TopicSpec::scratch(&name, 1)])
            .await
            .unwrap();
        let topic: Topic<Event> = Topic::new(name.clone());
        let producer = Producer::new(&config, 0).unwrap();
        if let Some(ms) = fetch_wait {
            config
                .librdkafka
                .insert("fetch.wait.max.ms".into(), ms.to_string());
        }
        let consumer = TailConsumer::new(&config, &topic, 0).await.unwrap();
        // Warm up: the first fetch and the producer's id.
        producer.send(&topic, b"k", &event(0)).await.unwrap();
        consumer.next().await.unwrap();
        let mut samples = Vec::with_capacity(n);
        for i in 1..=n as u64 {
            // Let the consumer's next fetch park at the broker.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let message = event(i);
            let started = Instant::now();
            let send = producer.send(&topic, b"k", &message);
            let (sent, got) = tokio::join!(send, consumer.next());
            sent.unwrap();
            assert_eq!(got.unwrap().value.timestamp_ms, i);
            samples.push(started.elapsed());
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "hop: n={n} fetch.wait.max.ms={} min={:?} median={:?} p90={:?} p99={:?} max={:?}",
            fetch_wait.map_or("default (500)".to_owned(), |w| w.to_string()),
            samples[0],
            at(0.5),
            at(0.9),
            at(0.99),
            samples[samples.len() - 1]
        );
        delete_topics(&config, &[&name]).await.unwrap();
    });
}
