//! Topic creation, reconciliation and deletion, and metadata, through the
//! Kafka admin API (so it works on any cluster, not just the local one).

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::{BusConfig, BusError, TopicSpec};

/// What [`create_topics`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsApplied {
    /// Topics created now.
    pub created: Vec<String>,
    /// Existing topics whose settings or partition count were brought to
    /// the declared ones.
    pub updated: Vec<String>,
}

fn admin_error(op: &'static str) -> impl Fn(String) -> BusError {
    move |detail| BusError::Admin { op, detail }
}

/// A plain consumer for metadata and watermark queries (no group, no
/// subscription).
fn metadata_consumer(config: &BusConfig) -> Result<BaseConsumer, BusError> {
    config
        .finish(config.client_config())
        .create()
        .map_err(BusError::Config)
}

fn admin_client(config: &BusConfig) -> Result<AdminClient<DefaultClientContext>, BusError> {
    config
        .finish(config.client_config())
        .create()
        .map_err(BusError::Config)
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(30))))
}

/// Creates the topics that do not exist yet and brings the existing ones to
/// their declared settings (`cleanup.policy`, `retention.ms`,
/// `min.insync.replicas`, `max.message.bytes`) and partition count. A topic
/// with more partitions than declared is an error: Kafka cannot take
/// partitions away.
pub async fn create_topics(
    config: &BusConfig,
    specs: &[TopicSpec],
) -> Result<TopicsApplied, BusError> {
    let admin = admin_client(config)?;
    let max_bytes = config.topic_max_message_bytes().to_string();
    let settings: Vec<Vec<(&str, String)>> = specs
        .iter()
        .map(|s| {
            let mut v = s.settings();
            v.push(("max.message.bytes", max_bytes.clone()));
            v
        })
        .collect();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&settings)
        .map(|(s, settings)| {
            settings.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let err = admin_error("create topics");
    let results = admin
        .create_topics(&topics, &admin_options())
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut applied = TopicsApplied::default();
    let mut existing = Vec::new();
    for (result, (spec, settings)) in results.into_iter().zip(specs.iter().zip(&settings)) {
        match result {
            Ok(name) => applied.created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push((spec, settings)),
            Err((name, code)) => return Err(err(format!("{name}: {code}"))),
        }
    }
    for (spec, settings) in existing {
        let settings_changed = reconcile_settings(&admin, &spec.name, settings).await?;
        let partitions_added = reconcile_partitions(config, &admin, spec).await?;
        if settings_changed || partitions_added {
            applied.updated.push(spec.name.clone());
        }
    }
    Ok(applied)
}

/// Sets `settings` on the existing topic `name` if any differs; true if it did.
async fn reconcile_settings(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    settings: &[(&str, String)],
) -> Result<bool, BusError> {
    let err = admin_error("topic settings");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(name)], &admin_options())
        .await
        .map_err(|e| err(e.to_string()))?;
    let resource = described
        .into_iter()
        .next()
        .ok_or_else(|| err(format!("{name}: no answer")))?
        .map_err(|code| err(format!("{name}: {code}")))?;
    let current = resource.entry_map();
    let differs = settings
        .iter()
        .any(|(k, v)| current.get(k).and_then(|e| e.value.as_deref()) != Some(v.as_str()));
    if !differs {
        return Ok(false);
    }
    // AlterConfigs sets the whole list: every setting Sluice declares.
    let alter = settings.iter().fold(
        AlterConfig::new(ResourceSpecifier::Topic(name)),
        |a, (k, v)| a.set(k, v),
    );
    let results = admin
        .alter_configs(&[alter], &admin_options())
        .await
        .map_err(|e| err(e.to_string()))?;
    for result in results {
        result.map_err(|(_, code)| err(format!("{name}: {code}")))?;
    }
    tracing::info!(topic = name, "topic settings updated to the declared ones");
    Ok(true)
}

/// Adds partitions up to the declared count; true if it did.
async fn reconcile_partitions(
    config: &BusConfig,
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
) -> Result<bool, BusError> {
    let err = admin_error("topic partitions");
    let present = fetch_partitions(config, &spec.name).await?.len();
    let declared = usize::try_from(spec.partitions).unwrap_or(0);
    if present > declared {
        return Err(err(format!(
            "{} has {present} partitions, more than the {declared} declared; Kafka cannot remove partitions",
            spec.name
        )));
    }
    if present == declared {
        return Ok(false);
    }
    let results = admin
        .create_partitions(
            &[NewPartitions::new(&spec.name, declared)],
            &admin_options(),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    for result in results {
        result.map_err(|(name, code)| err(format!("{name}: {code}")))?;
    }
    tracing::info!(topic = %spec.name, present, declared, "partitions added");
    Ok(true)
}

/// Deletes the named topics; ones that do not exist are not an error.
pub async fn delete_topics(config: &BusConfig, names: &[&str]) -> Result<(), BusError> {
    if names.is_empty() {
        return Ok(());
    }
    let err = admin_error("delete topics");
    let results = admin_client(config)?
        .delete_topics(names, &admin_options())
        .await
        .map_err(|e| err(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(err(format!("{name}: {code}"))),
        }
    }
    Ok(())
}

/// Which cluster's topic a local file holds records of (statshttpd's share
/// log, sserver's solved-share log): written in the file's header and
/// checked when it is opened, so a pool never counts another pool's records
/// (another state directory, a broker formatted anew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOwner {
    /// The Kafka cluster's id ([`cluster_id`]).
    pub cluster_id: String,
    /// The topic's name.
    pub topic: String,
}

impl TopicOwner {
    /// `topic` of the cluster `config` reaches.
    pub async fn of(config: &BusConfig, topic: &str) -> Result<Self, BusError> {
        Ok(TopicOwner {
            cluster_id: cluster_id(config).await?,
            topic: topic.to_owned(),
        })
    }

    /// One line of text: `kafka-cluster=<id> topic=<name>`.
    pub fn to_line(&self) -> String {
        format!("kafka-cluster={} topic={}", self.cluster_id, self.topic)
    }

    /// The inverse of [`TopicOwner::to_line`].
    pub fn from_line(line: &str) -> Option<Self> {
        let (cluster, topic) = line.trim_end().split_once(' ')?;
        Some(TopicOwner {
            cluster_id: cluster.strip_prefix("kafka-cluster=")?.to_owned(),
            topic: topic.strip_prefix("topic=")?.to_owned(),
        })
    }
}

impl std::fmt::Display for TopicOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} of Kafka cluster {}",
            self.topic, self.cluster_id
        )
    }
}

/// The cluster's id (KRaft's, fixed when its storage was formatted): what
/// tells one Kafka cluster from another behind the same addresses.
pub async fn cluster_id(config: &BusConfig) -> Result<String, BusError> {
    let consumer = metadata_consumer(config)?;
    tokio::task::spawn_blocking(move || {
        consumer
            .client()
            .fetch_cluster_id(Timeout::After(Duration::from_secs(10)))
            .ok_or_else(|| admin_error("cluster id")("the cluster did not say its id".into()))
    })
    .await
    .map_err(|e| admin_error("cluster id")(e.to_string()))?
}

/// The names of every topic on the cluster but Kafka's internal ones.
pub async fn list_topics(config: &BusConfig) -> Result<Vec<String>, BusError> {
    let consumer = metadata_consumer(config)?;
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
            .map_err(|e| admin_error("metadata")(e.to_string()))?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort_unstable();
        Ok(names)
    })
    .await
    .map_err(|e| admin_error("metadata")(e.to_string()))?
}

/// Partitions of `topic` with fewer replicas in sync than assigned, as
/// `(partition, replicas, in sync)`; empty when every copy has caught up.
pub async fn under_replicated(
    config: &BusConfig,
    topic: &str,
) -> Result<Vec<(i32, usize, usize)>, BusError> {
    let consumer = metadata_consumer(config)?;
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        with_topic(&consumer, &name, |t| {
            Ok(t.partitions()
                .iter()
                .filter(|p| p.isr().len() < p.replicas().len())
                .map(|p| (p.id(), p.replicas().len(), p.isr().len()))
                .collect())
        })
    })
    .await
    .map_err(|e| admin_error("metadata")(e.to_string()))?
}

/// Calls `f` with `name`'s metadata; an error if the topic does not exist
/// or the cluster reports one for it.
fn with_topic<R>(
    consumer: &BaseConsumer,
    name: &str,
    f: impl FnOnce(&rdkafka::metadata::MetadataTopic) -> Result<R, BusError>,
) -> Result<R, BusError> {
    // A topic created a moment ago may not be in every broker's metadata
    // yet (seen as UnknownTopicOrPartition right after create_topics): its
    // metadata is asked again until WATERMARK_PATIENCE has passed.
    let deadline = std::time::Instant::now() + WATERMARK_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        let metadata = consumer
            .fetch_metadata(Some(name), Timeout::After(Duration::from_secs(10)))
            .map_err(|e| admin_error("metadata")(e.to_string()))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| admin_error("metadata")(format!("no topic {name}")))?;
        match t.error().map(RDKafkaErrorCode::from) {
            None => return f(t),
            Some(code)
                if leader_moving(Some(code)) && std::time::Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Some(code) => {
                return Err(admin_error("metadata")(format!("topic {name}: {code}")));
            }
        }
    }
}

/// The partition ids of `topic`; an error if the topic does not exist.
pub async fn fetch_partitions(config: &BusConfig, topic: &str) -> Result<Vec<i32>, BusError> {
    Ok(fetch_watermarks(config, topic)
        .await?
        .into_iter()
        .map(|(p, _, _)| p)
        .collect())
}

/// How long [`fetch_watermarks`] asks again while a partition has no leader.
const WATERMARK_PATIENCE: Duration = Duration::from_secs(15);

/// Errors of a partition whose leadership is being settled: worth asking again.
fn leader_moving(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::RequestTimedOut
        )
    )
}

/// Each partition of `topic` → the offset of its first message stamped at or
/// after `since_ms` (unix ms), or its end when none is: where reading
/// "everything since then" starts. Kafka's time index answers it, so the
/// result holds for producer timestamps that are not in offset order too.
pub async fn offsets_since(
    config: &BusConfig,
    topic: &str,
    since_ms: i64,
) -> Result<std::collections::HashMap<i32, i64>, BusError> {
    let marks = fetch_watermarks(config, topic).await?;
    let consumer = metadata_consumer(config)?;
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for &(partition, _, _) in &marks {
            tpl.add_partition_offset(&name, partition, rdkafka::Offset::Offset(since_ms))
                .map_err(|e| admin_error("offsets for times")(e.to_string()))?;
        }
        let found = consumer
            .offsets_for_times(tpl, Timeout::After(Duration::from_secs(10)))
            .map_err(|e| admin_error("offsets for times")(format!("{name}: {e}")))?;
        marks
            .iter()
            .map(|&(partition, low, high)| {
                let at = found
                    .find_partition(&name, partition)
                    .map(|e| e.offset())
                    .unwrap_or(rdkafka::Offset::End);
                let offset = match at {
                    rdkafka::Offset::Offset(o) => o.clamp(low, high),
                    _ => high,
                };
                Ok((partition, offset))
            })
            .collect()
    })
    .await
    .map_err(|e| admin_error("offsets for times")(e.to_string()))?
}

/// `(partition, low, high)` watermarks of every partition of `topic`. Blocking
/// librdkafka calls run on the blocking pool, so any runtime flavour works.
pub async fn fetch_watermarks(
    config: &BusConfig,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, BusError> {
    let consumer = metadata_consumer(config)?;
    let topic_name = topic.to_owned();
    let timeout = Timeout::After(Duration::from_secs(10));
    tokio::task::spawn_blocking(move || {
        with_topic(&consumer, &topic_name, |t| {
            // A partition whose leader is moving (a new topic, a broker lost)
            // answers "not leader" for a moment: asked again until the deadline.
            let deadline = std::time::Instant::now() + WATERMARK_PATIENCE;
            t.partitions()
                .iter()
                .map(|p| {
                    let mut pause = Duration::from_millis(20);
                    loop {
                        match consumer.fetch_watermarks(&topic_name, p.id(), timeout) {
                            Ok((low, high)) => return Ok((p.id(), low, high)),
                            Err(e)
                                if leader_moving(e.rdkafka_error_code())
                                    && std::time::Instant::now() + pause < deadline =>
                            {
                                std::thread::sleep(pause);
                                pause = (pause * 2).min(Duration::from_millis(500));
                            }
                            Err(e) => {
                                return Err(admin_error("metadata")(format!(
                                    "watermarks of {topic_name}/{}: {e}",
                                    p.id()
                                )));
                            }
                        }
                    }
                })
                .collect()
        })
    })
    .await
    .map_err(|e| admin_error("metadata")(e.to_string()))?
}
