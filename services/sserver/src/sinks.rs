//! Where checked shares, block candidates and miner events go.
//!
//! - Shares: a bounded queue to one writer task that keeps many deliveries in
//!   flight and re-sends any that fail, so an accepted share is never lost; a
//!   full queue slows the submitting miners down instead.
//! - Block candidates: appended and fsynced to a local log first, then sent
//!   with acks=all and no batching, retried until the broker takes them, and
//!   marked sent in the log. At start, candidates in the log not marked sent
//!   are sent again (blkmaker is idempotent on the block hash).
//! - Events: best effort through a bounded queue (a full queue drops and counts).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sluice_bus::{BusError, Producer, Topic};
use sluice_core::record::{Event, ShareRecord, SolvedShare};
use sluice_proto::Payload;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::ServerMetrics;

/// Shares queued towards the writer before submits wait.
pub const SHARE_QUEUE: usize = 65_536;
/// Deliveries the share writer keeps in flight.
const IN_FLIGHT: usize = 100_000;

/// The sending side of the share queue.
pub type ShareSink = mpsc::Sender<ShareRecord>;
/// The sending side of the block-candidate queue.
pub type SolvedSink = mpsc::Sender<SolvedShare>;

/// Sends shares until the queue closes and every delivery is acknowledged.
pub async fn share_writer(
    producer: Producer,
    topic: Topic<ShareRecord>,
    mut queue: mpsc::Receiver<ShareRecord>,
    metrics: ServerMetrics,
) {
    let send = |share: ShareRecord, delay: Duration| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let result = producer
                .send(&topic, &share.user_id.to_be_bytes(), &share)
                .await;
            (result, share)
        }
    };
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            share = queue.recv(), if open && in_flight.len() < IN_FLIGHT => match share {
                Some(share) => {
                    metrics.shares_in_flight.inc();
                    in_flight.push(send(share, Duration::ZERO));
                }
                None => open = false,
            },
            Some((result, share)) = in_flight.next() => match result {
                Ok(_) => { metrics.shares_in_flight.dec(); }
                Err(error) => {
                    tracing::warn!(%error, "share not delivered; sending again");
                    in_flight.push(send(share, Duration::from_millis(100)));
                }
            },
        }
    }
}

/// Sends events until the queue closes; failures are logged, not retried.
pub async fn event_writer(
    producer: Producer,
    topic: Topic<Event>,
    mut queue: mpsc::Receiver<(String, Event)>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            e = queue.recv(), if open => match e {
                Some((key, event)) => {
                    let producer = producer.clone();
                    let topic = topic.clone();
                    in_flight.push(async move { producer.send(&topic, key.as_bytes(), &event).await });
                }
                None => open = false,
            },
            Some(result) = in_flight.next() => if let Err(error) = result {
                tracing::warn!(%error, "event not delivered");
            },
        }
    }
}

/// The local log of block candidates.
#[derive(Debug)]
pub struct SolvedLog {
    path: PathBuf,
}

impl SolvedLog {
    /// The log at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SolvedLog { path: path.into() }
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_data()
    }

    /// Records a candidate before it is sent.
    pub fn record(&self, solved: &SolvedShare) -> std::io::Result<()> {
        self.append(&format!("solved {}", hex::encode(solved.encode_to_vec())))
    }

    /// Records that the broker acknowledged the candidate `hash`.
    pub fn mark_sent(&self, solved: &SolvedShare) -> std::io::Result<()> {
        self.append(&format!("sent {}", solved.block_hash))
    }

    /// Candidates recorded but never marked sent; the log is rewritten to hold
    /// only those.
    pub fn unsent(&self) -> std::io::Result<Vec<SolvedShare>> {
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
            for s in &pending {
                writeln!(f, "solved {}", hex::encode(s.encode_to_vec()))?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(pending)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Sends block candidates: log, send until acknowledged, mark. Candidates
/// left unsent by an earlier run go first. Returns when the queue closes and
/// everything received was acknowledged, or when `abandon` is cancelled (the
/// log keeps what was not sent for the next start).
pub async fn solved_writer(
    producer: Producer,
    topic: Topic<SolvedShare>,
    log: SolvedLog,
    mut queue: mpsc::Receiver<SolvedShare>,
    metrics: ServerMetrics,
    abandon: CancellationToken,
) {
    match log.unsent() {
        Ok(left) => {
            for solved in left {
                tracing::warn!(hash = %solved.block_hash, "sending a block candidate left unsent by the last run");
                if !deliver(&producer, &topic, &log, &solved, &abandon).await {
                    return;
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, path = %log.path().display(), "cannot read the solved-share log")
        }
    }
    while let Some(solved) = queue.recv().await {
        if let Err(error) = log.record(&solved) {
            tracing::error!(%error, hash = %solved.block_hash, "block candidate not logged locally; sending anyway");
        }
        if !deliver(&producer, &topic, &log, &solved, &abandon).await {
            return;
        }
        metrics.solved.inc();
    }
}

async fn deliver(
    producer: &Producer,
    topic: &Topic<SolvedShare>,
    log: &SolvedLog,
    solved: &SolvedShare,
    abandon: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    let key = solved.block_hash.to_string();
    loop {
        let sent: Result<_, BusError> = tokio::select! {
            () = abandon.cancelled() => {
                tracing::error!(hash = %solved.block_hash, path = %log.path().display(), "stopping with a block candidate unsent; it is in the log and goes out at next start");
                return false;
            }
            r = producer.send(topic, key.as_bytes(), solved) => r,
        };
        match sent {
            Ok(_) => {
                tracing::info!(hash = %solved.block_hash, height = solved.height, worker = %solved.worker_name, "block candidate published");
                if let Err(error) = log.mark_sent(solved) {
                    tracing::warn!(%error, "solved-share log not updated (a restart re-sends it; harmless)");
                }
                return true;
            }
            Err(error) => {
                tracing::error!(%error, hash = %solved.block_hash, retry_in = ?backoff, "block candidate not delivered yet");
                tokio::select! {
                    () = abandon.cancelled() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
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
        }
    }

    #[test]
    fn candidates_not_marked_sent_survive_a_restart() {
        let path = std::env::temp_dir().join(format!("sluice-solved-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = SolvedLog::new(&path);
        assert_eq!(log.unsent().expect("no file yet"), vec![]);
        let (a, b) = (solved(1), solved(2));
        log.record(&a).expect("writes");
        log.record(&b).expect("writes");
        log.mark_sent(&a).expect("writes");
        // A new process reads what was left.
        let again = SolvedLog::new(&path);
        assert_eq!(again.unsent().expect("reads"), vec![b.clone()]);
        // The log was compacted to that one candidate; reading twice is stable.
        assert_eq!(again.unsent().expect("reads"), vec![b.clone()]);
        again.mark_sent(&b).expect("writes");
        assert_eq!(again.unsent().expect("reads"), vec![]);
        let _ = std::fs::remove_file(&path);
    }
}
