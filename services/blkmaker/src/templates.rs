//! The templates blkmaker can assemble blocks from: the last N from RawGbt,
//! by id, followed from the tail.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use sluice_bus::{BusConfig, TailConsumer, Topic};
use sluice_core::{BlockTemplate, TemplateId};
use sluice_service::{Backoff, Health};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Recent templates by id, oldest evicted first.
pub(crate) struct Templates {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Bumped at every insert, so waiters look again.
    arrivals: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<TemplateId, Arc<BlockTemplate>>,
    order: VecDeque<TemplateId>,
}

impl Templates {
    pub(crate) fn new(capacity: usize) -> Self {
        Templates {
            inner: Mutex::default(),
            capacity: capacity.max(1),
            arrivals: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `template` (a second copy of a known id is ignored).
    pub(crate) fn insert(&self, template: BlockTemplate) {
        {
            let mut inner = self.lock();
            if inner.by_id.contains_key(&template.id) {
                return;
            }
            inner.order.push_back(template.id);
            inner.by_id.insert(template.id, Arc::new(template));
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_id.remove(&old);
                }
            }
        }
        self.arrivals.send_modify(|n| *n += 1);
    }

    /// The template `id`, if kept.
    pub(crate) fn get(&self, id: &TemplateId) -> Option<Arc<BlockTemplate>> {
        self.lock().by_id.get(id).cloned()
    }

    /// The template `id`, waiting up to `within` for it to arrive (a share
    /// can overtake its template when blkmaker has just started).
    pub(crate) async fn wait_for(
        &self,
        id: &TemplateId,
        within: Duration,
    ) -> Option<Arc<BlockTemplate>> {
        let mut arrivals = self.arrivals.subscribe();
        let search = async {
            loop {
                if let Some(t) = self.get(id) {
                    return Some(t);
                }
                if arrivals.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(within, search).await.ok().flatten()
    }

    /// How many are kept.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// Looks `id` up on RawGbt itself: the last `n` messages, read on fresh
/// connections until the topic's end as it is now (at most `within`). For a
/// share whose template the feed has not brought yet: after this host was
/// cut off, the feed's old connections can take tens of seconds to come back
/// while the solved shares already flow again.
pub(crate) async fn look_up(
    kafka: &BusConfig,
    id: &TemplateId,
    n: i64,
    within: Duration,
) -> Option<BlockTemplate> {
    let topic = Topic::<BlockTemplate>::new(kafka.topics.raw_gbt.clone());
    let search = async {
        let consumer = TailConsumer::new(kafka, &topic, n).await.ok()?;
        let mut backlog = consumer.backlog();
        while !backlog.is_read() {
            let r = consumer.next().await.ok()?;
            backlog.read(r.partition, r.offset);
            if r.value.id == *id && r.value.check().is_ok() {
                return Some(r.value);
            }
        }
        None
    };
    tokio::time::timeout(within, search).await.ok().flatten()
}

/// Feeds `templates` from RawGbt (its last `capacity` messages, then the
/// new ones) until `token` is cancelled, waiting for the broker if needed;
/// `kept` shows how many are kept.
pub(crate) async fn follow(
    kafka: BusConfig,
    templates: Arc<Templates>,
    kept: Gauge,
    health: Health,
    token: CancellationToken,
) {
    let topic = Topic::<BlockTemplate>::new(kafka.topics.raw_gbt.clone());
    let tail = i64::try_from(templates.capacity).unwrap_or(i64::MAX);
    let consumer = Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(
            &token,
            || TailConsumer::new(&kafka, &topic, tail),
            |error, retry_in| {
                health.set("templates", false, error.to_string());
                tracing::warn!(%error, ?retry_in, "cannot read RawGbt yet");
            },
        )
        .await;
    let Some(consumer) = consumer else { return };
    loop {
        let record = tokio::select! {
            () = token.cancelled() => return,
            r = consumer.next() => r,
        };
        match record {
            Ok(r) if r.value.check().is_err() => {
                sluice_bus::count_poison(topic.name());
                tracing::error!(topic = topic.name(), partition = r.partition, offset = r.offset,
                    template = %r.value.id, why = r.value.check().err(),
                    "skipping a template that cannot be a node's");
            }
            Ok(r) => {
                let height = r.value.height;
                templates.insert(r.value);
                let n = templates.len();
                kept.set(i64::try_from(n).unwrap_or(i64::MAX));
                health.set(
                    "templates",
                    true,
                    format!("{n} kept, newest at height {height}"),
                );
            }
            Err(error) => {
                health.set("templates", false, error.to_string());
                tracing::error!(%error, "reading RawGbt failed; retrying");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use bitcoin::block::Version;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, BlockHash, CompactTarget};
    use sluice_core::{BlockTemplate, TemplateId};

    use super::Templates;

    fn template(n: u8) -> BlockTemplate {
        BlockTemplate {
            id: TemplateId([n; 32]),
            node_id: "n".into(),
            created_at_ms: 0,
            height: u32::from(n),
            prev_blockhash: BlockHash::all_zeros(),
            version: Version::TWO,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            cur_time: 0,
            min_time: 0,
            coinbase_value: Amount::ZERO,
            default_witness_commitment: None,
            transactions: Vec::new(),
            network: None,
            chain_work: None,
        }
    }

    #[test]
    fn the_oldest_template_goes_first() {
        let t = Templates::new(2);
        for n in 1..=3 {
            t.insert(template(n));
        }
        t.insert(template(3));
        assert_eq!(t.len(), 2);
        assert!(t.get(&TemplateId([1; 32])).is_none());
        assert!(t.get(&TemplateId([2; 32])).is_some());
        assert!(t.get(&TemplateId([3; 32])).is_some());
    }

    #[tokio::test]
    async fn a_waiter_gets_a_template_that_arrives_in_time() {
        let t = Arc::new(Templates::new(4));
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move {
                t.wait_for(&TemplateId([9; 32]), Duration::from_secs(10))
                    .await
            })
        };
        t.insert(template(8));
        t.insert(template(9));
        assert_eq!(waiter.await.unwrap().unwrap().height, 9);
        assert!(
            t.wait_for(&TemplateId([5; 32]), Duration::from_millis(20))
                .await
                .is_none()
        );
    }

    /// The lookup reads RawGbt itself (the real broker of the local stack):
    /// a template there is found whatever this process's feed holds; one
    /// never published is reported missing once the topic's end is read,
    /// not after the whole patience.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_template_on_raw_gbt_is_found_by_looking_it_up() {
        use sluice_bus::{BusConfig, Producer, Topic, TopicSpec, create_topics};

        let name = sluice_testkit::unique_name("sluice-test-rawgbt-");
        let mut kafka = BusConfig {
            brokers: sluice_testkit::kafka_brokers(),
            client_id: sluice_testkit::unique_name("blkmaker-test-"),
            ..BusConfig::default()
        };
        kafka.topics.raw_gbt = name.clone();
        create_topics(&kafka, &[TopicSpec::scratch(&name, 1)])
            .await
            .expect("the local stack's broker");
        let topic = Topic::<BlockTemplate>::new(name);
        let producer = Producer::new(&kafka, 0).unwrap();
        let mut sent = Vec::new();
        for n in 1..=3 {
            let mut t = template(n);
            t.coinbase_value = Amount::from_sat(5_000_000_000);
            t.id = t.compute_id();
            assert_eq!(t.check(), Ok(()));
            producer.send(&topic, b"k", &t).await.unwrap();
            sent.push(t);
        }
        let patience = Duration::from_secs(20);
        let found = super::look_up(&kafka, &sent[1].id, 3, patience).await;
        assert_eq!(found.as_ref(), Some(&sent[1]));
        let started = std::time::Instant::now();
        assert!(
            super::look_up(&kafka, &TemplateId([7; 32]), 3, patience)
                .await
                .is_none()
        );
        assert!(started.elapsed() < patience / 2, "{:?}", started.elapsed());
    }
}
