//! The two consumption modes: tail (state topics) and group (log topics).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_proto::Payload;

use crate::admin::fetch_watermarks;
use crate::{BusConfig, BusError, Topic};

/// A decoded message with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// The message.
    pub value: T,
    /// Its key.
    pub key: Vec<u8>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Broker or producer timestamp, unix ms.
    pub timestamp_ms: Option<i64>,
}

/// A consumer of one topic with decoding: what both modes share.
struct TypedStream<T> {
    consumer: StreamConsumer,
    topic: String,
    poison: AtomicU64,
    transient: AtomicU64,
    _message: PhantomData<fn() -> T>,
}

impl<T: Payload> TypedStream<T> {
    fn new(consumer: StreamConsumer, topic: &str) -> Self {
        TypedStream {
            consumer,
            topic: topic.to_owned(),
            poison: AtomicU64::new(0),
            transient: AtomicU64::new(0),
            _message: PhantomData,
        }
    }

    /// The consumer `c` describes. The broker holds an empty fetch for
    /// librdkafka's default 500 ms but answers it as soon as a message
    /// arrives, so news is seen within a millisecond or two of its write
    /// (BENCHMARKS.md, one broker hop) and an idle consumer costs the broker
    /// two fetches a second.
    fn create(
        config: &BusConfig,
        c: rdkafka::ClientConfig,
        topic: &Topic<T>,
    ) -> Result<Self, BusError> {
        Ok(TypedStream::new(
            config.finish(c).create().map_err(BusError::Config)?,
            topic.name(),
        ))
    }

    /// A consumer of `topic` without group membership, reading each listed
    /// partition from its offset. `group` only names where commits would go.
    /// Should a position ever be out of range (the broker's log shorter
    /// than thought), librdkafka moves it to `reset`: `latest` for a tail,
    /// `earliest` for a log, whose records must not be skipped.
    fn assigned(
        config: &BusConfig,
        topic: &Topic<T>,
        group: &str,
        starts: &[(i32, i64)],
        reset: &str,
    ) -> Result<Self, BusError> {
        let mut c = config.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("enable.partition.eof", "false");
        let stream = TypedStream::create(config, c, topic)?;
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in starts {
            tpl.add_partition_offset(topic.name(), partition, Offset::Offset(offset))
                .map_err(|e| stream.error(e))?;
        }
        stream.consumer.assign(&tpl).map_err(|e| stream.error(e))?;
        Ok(stream)
    }

    fn error(&self, source: rdkafka::error::KafkaError) -> BusError {
        BusError::Consume {
            topic: self.topic.clone(),
            source,
        }
    }

    /// Receives the next decodable message; poison is counted, logged,
    /// skipped. Transient errors (a broker down, a lost connection) are
    /// events librdkafka recovers from by itself: logged and waited out.
    /// Only fatal consumer errors are returned.
    async fn next(&self) -> Result<Record<T>, BusError> {
        loop {
            let msg = match self.consumer.recv().await {
                Ok(msg) => msg,
                Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(self.error(e));
                }
                Err(error) => {
                    self.transient.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %self.topic, %error, "kafka unavailable; librdkafka retries");
                    // Error events come once per change, but never spin on them.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            match decode::<T>(&msg) {
                Ok(record) => return Ok(record),
                Err(error) => {
                    self.poison.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::count_poison(&self.topic);
                    tracing::warn!(topic = %self.topic, partition = msg.partition(),
                        offset = msg.offset(), %error, "skipping undecodable message");
                }
            }
        }
    }

    fn poison_count(&self) -> u64 {
        self.poison.load(Ordering::Relaxed)
    }

    fn transient_errors(&self) -> u64 {
        self.transient.load(Ordering::Relaxed)
    }
}

fn decode<T: Payload>(msg: &BorrowedMessage<'_>) -> Result<Record<T>, sluice_proto::ProtoError> {
    Ok(Record {
        value: T::decode_from(msg.payload().unwrap_or_default())?,
        key: msg.key().unwrap_or_default().to_vec(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp_ms: msg.timestamp().to_millis(),
    })
}

/// Reads a state topic from its last `n` messages on, then follows it.
/// Nothing is committed: a restart reads the tail again.
pub struct TailConsumer<T> {
    stream: TypedStream<T>,
    /// `(partition, start, end)`: where each partition was read from, and
    /// its end when the consumer was made.
    bounds: Vec<(i32, i64, i64)>,
}

impl<T: Payload> TailConsumer<T> {
    /// Starts `n` messages before the end of every partition of `topic`.
    pub async fn new(config: &BusConfig, topic: &Topic<T>, n: i64) -> Result<Self, BusError> {
        let bounds: Vec<(i32, i64, i64)> = fetch_watermarks(config, topic.name())
            .await?
            .into_iter()
            .map(|(partition, low, high)| (partition, (high - n.max(0)).max(low), high))
            .collect();
        let starts: Vec<(i32, i64)> = bounds.iter().map(|&(p, start, _)| (p, start)).collect();
        // librdkafka wants a group id even for manual assignment; none is
        // committed.
        let group = format!("{}-tail", config.client_id);
        let stream = TypedStream::assigned(config, topic, &group, &starts, "latest")?;
        Ok(TailConsumer { stream, bounds })
    }

    /// The tail asked for, to tick off as it is read: each partition that
    /// had messages to read from the start, up to its end then.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            left: self
                .bounds
                .iter()
                .filter(|(_, start, end)| end > start)
                .map(|&(p, _, end)| (p, end))
                .collect(),
        }
    }

    /// The next message.
    pub async fn next(&self) -> Result<Record<T>, BusError> {
        self.stream.next().await
    }

    /// The next message matching `pred` within `within`: `Ok(None)` if none came.
    pub async fn next_matching(
        &self,
        within: std::time::Duration,
        pred: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, BusError> {
        let search = async {
            loop {
                let value = self.next().await?.value;
                if pred(&value) {
                    return Ok(value);
                }
            }
        };
        match tokio::time::timeout(within, search).await {
            Ok(found) => found.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Messages skipped because they did not decode.
    pub fn poison_count(&self) -> u64 {
        self.stream.poison_count()
    }

    /// Transient errors waited out (broker down, connection lost).
    pub fn transient_errors(&self) -> u64 {
        self.stream.transient_errors()
    }
}

/// The record at `offset` of `topic`'s `partition`: `Ok(None)` when the
/// partition no longer holds that offset (before its start: retention; at
/// or past its end: the topic was recreated, or it is another topic's
/// offset) or it does not come within `within`. A record that does not
/// decode there is skipped, so the one returned may lie after `offset`: the
/// caller compares.
pub async fn record_at<T: Payload>(
    config: &BusConfig,
    topic: &Topic<T>,
    partition: i32,
    offset: i64,
    within: std::time::Duration,
) -> Result<Option<Record<T>>, BusError> {
    let held = fetch_watermarks(config, topic.name())
        .await?
        .into_iter()
        .any(|(p, low, high)| p == partition && low <= offset && offset < high);
    if !held {
        return Ok(None);
    }
    let group = format!("{}-lookup", config.client_id);
    let stream = TypedStream::assigned(config, topic, &group, &[(partition, offset)], "latest")?;
    match tokio::time::timeout(within, stream.next()).await {
        Ok(record) => record.map(Some),
        Err(_) => Ok(None),
    }
}

/// Reads `topic` from `from` (partition → offset; a partition not named:
/// from its earliest message) to each partition's end as it is now, handing
/// every decodable record to `visit`. Moves no group's offsets. Fails when
/// the broker gives nothing for `patience` with partitions still unread.
pub async fn read_to_end<T: Payload>(
    config: &BusConfig,
    topic: &Topic<T>,
    from: &std::collections::HashMap<i32, i64>,
    patience: std::time::Duration,
    mut visit: impl FnMut(Record<T>),
) -> Result<(), BusError> {
    // A group of its own that never commits.
    let group = format!("{}-read-{}", config.client_id, std::process::id());
    let marks = fetch_watermarks(config, topic.name()).await?;
    let mut left = std::collections::HashMap::new();
    let mut at = vec![];
    for (partition, low, high) in marks {
        let start = from
            .get(&partition)
            .copied()
            .unwrap_or(low)
            .clamp(low, high);
        if start < high {
            left.insert(partition, high);
            at.push((partition, start));
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    let stream = TypedStream::assigned(config, topic, &group, &at, "earliest")?;
    while !left.is_empty() {
        let record = tokio::time::timeout(patience, stream.next())
            .await
            .map_err(|_| BusError::Admin {
                op: "read to end",
                detail: format!(
                    "{}: nothing for {patience:?} with {} partitions unread",
                    topic.name(),
                    left.len()
                ),
            })??;
        if let Some(&high) = left.get(&record.partition)
            && record.offset + 1 >= high
        {
            left.remove(&record.partition);
        }
        visit(record);
    }
    Ok(())
}

/// What is left to read of the tail a [`TailConsumer`] started with.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// Partition → the offset just past its last message at the start.
    left: std::collections::HashMap<i32, i64>,
}

impl Backlog {
    /// Ticks off a record read from `partition` at `offset`.
    pub fn read(&mut self, partition: i32, offset: i64) {
        if self
            .left
            .get(&partition)
            .is_some_and(|&end| offset + 1 >= end)
        {
            self.left.remove(&partition);
        }
    }

    /// Whether every partition's tail has been read (or there was none).
    pub fn is_read(&self) -> bool {
        self.left.is_empty()
    }
}

/// Reads a log topic in a consumer group, at least once.
///
/// Call [`GroupConsumer::done`] once a record's effect is durable (written to
/// MySQL, submitted to a node...). Only then is its offset stored; stored
/// offsets are committed every second, on rebalance and on [`GroupConsumer::close`].
/// A crash replays everything after the last committed offset.
pub struct GroupConsumer<T> {
    stream: TypedStream<T>,
}

impl<T: Payload> GroupConsumer<T> {
    /// Joins `group` and subscribes to `topic`. A new group starts at the
    /// earliest retained message.
    pub fn new(config: &BusConfig, topic: &Topic<T>, group: &str) -> Result<Self, BusError> {
        let mut c = config.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("enable.partition.eof", "false");
        let stream = TypedStream::create(config, c, topic)?;
        stream
            .consumer
            .subscribe(&[topic.name()])
            .map_err(|e| stream.error(e))?;
        Ok(GroupConsumer { stream })
    }

    /// The next message.
    pub async fn next(&self) -> Result<Record<T>, BusError> {
        self.stream.next().await
    }

    /// Marks `record` (and everything before it in its partition) as done.
    pub fn done(&self, record: &Record<T>) -> Result<(), BusError> {
        self.done_at(record.partition, record.offset)
    }

    /// Marks the message at `offset` of `partition` (and everything before
    /// it) as done: for callers that finish records out of order and keep
    /// only their positions.
    pub fn done_at(&self, partition: i32, offset: i64) -> Result<(), BusError> {
        let s = &self.stream;
        s.consumer
            .store_offset(&s.topic, partition, offset)
            .map_err(|e| s.error(e))
    }

    /// Messages skipped because they did not decode.
    pub fn poison_count(&self) -> u64 {
        self.stream.poison_count()
    }

    /// Transient errors waited out (broker down, connection lost).
    pub fn transient_errors(&self) -> u64 {
        self.stream.transient_errors()
    }

    /// Commits what is done and leaves the group.
    pub async fn close(self) -> Result<(), BusError> {
        let topic = self.stream.topic.clone();
        let consumer = self.stream.consumer;
        tokio::task::spawn_blocking(move || {
            let result = match consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is not an error.
                Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset,
                )) => Ok(()),
                other => other,
            };
            consumer.unsubscribe();
            result
        })
        .await
        .map_err(|e| BusError::Admin {
            op: "close",
            detail: e.to_string(),
        })?
        .map_err(|source| BusError::Consume { topic, source })
    }
}

/// Reads a log topic from positions the caller keeps (a share log that
/// records each message's offset), with the group's committed offsets as
/// the fallback and as the lag operators see.
///
/// Every partition is assigned (no group membership, so no rebalances) at
/// `max(committed offset, resume)`, or at the earliest retained message when
/// there is neither. A position past a partition's end cannot be this log's
/// (a consumer only ever sees offsets below the end): the topic was
/// recreated, or the broker lost its log, since. Such a partition is read
/// from its earliest message and its [`Start`] says `reset`.
/// [`LogConsumer::commit`] records progress.
pub struct LogConsumer<T> {
    stream: TypedStream<T>,
}

/// Where a [`LogConsumer`] started in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The partition.
    pub partition: i32,
    /// The first offset it reads.
    pub offset: i64,
    /// The partition's end when it started.
    pub high: i64,
    /// The position asked for lay past the end: an older log's, so reading
    /// starts at the earliest message of this one.
    pub reset: bool,
}

impl<T: Payload> LogConsumer<T> {
    /// Assigns every partition of `topic`; `resume` maps a partition to the
    /// next offset the caller needs.
    pub async fn new(
        config: &BusConfig,
        topic: &Topic<T>,
        group: &str,
        resume: &std::collections::HashMap<i32, i64>,
    ) -> Result<(Self, Vec<Start>), BusError> {
        let watermarks = fetch_watermarks(config, topic.name()).await?;
        let committed = committed_offsets(config, topic.name(), group, &watermarks).await?;
        let starts: Vec<Start> = watermarks
            .into_iter()
            .map(|(partition, low, high)| {
                let wanted = [committed.get(&partition), resume.get(&partition)]
                    .into_iter()
                    .flatten()
                    .copied()
                    .max()
                    .unwrap_or(low);
                let reset = wanted > high;
                Start {
                    partition,
                    offset: if reset { low } else { wanted.max(low) },
                    high,
                    reset,
                }
            })
            .collect();
        let at: Vec<(i32, i64)> = starts.iter().map(|s| (s.partition, s.offset)).collect();
        let stream = TypedStream::assigned(config, topic, group, &at, "earliest")?;
        Ok((LogConsumer { stream }, starts))
    }

    /// The next message.
    pub async fn next(&self) -> Result<Record<T>, BusError> {
        self.stream.next().await
    }

    /// Commits `next` (partition → the next offset to read), asynchronously.
    pub fn commit(&self, next: &std::collections::HashMap<i32, i64>) -> Result<(), BusError> {
        let s = &self.stream;
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in next {
            tpl.add_partition_offset(&s.topic, partition, Offset::Offset(offset))
                .map_err(|e| s.error(e))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        s.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| s.error(e))
    }

    /// Messages skipped because they did not decode.
    pub fn poison_count(&self) -> u64 {
        self.stream.poison_count()
    }
}

/// The offsets `group` committed for the partitions of `topic` (none for a
/// new group).
async fn committed_offsets(
    config: &BusConfig,
    topic: &str,
    group: &str,
    watermarks: &[(i32, i64, i64)],
) -> Result<std::collections::HashMap<i32, i64>, BusError> {
    let mut c = config.client_config();
    c.set("group.id", group);
    let consumer: rdkafka::consumer::BaseConsumer =
        config.finish(c).create().map_err(BusError::Config)?;
    let mut tpl = TopicPartitionList::new();
    for (partition, _, _) in watermarks {
        tpl.add_partition(topic, *partition);
    }
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let got = consumer
            .committed_offsets(tpl, std::time::Duration::from_secs(10))
            .map_err(|source| BusError::Consume {
                topic: topic.clone(),
                source,
            })?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await
    .map_err(|e| BusError::Admin {
        op: "committed offsets",
        detail: e.to_string(),
    })?
}
