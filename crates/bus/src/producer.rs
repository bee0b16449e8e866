//! The producer: idempotent, acks=all, lz4, and backpressure instead of loss.
//!
//! When librdkafka's local queue is full (`QueueFull`), `send` waits and
//! retries rather than dropping the message: a slow broker slows the
//! producer down, it never loses an accepted share or a solved block.
//!
//! With the default `message_timeout_ms = 0` a send waits for as long as the
//! broker is away; [`Producer::stalled_for`] tells how long the broker has
//! acknowledged nothing while messages wait, which is what `/health` reports
//! (see [`watch_delivery`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use sluice_proto::Payload;
use tokio_util::sync::CancellationToken;

use crate::{BusConfig, BusError, Topic};

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// A Kafka producer for typed topics. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    brokers: String,
    queue_full_waits: Arc<AtomicU64>,
    progress: Arc<Progress>,
}

/// Sends waiting for the broker, and when it last acknowledged one.
#[derive(Debug, Default)]
struct Progress {
    waiting: AtomicU64,
    /// `now_ms` of the last acknowledgement, or of the first send after
    /// nothing was waiting.
    at_ms: AtomicU64,
}

/// One send waiting for its acknowledgement (counted down however the send
/// ends, cancelled included).
struct Waiting<'a>(&'a Progress);

impl<'a> Waiting<'a> {
    fn new(progress: &'a Progress) -> Self {
        if progress.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
            progress.at_ms.store(crate::now_ms(), Ordering::Release);
        }
        Waiting(progress)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.at_ms.store(crate::now_ms(), Ordering::Release);
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl Producer {
    /// A producer with `linger_ms` of batching: 0 for block candidates
    /// (flushed at once), a few ms for shares.
    pub fn new(config: &BusConfig, linger_ms: u32) -> Result<Self, BusError> {
        let mut c = config.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "1000000");
        let inner = config.finish(c).create().map_err(BusError::Config)?;
        Ok(Producer {
            inner,
            brokers: config.brokers.clone(),
            queue_full_waits: Arc::default(),
            progress: Arc::default(),
        })
    }

    /// Sends one message and waits for the broker's acknowledgement.
    pub async fn send<T: Payload>(
        &self,
        topic: &Topic<T>,
        key: &[u8],
        value: &T,
    ) -> Result<Delivery, BusError> {
        self.send_bytes(topic.name(), key, &value.encode_to_vec())
            .await
    }

    /// Sends raw bytes (tests use it to inject poison messages).
    pub async fn send_bytes(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Delivery, BusError> {
        let _waiting = Waiting::new(&self.progress);
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        let mut backoff = Duration::from_millis(1);
        let delivery = loop {
            match self.inner.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rejected)) => {
                    self.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic, ?backoff, "producer queue full, waiting");
                    record = rejected;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err((source, _)) => {
                    return Err(BusError::Produce {
                        topic: topic.to_owned(),
                        source,
                    });
                }
            }
        };
        match delivery.await {
            Ok(Ok(d)) => Ok(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((source, _))) => Err(BusError::Produce {
                topic: topic.to_owned(),
                source,
            }),
            Err(_canceled) => Err(BusError::Produce {
                topic: topic.to_owned(),
                source: KafkaError::Canceled,
            }),
        }
    }

    /// How long sends have waited with no acknowledgement from the broker
    /// (zero when nothing waits).
    pub fn stalled_for(&self) -> Duration {
        if self.progress.waiting.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let since = self.progress.at_ms.load(Ordering::Acquire);
        Duration::from_millis(crate::now_ms().saturating_sub(since))
    }

    /// How often a send found the local queue full and waited (a sign the
    /// broker is slower than the producer).
    pub fn queue_full_waits(&self) -> u64 {
        self.queue_full_waits.load(Ordering::Relaxed)
    }

    /// Waits until every queued message is delivered or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| BusError::Admin {
                op: "flush",
                detail: e.to_string(),
            })?
            .map_err(|source| BusError::Produce {
                topic: "*".to_owned(),
                source,
            })
    }

    /// Asks the cluster for metadata: Ok when a broker answers.
    pub async fn ping(&self, timeout: Duration) -> Result<usize, BusError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| BusError::Admin {
            op: "metadata",
            detail: e.to_string(),
        })?
        .map_err(|e| BusError::Admin {
            op: "metadata",
            detail: e.to_string(),
        })
    }
}

/// How long sends may wait with no acknowledgement before
/// [`watch_delivery`] reports the broker away.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(5);

/// Reports, every second until `token` is cancelled, whether `producer`'s
/// broker acknowledges: `report(false, why)` once sends have waited longer
/// than 5 s with no acknowledgement, `report(true, "ok")` otherwise.
/// Services point it at their `/health` (`kafka_jobs`, `kafka_shares`, ...).
pub async fn watch_delivery<F>(producer: Producer, report: F, token: CancellationToken)
where
    F: Fn(bool, String) + Send,
{
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stalled = producer.stalled_for();
        if stalled > DELIVERY_PATIENCE {
            report(
                false,
                format!(
                    "the broker has acknowledged nothing for {}s; messages wait in the producer queue",
                    stalled.as_secs()
                ),
            );
        } else {
            report(true, "ok".to_owned());
        }
    }
}
