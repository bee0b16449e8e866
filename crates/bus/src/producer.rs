//! The producer: idempotent, acks=all, lz4, and backpressure instead of loss.
//!
//! When librdkafka's local queue is full (`QueueFull`), a send waits and
//! retries rather than dropping the message: a slow broker slows the
//! producer down, it never loses an accepted share or a solved block.
//!
//! Two ways to send:
//! - [`Producer::send`] waits for the broker's acknowledgement and says
//!   where the message landed (block candidates, jobs, templates).
//! - [`Producer::enqueue`] returns once librdkafka holds the message and
//!   leaves the rest to the producer: should the broker ever refuse it, it is
//!   sent again until it is written (shares, at tens of thousands a second,
//!   cost no future and no task each).
//!
//! Delivery reports are served by one thread per producer that sleeps while
//! nothing is in flight: an idle service costs no CPU. (rdkafka's own
//! polling thread wakes every 100 ms and spins out the last fraction of each
//! millisecond it cannot sleep: about 1% of a core per producer, idle.)
//!
//! With the default `message_timeout_ms = 0` a message waits for as long as
//! the broker is away; [`Producer::stalled_for`] tells how long the broker
//! has acknowledged nothing while messages wait, which is what `/health`
//! reports (see [`watch_delivery`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::util::Timeout;
use sluice_proto::Payload;
use tokio::sync::oneshot;
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

/// A Kafka producer for typed topics. Cheap to clone; the last clone
/// dropped stops its delivery thread.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// The librdkafka producer and the state its delivery thread shares.
struct Handle {
    inner: Arc<BaseProducer<Context>>,
    shared: Arc<Shared>,
    brokers: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The thread notices within one poll (100 ms) and drops its
        // reference; librdkafka is destroyed with the last one.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
    }
}

/// What the sending side and the delivery thread share.
#[derive(Default)]
struct Shared {
    /// Messages handed to librdkafka and not acknowledged yet (a message
    /// waiting to be sent again counts).
    waiting: AtomicU64,
    /// `now_ms` of the last acknowledgement, or of the first send after
    /// nothing was waiting.
    at_ms: AtomicU64,
    queue_full_waits: AtomicU64,
    /// Enqueued messages the broker refused, counted each time.
    refused: AtomicU64,
    /// Enqueued messages the broker refused, to be sent again.
    retries: Mutex<Vec<Retry>>,
    stop: AtomicBool,
    /// The delivery thread, woken when the first message of a busy spell
    /// is sent.
    poller: OnceLock<Thread>,
}

impl Shared {
    /// A message is about to be handed to librdkafka.
    fn begin(&self) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
            self.at_ms.store(crate::now_ms(), Ordering::Release);
            self.wake();
        }
    }

    /// The broker acknowledged a message (or a send failed for good).
    fn end(&self) {
        self.at_ms.store(crate::now_ms(), Ordering::Release);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    fn wake(&self) {
        if let Some(t) = self.poller.get() {
            t.unpark();
        }
    }
}

/// A message [`Producer::enqueue`]d that the broker refused.
struct Retry {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    /// Told when the broker has it at last.
    acked: Option<oneshot::Sender<()>>,
}

/// What to do once librdkafka reports a message's fate.
enum Ack {
    /// A caller waits for it.
    Waiter(oneshot::Sender<Result<Delivery, KafkaError>>),
    /// A failed message is sent again until it is written; the sender, if
    /// any, is told when the broker has acknowledged it.
    Durable(Option<oneshot::Sender<()>>),
}

/// The producer's librdkafka context: routes delivery reports.
struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Box<Ack>) {
        match (*ack, result) {
            (Ack::Waiter(tx), Ok(m)) => {
                self.shared.end();
                let _ = tx.send(Ok(Delivery {
                    partition: m.partition(),
                    offset: m.offset(),
                }));
            }
            (Ack::Waiter(tx), Err((error, _))) => {
                self.shared.end();
                let _ = tx.send(Err(error.clone()));
            }
            (Ack::Durable(acked), Ok(_)) => {
                self.shared.end();
                if let Some(acked) = acked {
                    let _ = acked.send(());
                }
            }
            (Ack::Durable(acked), Err((error, m))) => {
                if self.shared.stop.load(Ordering::Acquire) {
                    // Purged while the last clone is dropped: nothing will
                    // send it again.
                    self.shared.end();
                    tracing::error!(topic = m.topic(), %error, "message dropped with its producer");
                    return;
                }
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = m.topic(), %error, "the broker refused a message; sending it again");
                // Still waiting: `waiting` is not counted down.
                let mut retries = self
                    .shared
                    .retries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                retries.push(Retry {
                    topic: m.topic().to_owned(),
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    acked,
                });
            }
        }
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("brokers", &self.handle.brokers)
            .finish()
    }
}

/// How long the delivery thread sleeps when nothing is in flight before it
/// serves librdkafka's other events (errors, logs).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Longest wait of one poll while messages are in flight.
const BUSY_POLL: Duration = Duration::from_millis(100);
/// Pause before a refused message is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl Producer {
    /// A producer with `linger_ms` of batching: 0 for block candidates
    /// (flushed at once), a few ms for shares. librdkafka holds up to a
    /// million messages before sends wait.
    pub fn new(config: &BusConfig, linger_ms: u32) -> Result<Self, BusError> {
        Producer::with_queue(config, linger_ms, 1_000_000)
    }

    /// [`Producer::new`] holding at most `queue_messages` messages not yet
    /// acknowledged: beyond that, sends wait (backpressure) and memory stays
    /// bounded.
    pub fn with_queue(
        config: &BusConfig,
        linger_ms: u32,
        queue_messages: u32,
    ) -> Result<Self, BusError> {
        let mut c = config.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", queue_messages.to_string());
        let shared = Arc::new(Shared::default());
        let inner: BaseProducer<Context> = config
            .finish(c)
            .create_with_context(Context {
                shared: Arc::clone(&shared),
            })
            .map_err(BusError::Config)?;
        let inner = Arc::new(inner);
        let thread = std::thread::Builder::new()
            .name("kafka-delivery".into())
            .spawn({
                let (inner, shared) = (Arc::clone(&inner), Arc::clone(&shared));
                move || deliver(&inner, &shared)
            })
            .map_err(|e| BusError::Admin {
                op: "delivery thread",
                detail: e.to_string(),
            })?;
        let _ = shared.poller.set(thread.thread().clone());
        Ok(Producer {
            handle: Arc::new(Handle {
                inner,
                shared,
                brokers: config.brokers.clone(),
            }),
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

    /// Sends raw bytes and waits for the acknowledgement (tests use it to
    /// inject poison messages).
    pub async fn send_bytes(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Delivery, BusError> {
        let (tx, rx) = oneshot::channel();
        self.produce(topic, key, payload, Ack::Waiter(tx))
            .await
            .map_err(|(error, _)| error)?;
        let error = |source| BusError::Produce {
            topic: topic.to_owned(),
            source,
        };
        match rx.await {
            Ok(result) => result.map_err(error),
            Err(_) => Err(error(KafkaError::Canceled)),
        }
    }

    /// Hands one message to the producer and returns without waiting for
    /// the broker: it is sent again until it is written. Waits while
    /// librdkafka's queue is full, and while librdkafka refuses to take it
    /// at all (say, a topic its metadata briefly lacks while a broker
    /// restarts): such a message is handed over again until it is taken,
    /// never dropped.
    pub async fn enqueue<T: Payload>(&self, topic: &Topic<T>, key: &[u8], value: &T) {
        self.enqueue_bytes(topic.name(), key, &value.encode_to_vec(), None)
            .await;
    }

    /// [`Producer::enqueue`] of a message already encoded (the caller keeps
    /// the bytes, to write them elsewhere too), and the returned receiver
    /// resolves once the broker has acknowledged it (acks=all: every in-sync
    /// replica has it). It resolves with an error only if the producer is
    /// dropped with the message unsent.
    pub async fn enqueue_encoded_acked<T: Payload>(
        &self,
        topic: &Topic<T>,
        key: &[u8],
        payload: &[u8],
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue_bytes(topic.name(), key, payload, Some(tx))
            .await;
        rx
    }

    async fn enqueue_bytes(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        mut acked: Option<oneshot::Sender<()>>,
    ) {
        let mut pause = Duration::from_millis(10);
        loop {
            match self
                .produce(topic, key, payload, Ack::Durable(acked.take()))
                .await
            {
                Ok(()) => return,
                Err((error, ack)) => {
                    // The waiter goes with the message into the next try.
                    if let Ack::Durable(back) = ack {
                        acked = back;
                    }
                    let shared = &self.handle.shared;
                    if shared
                        .refused
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(1000)
                    {
                        tracing::warn!(%error, "librdkafka refused a message; handing it over again");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Hands the message to librdkafka, waiting while its queue is full; a
    /// refusal gives the [`Ack`] back.
    async fn produce(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        ack: Ack,
    ) -> Result<(), (BusError, Ack)> {
        let shared = &self.handle.shared;
        shared.begin();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(ack))
            .key(key)
            .payload(payload);
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.handle.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rejected)) => {
                    shared.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic, ?backoff, "producer queue full, waiting");
                    record = rejected;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err((source, rejected)) => {
                    shared.end();
                    let error = BusError::Produce {
                        topic: topic.to_owned(),
                        source,
                    };
                    return Err((error, *rejected.delivery_opaque));
                }
            }
        }
    }

    /// How long sends have waited with no acknowledgement from the broker
    /// (zero when nothing waits).
    pub fn stalled_for(&self) -> Duration {
        let shared = &self.handle.shared;
        if shared.waiting.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let since = shared.at_ms.load(Ordering::Acquire);
        Duration::from_millis(crate::now_ms().saturating_sub(since))
    }

    /// Messages handed over and not acknowledged by the broker yet.
    pub fn unacknowledged(&self) -> u64 {
        self.handle.shared.waiting.load(Ordering::Acquire)
    }

    /// How often a send found the local queue full and waited (a sign the
    /// broker is slower than the producer).
    pub fn queue_full_waits(&self) -> u64 {
        self.handle.shared.queue_full_waits.load(Ordering::Relaxed)
    }

    /// How often the broker or librdkafka refused an enqueued message,
    /// which was then sent again.
    pub fn refused(&self) -> u64 {
        self.handle.shared.refused.load(Ordering::Relaxed)
    }

    /// Waits until every message handed over is acknowledged, or `timeout`
    /// passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        while self.unacknowledged() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::Produce {
                    topic: "*".to_owned(),
                    source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Asks the cluster for metadata: Ok when a broker answers.
    pub async fn ping(&self, timeout: Duration) -> Result<usize, BusError> {
        let inner = Arc::clone(&self.handle.inner);
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

/// The delivery thread: serves delivery reports while messages are in
/// flight, sends refused messages again, and sleeps when there is nothing
/// to wait for.
fn deliver(producer: &BaseProducer<Context>, shared: &Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        if shared.waiting.load(Ordering::Acquire) == 0 {
            std::thread::park_timeout(IDLE_POLL);
            producer.poll(Duration::ZERO);
            continue;
        }
        producer.poll(BUSY_POLL);
        let refused =
            std::mem::take(&mut *shared.retries.lock().unwrap_or_else(|e| e.into_inner()));
        if !refused.is_empty() {
            std::thread::sleep(RETRY_PAUSE);
            resend(producer, shared, refused);
        }
    }
}

/// Sends refused messages again; those that do not fit in the queue wait
/// for the next round.
fn resend(producer: &BaseProducer<Context>, shared: &Shared, refused: Vec<Retry>) {
    let mut left = Vec::new();
    for r in refused {
        let record = BaseRecord::with_opaque_to(&r.topic, Box::new(Ack::Durable(r.acked)))
            .key(&r.key)
            .payload(&r.payload);
        if let Err((error, rejected)) = producer.send(record) {
            tracing::warn!(topic = %r.topic, %error, "message not handed over again yet");
            let acked = match *rejected.delivery_opaque {
                Ack::Durable(acked) => acked,
                Ack::Waiter(_) => None,
            };
            left.push(Retry {
                topic: r.topic,
                key: r.key,
                payload: r.payload,
                acked,
            });
        }
    }
    shared
        .retries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(left);
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
