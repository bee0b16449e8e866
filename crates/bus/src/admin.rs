//! Topic creation and metadata, through the Kafka admin API (so it works with
//! any Kafka-protocol broker, not just the local one).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::{BusConfig, BusError};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor (1 on a single broker).
    pub replication: i32,
    /// `retention.ms`.
    pub retention_ms: u64,
}

/// Creates the topics that do not exist yet; existing ones are left alone.
/// Returns the names created now.
pub async fn create_topics(
    config: &BusConfig,
    specs: &[TopicSpec],
) -> Result<Vec<String>, BusError> {
    let admin: AdminClient<DefaultClientContext> = config
        .finish(config.client_config())
        .create()
        .map_err(BusError::Config)?;
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let max_bytes = (config.message_max_bytes + 64 * 1024).to_string();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(s, retention)| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
            .set("retention.ms", retention)
            .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let options =
        AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| BusError::Admin {
            op: "create topics",
            detail: e.to_string(),
        })?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BusError::Admin {
                    op: "create topics",
                    detail: format!("{name}: {code}"),
                });
            }
        }
    }
    Ok(created)
}

/// The partition ids of `topic`; an error if the topic does not exist.
pub async fn fetch_partitions(config: &BusConfig, topic: &str) -> Result<Vec<i32>, BusError> {
    Ok(fetch_watermarks(config, topic)
        .await?
        .into_iter()
        .map(|(p, _, _)| p)
        .collect())
}

/// `(partition, low, high)` watermarks of every partition of `topic`. Blocking
/// librdkafka calls run on the blocking pool, so any runtime flavour works.
pub async fn fetch_watermarks(
    config: &BusConfig,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, BusError> {
    let consumer: BaseConsumer = config
        .finish(config.client_config())
        .create()
        .map_err(BusError::Config)?;
    let topic_name = topic.to_owned();
    let timeout = Timeout::After(Duration::from_secs(10));
    tokio::task::spawn_blocking(move || {
        let admin_err = |detail: String| BusError::Admin {
            op: "metadata",
            detail,
        };
        let metadata = consumer
            .fetch_metadata(Some(&topic_name), timeout)
            .map_err(|e| admin_err(e.to_string()))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic_name)
            .ok_or_else(|| admin_err(format!("no topic {topic_name}")))?;
        if let Some(err) = t.error() {
            return Err(admin_err(format!(
                "topic {topic_name}: {}",
                RDKafkaErrorCode::from(err)
            )));
        }
        t.partitions()
            .iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic_name, p.id(), timeout)
                    .map_err(|e| {
                        admin_err(format!("watermarks of {topic_name}/{}: {e}", p.id()))
                    })?;
                Ok((p.id(), low, high))
            })
            .collect()
    })
    .await
    .map_err(|e| BusError::Admin {
        op: "metadata",
        detail: e.to_string(),
    })?
}
