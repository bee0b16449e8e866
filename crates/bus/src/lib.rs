//! Kafka for Sluice: typed topics, an idempotent producer with backpressure,
//! and the two consumption modes the topics need (ARCHITECTURE.md §4):
//!
//! - [`TailConsumer`]: state topics (RawGbt, Job) read the latest N messages
//!   from the tail, then follow; no group, no offsets.
//! - [`GroupConsumer`]: log topics (Share, SolvedShare, Event) read in a
//!   consumer group, at least once: an offset is stored only when the caller
//!   says the message's effect is durable, and committed periodically, on
//!   rebalance and on shutdown. Undecodable (poison) messages are counted,
//!   logged and skipped.
//!
//! The topics and their settings are declared once, in [`TopicNames::specs`].
//! Only plain Kafka features are used: the local stack runs one Apache Kafka
//! broker, production a replicated cluster.

mod admin;
mod config;
mod consumer;
mod heartbeat;
mod metrics;
mod producer;
mod topics;

use std::marker::PhantomData;

pub use admin::{
    TopicOwner, TopicsApplied, cluster_id, create_topics, delete_topics, fetch_partitions,
    fetch_watermarks, list_topics, offsets_since, under_replicated,
};
pub use config::{BusConfig, TopicNames};
pub use consumer::{
    Backlog, GroupConsumer, LogConsumer, Record, Start, TailConsumer, read_to_end, record_at,
};
pub use heartbeat::{HEARTBEAT_INTERVAL, Identity, heartbeat, start_heartbeat};
pub use metrics::{count_poison, register_metrics};
pub use producer::{Delivery, Producer, watch_delivery};
pub use topics::{Cleanup, TopicLayout, TopicSpec};

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A topic and the message type it carries.
#[derive(Debug)]
pub struct Topic<T> {
    name: String,
    _message: PhantomData<fn() -> T>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic {
            name: self.name.clone(),
            _message: PhantomData,
        }
    }
}

impl<T> Topic<T> {
    /// The topic called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Topic {
            name: name.into(),
            _message: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What can go wrong with Kafka.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A client could not be created from the configuration.
    #[error("kafka client configuration: {0}")]
    Config(rdkafka::error::KafkaError),
    /// A message could not be delivered.
    #[error("producing to {topic}: {source}")]
    Produce {
        /// Topic.
        topic: String,
        /// librdkafka's reason.
        source: rdkafka::error::KafkaError,
    },
    /// Consuming failed.
    #[error("consuming {topic}: {source}")]
    Consume {
        /// Topic.
        topic: String,
        /// librdkafka's reason.
        source: rdkafka::error::KafkaError,
    },
    /// An admin or metadata request failed.
    #[error("kafka admin {op}: {detail}")]
    Admin {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
}
