//! Where checked shares, block candidates and miner events go.
//!
//! - Shares: every connection hands its checked shares straight to the
//!   share producer ([`ShareSink`]), which sends each until the broker has
//!   it; only a full producer queue (the broker behind) makes a submitting
//!   miner wait. The connection answers the submits of one read once the
//!   broker has acknowledged their shares (acks=all), so an accepted share
//!   survives a `kill -9`; if the broker does not acknowledge within
//!   `accept_wait_ms`, the shares are written to the local spool first
//!   ([`crate::spool`]). At shutdown, once the last connection is gone, the
//!   [`share_flusher`] waits for every share's acknowledgement.
//! - Block candidates: appended and fsynced to a local log first, then sent
//!   with acks=all and no batching, retried until the broker takes them, and
//!   marked sent in the log. At start, candidates in the log not marked sent
//!   are sent again (blkmaker is idempotent on the block hash). The log's
//!   first line names the topic and Kafka cluster it sends to; a log of
//!   another is refused ([`SolvedLog::open`]), never sent to this one.
//! - Events: best effort through a bounded queue (a full queue drops and counts).

use std::convert::Infallible;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_bus::{BusError, Producer, Topic, TopicOwner};
use sluice_core::record::{Event, ShareRecord, SolvedShare};
use sluice_proto::Payload;
use sluice_service::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::ServerMetrics;
use crate::spool::{Spool, Unacked};

/// Shares the producer holds unacknowledged before submits wait: half a
/// minute of a 6,000 shares/s pool riding out a broker outage, about 50 MB.
pub(crate) const SHARE_QUEUE: u32 = 200_000;

/// Where a connection's checked shares go. Cheap to clone; every clone
/// keeps the [`share_flusher`] waiting.
#[derive(Debug, Clone)]
pub struct ShareSink {
    producer: Producer,
    topic: Topic<ShareRecord>,
    spool: Option<Spool>,
    _alive: mpsc::Sender<Infallible>,
}

impl ShareSink {
    /// A sink on `producer` (and `spool`, for shares the broker does not
    /// acknowledge in time) and the flusher that outlives its clones.
    pub(crate) fn new(
        producer: Producer,
        topic: Topic<ShareRecord>,
        spool: Option<Spool>,
        metrics: ServerMetrics,
    ) -> (Self, impl Future<Output = ()>) {
        let (alive, gone) = mpsc::channel(1);
        let flusher = share_flusher(producer.clone(), gone, metrics);
        (
            ShareSink {
                producer,
                topic,
                spool,
                _alive: alive,
            },
            flusher,
        )
    }

    /// Hands a share over, keyed by its user; waits only while the
    /// producer cannot take it (its queue full, the broker behind). What
    /// comes back resolves once the broker has acknowledged it.
    pub(crate) async fn send(&self, share: &ShareRecord) -> Unacked {
        let payload = share.encode_to_vec();
        let acked = self
            .producer
            .enqueue_encoded_acked(&self.topic, &share.user_id.to_be_bytes(), &payload)
            .await;
        Unacked::new(payload, acked)
    }

    /// Where shares go that the broker does not acknowledge in time (none:
    /// they are answered anyway, counted).
    pub(crate) fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }
}

/// Keeps `sserver_shares_in_flight` current; once every [`ShareSink`] is
/// gone (the connections have closed), waits until the broker has
/// acknowledged every share. The service's shutdown grace bounds the wait.
async fn share_flusher(
    producer: Producer,
    mut gone: mpsc::Receiver<Infallible>,
    metrics: ServerMetrics,
) {
    let gauge = |p: &Producer| {
        metrics.shares_in_flight.set(p.unacknowledged() as i64);
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            None = gone.recv() => break,
            _ = tick.tick() => gauge(&producer),
        }
    }
    while producer.unacknowledged() > 0 {
        gauge(&producer);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gauge(&producer);
}

/// Hands events to the producer until the queue closes.
pub(crate) async fn event_writer(
    producer: Producer,
    topic: Topic<Event>,
    mut queue: mpsc::Receiver<(String, Event)>,
) {
    while let Some((key, event)) = queue.recv().await {
        producer.enqueue(&topic, key.as_bytes(), &event).await;
    }
    let _ = producer.flush(Duration::from_secs(2)).await;
}

/// Where block candidates go: logged (fsynced) by the connection that found
/// one before anything else, then queued for the [`solved_writer`]. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub(crate) struct SolvedSink {
    log: Arc<SolvedLog>,
    queue: mpsc::Sender<SolvedShare>,
}

impl SolvedSink {
    pub(crate) fn new(log: Arc<SolvedLog>, queue: mpsc::Sender<SolvedShare>) -> Self {
        SolvedSink { log, queue }
    }

    /// Logs `solved` to disk, then queues it to be sent: once this returns,
    /// a `kill -9` cannot lose it (the next start sends what the log holds
    /// unsent).
    pub(crate) async fn send(&self, solved: SolvedShare) {
        let span = block_span(&solved);
        let (log, copy) = (Arc::clone(&self.log), solved.clone());
        let logged = tokio::task::spawn_blocking(move || log.record(&copy))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(error) = logged {
            span.in_scope(
                || tracing::error!(%error, "block candidate not logged locally; sending anyway"),
            );
        }
        if self.queue.send(solved).await.is_err() {
            span.in_scope(|| tracing::error!("solved-share queue closed; candidate not published"));
        }
    }
}

/// The local log of block candidates.
#[derive(Debug)]
pub(crate) struct SolvedLog {
    path: PathBuf,
    /// The topic (and cluster) its candidates go to: its first line.
    owner: TopicOwner,
    /// One append at a time (connections record, the writer marks).
    appending: std::sync::Mutex<()>,
}

/// Why the solved-share log cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SolvedLogError {
    /// Reading it failed.
    #[error("{path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It holds another topic's candidates (another pool's log).
    #[error(
        "{path} holds the block candidates of {found}, not of {expected} that this sserver \
         sends to: another pool's solved-share log (give this pool a solved_log of its own, or \
         move the file away)"
    )]
    Foreign {
        /// The log.
        path: PathBuf,
        /// Whose candidates it holds.
        found: TopicOwner,
        /// Whose this sserver sends.
        expected: TopicOwner,
    },
}

/// The first line of a log, naming its owner.
const OWNER_PREFIX: &str = "owner ";

impl SolvedLog {
    /// The log at `path` for `owner`'s candidates (created on first write).
    /// A log whose first line names another owner is refused; one of the
    /// first format, which named none, is taken as this pool's.
    pub(crate) fn open(
        path: impl Into<PathBuf>,
        owner: TopicOwner,
    ) -> Result<Self, SolvedLogError> {
        let path = path.into();
        let first = match std::fs::File::open(&path) {
            Ok(f) => std::io::BufReader::new(f).lines().next().transpose(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|source| SolvedLogError::Io {
            path: path.clone(),
            source,
        })?;
        let found = first
            .as_deref()
            .and_then(|l| l.strip_prefix(OWNER_PREFIX))
            .and_then(TopicOwner::from_line);
        match found {
            Some(found) if found != owner => Err(SolvedLogError::Foreign {
                path,
                found,
                expected: owner,
            }),
            _ => Ok(SolvedLog {
                path,
                owner,
                appending: std::sync::Mutex::new(()),
            }),
        }
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        let _one = self
            .appending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        f.sync_data()
    }

    /// Records a candidate before it is sent.
    pub(crate) fn record(&self, solved: &SolvedShare) -> std::io::Result<()> {
        self.append(&format!("solved {}", hex::encode(solved.encode_to_vec())))
    }

    /// Records that the broker acknowledged the candidate `hash`.
    pub(crate) fn mark_sent(&self, solved: &SolvedShare) -> std::io::Result<()> {
        self.append(&format!("sent {}", solved.block_hash))
    }

    /// Candidates recorded but never marked sent; the log is rewritten to hold
    /// only those. Called at start, before any connection records.
    pub(crate) fn unsent(&self) -> std::io::Result<Vec<SolvedShare>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut pending: Vec<SolvedShare> = vec![];
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if let Some(h) = line.strip_prefix("solved ") {
                match hex::decode(h)
                    .ok()
                    .and_then(|b| SolvedShare::decode_from(&b).ok())
                {
                    Some(s) => pending.push(s),
                    None => {
                        tracing::error!(path = %self.path.display(), "unreadable line in the solved-share log")
                    }
                }
            } else if let Some(hash) = line.strip_prefix("sent ") {
                pending.retain(|s| s.block_hash.to_string() != hash);
            }
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{OWNER_PREFIX}{}", self.owner.to_line())?;
            for s in &pending {
                writeln!(f, "solved {}", hex::encode(s.encode_to_vec()))?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(pending)
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Sends block candidates (each logged already by its [`SolvedSink`]) until
/// acknowledged, and marks them sent. `left`, the candidates an earlier run
/// left unsent, go first. Returns when the queue closes and everything
/// received was acknowledged, or when `abandon` is cancelled (the log keeps
/// what was not sent for the next start).
pub(crate) async fn solved_writer(
    producer: Producer,
    topic: Topic<SolvedShare>,
    (log, left): (Arc<SolvedLog>, Vec<SolvedShare>),
    mut queue: mpsc::Receiver<SolvedShare>,
    metrics: ServerMetrics,
    abandon: CancellationToken,
) {
    for solved in left {
        let span = block_span(&solved);
        span.in_scope(|| tracing::warn!("sending a block candidate left unsent by the last run"));
        let delivered = deliver(&producer, &topic, &log, &solved, &abandon);
        if !delivered.instrument(span).await {
            return;
        }
    }
    while let Some(solved) = queue.recv().await {
        let span = block_span(&solved);
        let delivered = deliver(&producer, &topic, &log, &solved, &abandon);
        if !delivered.instrument(span).await {
            return;
        }
        metrics.solved.inc();
    }
}

/// One block candidate's lines carry its height and hash.
fn block_span(solved: &SolvedShare) -> tracing::Span {
    tracing::info_span!("block", height = solved.height, hash = %solved.block_hash)
}

async fn deliver(
    producer: &Producer,
    topic: &Topic<SolvedShare>,
    log: &SolvedLog,
    solved: &SolvedShare,
    abandon: &CancellationToken,
) -> bool {
    let key = solved.block_hash.to_string();
    let sent = Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
        .retry(
            abandon,
            || producer.send(topic, key.as_bytes(), solved),
            |error: &BusError, retry_in| {
                tracing::error!(%error, ?retry_in, "block candidate not delivered yet");
            },
        )
        .await;
    if sent.is_none() {
        tracing::error!(path = %log.path().display(), "stopping with a block candidate unsent; it is in the log and goes out at next start");
        return false;
    }
    tracing::info!(worker = %solved.worker_name, "block candidate published");
    if let Err(error) = log.mark_sent(solved) {
        tracing::warn!(%error, "solved-share log not updated (a restart re-sends it; harmless)");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::{Header, Version};
    use bitcoin::hashes::Hash;
    use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
    use sluice_core::{JobId, TemplateId};

    fn solved(nonce: u32) -> SolvedShare {
        let header = Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce,
        };
        SolvedShare {
            job_id: JobId(7),
            template_id: TemplateId([1; 32]),
            height: 5,
            header,
            coinbase: vec![1, 2, 3],
            block_hash: header.block_hash(),
            user_id: 1,
            worker_id: 2,
            worker_name: "w".into(),
            server_id: 3,
            timestamp_ms: 4,
            solo_address: None,
        }
    }

    fn owner() -> TopicOwner {
        TopicOwner {
            cluster_id: "6rW4jFrsRXOpvKwNx8rDjg".into(),
            topic: "BtcSolvedShare".into(),
        }
    }

    #[test]
    fn candidates_not_marked_sent_survive_a_restart() {
        let path = std::env::temp_dir().join(format!("sluice-solved-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = SolvedLog::open(&path, owner()).expect("no file yet");
        assert_eq!(log.unsent().expect("no file yet"), vec![]);
        let (a, b) = (solved(1), solved(2));
        log.record(&a).expect("writes");
        log.record(&b).expect("writes");
        log.mark_sent(&a).expect("writes");
        // A new process reads what was left.
        let again = SolvedLog::open(&path, owner()).expect("its own log");
        assert_eq!(again.unsent().expect("reads"), vec![b.clone()]);
        // The log was compacted to that one candidate; reading twice is stable.
        assert_eq!(again.unsent().expect("reads"), vec![b.clone()]);
        again.mark_sent(&b).expect("writes");
        assert_eq!(again.unsent().expect("reads"), vec![]);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_candidate_is_on_disk_when_sent_even_with_the_writer_stuck_on_an_earlier_one() {
        let path =
            std::env::temp_dir().join(format!("sluice-solved-queued-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = Arc::new(SolvedLog::open(&path, owner()).expect("no file yet"));
        // Nothing takes from the queue: the writer busy sending the first
        // candidate to an away broker.
        let (queue, _stuck) = mpsc::channel(16);
        let sink = SolvedSink::new(log, queue);
        for nonce in 1..=3 {
            sink.send(solved(nonce)).await;
        }
        // A kill -9 now: the next start finds all three to send.
        let again = SolvedLog::open(&path, owner()).expect("its own log");
        assert_eq!(
            again.unsent().expect("reads"),
            vec![solved(1), solved(2), solved(3)]
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn another_pool_s_log_is_refused_naming_both_and_an_unowned_one_is_adopted() {
        let path =
            std::env::temp_dir().join(format!("sluice-solved-owner-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // The first format: candidates, no owner line. Adopted and named.
        std::fs::write(
            &path,
            format!("solved {}\n", hex::encode(solved(1).encode_to_vec())),
        )
        .expect("writes");
        let log = SolvedLog::open(&path, owner()).expect("an unowned log is this pool's");
        assert_eq!(log.unsent().expect("reads"), vec![solved(1)]);
        let text = std::fs::read_to_string(&path).expect("reads");
        assert_eq!(
            text.lines().next(),
            Some(format!("owner {}", owner().to_line()).as_str())
        );
        // Another pool's sserver pointed at the same file.
        let other = TopicOwner {
            cluster_id: "pool-b-cluster-id-xxxxx".into(),
            ..owner()
        };
        let e = SolvedLog::open(&path, other.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&owner().to_string()) && e.contains(&other.to_string()),
            "names both: {e}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
