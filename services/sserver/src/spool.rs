//! The share spool: "accepted" means on the broker or on this disk.
//!
//! A submit is answered once the broker has acknowledged its share
//! (acks=all). When the broker has not within `accept_wait_ms` (it is away,
//! or electing a leader), the shares of the answers waiting are appended to
//! the spool and fsynced — one write and one fsync for every share any
//! connection hands over meanwhile (group commit) — and then answered. The
//! shares stay queued in the producer too: once the broker has acknowledged
//! every share of a segment file, the file is deleted, so a spool is empty
//! again soon after an outage ends.
//!
//! After a `kill -9` the segments left are read at the next start
//! ([`replay`]): every share in them not already on the Share topic (read
//! back from just before the oldest spooled share's time) is sent again, then
//! the files are deleted. A share is thus on the topic once, whether the
//! broker took it before the kill or not.
//!
//! The spool is bounded (`[spool] max_mb`); when it is full or cannot be
//! written, answers wait for the broker's acknowledgement instead (miners
//! wait: nothing is called accepted that is only in memory).
//!
//! A segment is a sequence of frames: length (u32, little-endian), CRC-32 of
//! the payload (u32, little-endian), the payload (a `ShareRecord`, as on the
//! topic). A frame cut short by a crash ends the segment's reading: its
//! fsync had not returned, so its share was never answered.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_bus::{BusConfig, Producer, Topic};
use sluice_core::record::ShareRecord;
use sluice_proto::Payload;
use sluice_service::{Backoff, Health};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::ServerMetrics;

/// A segment is sealed past this size and a new one begun.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Frame header: length and CRC-32.
const FRAME_HEADER: usize = 8;
/// The extension of segment files.
const EXTENSION: &str = "spool";

/// A share handed to the producer whose acknowledgement an answer waits for.
#[derive(Debug)]
pub(crate) struct Unacked {
    /// The share as sent (a `ShareRecord`).
    pub(crate) payload: Vec<u8>,
    /// Resolves once the broker has it; `None` once awaited.
    pub(crate) acked: Option<oneshot::Receiver<()>>,
    /// The broker acknowledged it.
    pub(crate) on_broker: bool,
}

impl Unacked {
    pub(crate) fn new(payload: Vec<u8>, acked: oneshot::Receiver<()>) -> Self {
        Unacked {
            payload,
            acked: Some(acked),
            on_broker: false,
        }
    }

    /// Waits for the broker's acknowledgement (at most once).
    pub(crate) async fn wait(&mut self) {
        if let Some(rx) = self.acked.as_mut() {
            let result = rx.await;
            self.acked = None;
            self.on_broker = result.is_ok();
        }
    }
}

/// Why the spool did not take shares.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    /// It holds `max_mb` already.
    #[error("the spool is full ({bytes} bytes of {max} allowed)")]
    Full {
        /// Bytes in it.
        bytes: u64,
        /// Its bound.
        max: u64,
    },
    /// The disk refused.
    #[error("{path}: {source}")]
    Io {
        /// The segment or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The writer is gone (shutting down).
    #[error("the spool writer has stopped")]
    Stopped,
}

/// Told the segment a write went to, or why it did not.
type Done = oneshot::Sender<Result<u64, SpoolError>>;

enum Request {
    Write {
        payloads: Vec<Vec<u8>>,
        done: Done,
    },
    /// `n` shares of segment `segment` are on the broker now.
    Acked {
        segment: u64,
        n: u64,
    },
}

/// Where shares go when the broker does not acknowledge in time. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    requests: mpsc::UnboundedSender<Request>,
    metrics: ServerMetrics,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Write { payloads, .. } => write!(f, "Write({} shares)", payloads.len()),
            Request::Acked { segment, n } => write!(f, "Acked({segment}, {n})"),
        }
    }
}

/// Segments an earlier run left: to be replayed.
#[derive(Debug, Default)]
pub(crate) struct Leftover {
    pub(crate) segments: Vec<PathBuf>,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), holding at most
    /// `max_bytes`. Segments already there are the last run's: returned to
    /// be replayed; this run's are numbered after them.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        metrics: ServerMetrics,
    ) -> Result<(Spool, Leftover), SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut numbered = vec![];
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == EXTENSION)
                && let Some(n) = segment_number(&path)
            {
                numbered.push((n, path));
            }
        }
        numbered.sort();
        let next = numbered.last().map_or(0, |(n, _)| n + 1);
        let (requests, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            dir: dir.to_owned(),
            max_bytes,
            next,
            current: None,
            sealed: HashMap::new(),
            bytes: 0,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("share-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        let leftover = Leftover {
            segments: numbered.into_iter().map(|(_, p)| p).collect(),
        };
        Ok((Spool { requests, metrics }, leftover))
    }

    /// Writes the shares of `batch` not on the broker to disk (fsynced)
    /// and returns once they are; their acknowledgements, when they come,
    /// let the spool delete them. On error the batch comes back untouched.
    pub(crate) async fn write(
        &self,
        batch: Vec<Unacked>,
    ) -> Result<(), (SpoolError, Vec<Unacked>)> {
        let payloads: Vec<Vec<u8>> = batch.iter().map(|u| u.payload.clone()).collect();
        let n = payloads.len() as u64;
        let (done, result) = oneshot::channel();
        if self
            .requests
            .send(Request::Write { payloads, done })
            .is_err()
        {
            return Err((SpoolError::Stopped, batch));
        }
        let segment = match result.await {
            Ok(Ok(segment)) => segment,
            Ok(Err(e)) => return Err((e, batch)),
            Err(_) => return Err((SpoolError::Stopped, batch)),
        };
        self.metrics.spooled.inc_by(n);
        // The acknowledgements retire the segment; a share the producer
        // gave up on (dropped at shutdown) keeps it for the next start.
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut on_broker = 0;
            for mut u in batch {
                u.wait().await;
                on_broker += u64::from(u.on_broker);
            }
            let _ = requests.send(Request::Acked {
                segment,
                n: on_broker,
            });
        });
        Ok(())
    }
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.{EXTENSION}"))
}

/// A segment being written or sealed: its size and shares not yet on the
/// broker.
struct Segment {
    number: u64,
    path: PathBuf,
    bytes: u64,
    outstanding: u64,
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    next: u64,
    current: Option<(Segment, std::fs::File)>,
    sealed: HashMap<u64, Segment>,
    /// Bytes in this run's segments.
    bytes: u64,
    metrics: ServerMetrics,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            // Everything asked meanwhile goes in one write and one fsync.
            let mut writes = vec![];
            let mut next = Some(first);
            while let Some(request) = next.take().or_else(|| rx.try_recv().ok()) {
                match request {
                    Request::Write { payloads, done } => writes.push((payloads, done)),
                    Request::Acked { segment, n } => self.acked(segment, n),
                }
            }
            if !writes.is_empty() {
                self.write(writes);
            }
            self.metrics.spool_bytes.set(self.bytes as i64);
        }
    }

    fn write(&mut self, writes: Vec<(Vec<Vec<u8>>, Done)>) {
        let mut frames = vec![];
        let mut accepted = vec![];
        for (payloads, done) in writes {
            let size: u64 = payloads
                .iter()
                .map(|p| (FRAME_HEADER + p.len()) as u64)
                .sum();
            let held = self.bytes + frames.len() as u64;
            if held + size > self.max_bytes {
                let _ = done.send(Err(SpoolError::Full {
                    bytes: held,
                    max: self.max_bytes,
                }));
                continue;
            }
            for p in &payloads {
                frames.extend_from_slice(&(p.len() as u32).to_le_bytes());
                frames.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
                frames.extend_from_slice(p);
            }
            accepted.push((payloads.len() as u64, done));
        }
        if accepted.is_empty() {
            return;
        }
        match self.append(&frames) {
            Ok(number) => {
                let n: u64 = accepted.iter().map(|(n, _)| n).sum();
                if let Some((segment, _)) = self.current.as_mut() {
                    segment.outstanding += n;
                }
                for (_, done) in accepted {
                    let _ = done.send(Ok(number));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the share spool; answers wait for the broker");
                let detail = e.to_string();
                for (_, done) in accepted {
                    let _ = done.send(Err(SpoolError::Io {
                        path: self.dir.clone(),
                        source: std::io::Error::other(detail.clone()),
                    }));
                }
                // A segment half written is not trusted for more.
                if let Some((segment, _)) = self.current.take() {
                    self.sealed.insert(segment.number, segment);
                }
            }
        }
    }

    /// Appends `frames` to the current segment (begun if none) and fsyncs;
    /// the segment's number.
    fn append(&mut self, frames: &[u8]) -> Result<u64, SpoolError> {
        if self.current.is_none() {
            let number = self.next;
            self.next += 1;
            let path = segment_path(&self.dir, number);
            let io = |source| SpoolError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            // The new file's name is durable too.
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            let segment = Segment {
                number,
                path,
                bytes: 0,
                outstanding: 0,
            };
            self.current = Some((segment, file));
        }
        let Some((segment, file)) = self.current.as_mut() else {
            return Err(SpoolError::Stopped);
        };
        let io = |source| SpoolError::Io {
            path: segment.path.clone(),
            source,
        };
        file.write_all(frames).map_err(io)?;
        file.sync_data().map_err(io)?;
        segment.bytes += frames.len() as u64;
        self.bytes += frames.len() as u64;
        let number = segment.number;
        if segment.bytes >= SEGMENT_BYTES
            && let Some((segment, _)) = self.current.take()
        {
            self.sealed.insert(segment.number, segment);
        }
        Ok(number)
    }

    /// `n` shares of `number` are on the broker: a segment with none left
    /// outstanding is deleted.
    fn acked(&mut self, number: u64, n: u64) {
        let current = self
            .current
            .as_mut()
            .map(|(s, _)| s)
            .filter(|s| s.number == number);
        let Some(segment) = current.or_else(|| self.sealed.get_mut(&number)) else {
            return;
        };
        segment.outstanding = segment.outstanding.saturating_sub(n);
        if segment.outstanding > 0 {
            return;
        }
        let done = if self
            .current
            .as_ref()
            .is_some_and(|(s, _)| s.number == number)
        {
            self.current.take().map(|(s, _)| s)
        } else {
            self.sealed.remove(&number)
        };
        if let Some(segment) = done {
            self.bytes = self.bytes.saturating_sub(segment.bytes);
            if let Err(error) = std::fs::remove_file(&segment.path) {
                tracing::warn!(%error, path = %segment.path.display(), "cannot delete a spool segment whose shares are all on the broker (the next start sends none of them twice)");
            }
        }
    }
}

/// The shares in `path`'s frames, up to the first frame that is cut short
/// or does not match its checksum.
pub(crate) fn read_segment(path: &Path) -> std::io::Result<Vec<ShareRecord>> {
    let mut bytes = vec![];
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let mut shares = vec![];
    let mut rest = bytes.as_slice();
    while rest.len() >= FRAME_HEADER {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match ShareRecord::decode_from(payload) {
            Ok(share) => shares.push(share),
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "a spooled share does not decode; skipped")
            }
        }
        rest = &rest[FRAME_HEADER + len..];
    }
    if !rest.is_empty() {
        tracing::warn!(path = %path.display(), bytes = rest.len(), "a spool segment ends in a frame cut short (a crash while writing it; that share was never answered)");
    }
    Ok(shares)
}

/// Sends the shares of the last run's segments that are not on the Share
/// topic yet, then deletes the segments. Waits for the broker as long as it
/// takes (the segments stay until then); /health's `spool` says so.
pub(crate) async fn replay(
    leftover: Leftover,
    kafka: BusConfig,
    producer: Producer,
    topic: Topic<ShareRecord>,
    health: Health,
    metrics: ServerMetrics,
    token: CancellationToken,
) {
    if leftover.segments.is_empty() {
        health.set("spool", true, "no shares left by the last run");
        return;
    }
    let mut shares = vec![];
    for path in &leftover.segments {
        match read_segment(path) {
            Ok(mut s) => shares.append(&mut s),
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot read a spool segment; it is kept");
                health.set("spool", false, format!("{}: {error}", path.display()));
                return;
            }
        }
    }
    let waiting = format!(
        "{} shares the last run spooled wait for the broker",
        shares.len()
    );
    health.set("spool", true, waiting.clone());
    tracing::warn!(
        shares = shares.len(),
        segments = leftover.segments.len(),
        "replaying the shares the last run spooled"
    );
    let since = shares.iter().map(|s| s.timestamp_ms).min().unwrap_or(0) as i64 - 60_000;
    let spooled: HashSet<bitcoin::BlockHash> = shares.iter().map(|s| s.hash).collect();
    let on_topic = Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
        .retry(
            &token,
            || already_on_topic(&kafka, &topic, since, &spooled),
            |error, retry_in| {
                tracing::warn!(%error, ?retry_in, "cannot read the Share topic back for the spool's replay yet");
                health.set("spool", true, format!("{waiting}: {error}"));
            },
        )
        .await;
    let Some(on_topic) = on_topic else {
        return;
    };
    let mut sent = HashSet::new();
    let mut acks = vec![];
    for share in shares {
        if on_topic.contains(&share.hash) || !sent.insert(share.hash) {
            continue;
        }
        let payload = share.encode_to_vec();
        acks.push(
            producer
                .enqueue_encoded_acked(&topic, &share.user_id.to_be_bytes(), &payload)
                .await,
        );
    }
    let n = acks.len();
    tokio::select! {
        () = token.cancelled() => return,
        results = futures::future::join_all(acks) => {
            if results.iter().any(Result::is_err) {
                tracing::error!("the producer stopped before the broker had every replayed share; the spool is kept for the next start");
                return;
            }
        }
    }
    for path in &leftover.segments {
        if let Err(error) = std::fs::remove_file(path) {
            tracing::warn!(%error, path = %path.display(), "cannot delete a replayed spool segment");
        }
    }
    metrics.spool_replayed.inc_by(n as u64);
    tracing::info!(
        sent = n,
        already_on_topic = on_topic.len(),
        "the last run's spooled shares are on the broker"
    );
    health.set(
        "spool",
        true,
        format!(
            "{n} shares the last run spooled sent; {} were on the topic already",
            on_topic.len()
        ),
    );
}

/// The hashes of `spooled` found on `topic` from `since_ms` on.
async fn already_on_topic(
    kafka: &BusConfig,
    topic: &Topic<ShareRecord>,
    since_ms: i64,
    spooled: &HashSet<bitcoin::BlockHash>,
) -> Result<HashSet<bitcoin::BlockHash>, sluice_bus::BusError> {
    let from = sluice_bus::offsets_since(kafka, topic.name(), since_ms).await?;
    let mut found = HashSet::new();
    sluice_bus::read_to_end(kafka, topic, &from, Duration::from_secs(30), |r| {
        if spooled.contains(&r.value.hash) {
            found.insert(r.value.hash);
        }
    })
    .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(nonce: u32) -> ShareRecord {
        use bitcoin::hashes::Hash;
        ShareRecord {
            job_id: sluice_core::JobId(3),
            user_id: 7,
            worker_id: 9,
            worker_name: "rig".into(),
            server_id: 1,
            extranonce1: 0x0100_0002,
            extranonce2: vec![0; 8],
            ntime: 1_700_000_000,
            nonce,
            version_bits: 0,
            share_difficulty: 1.0,
            network_bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
            height: 5,
            status: sluice_core::record::ShareStatus::Accepted,
            hash: bitcoin::BlockHash::from_byte_array([nonce as u8; 32]),
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            timestamp_ms: 1_000 + u64::from(nonce),
            protocol: sluice_core::record::MiningProtocol::StratumV1,
            solo: false,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn unacked(s: &ShareRecord) -> (Unacked, oneshot::Sender<()>) {
        let (tx, rx) = oneshot::channel();
        (Unacked::new(s.encode_to_vec(), rx), tx)
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn segments(d: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[tokio::test]
    async fn spooled_shares_are_on_disk_until_the_broker_has_them_all() {
        let d = dir("retire");
        let (spool, left) = Spool::open(&d, 1 << 20, ServerMetrics::default()).expect("opens");
        assert!(left.segments.is_empty());
        let (a, ack_a) = unacked(&share(1));
        let (b, ack_b) = unacked(&share(2));
        spool.write(vec![a, b]).await.expect("written");
        // On disk the moment write returns, read back as a new start would.
        let files = segments(&d);
        assert_eq!(files.len(), 1);
        assert_eq!(
            read_segment(&files[0]).expect("reads"),
            vec![share(1), share(2)]
        );
        // One acknowledged: kept. Both: deleted.
        ack_a.send(()).expect("waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(segments(&d).len(), 1, "one share is still only here");
        ack_b.send(()).expect("waiting");
        until("the segment deleted", || segments(&d).is_empty()).await;
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_share_the_producer_gave_up_on_keeps_its_segment_for_the_next_start() {
        let d = dir("kept");
        let (spool, _) = Spool::open(&d, 1 << 20, ServerMetrics::default()).expect("opens");
        let (a, ack_a) = unacked(&share(1));
        spool.write(vec![a]).await.expect("written");
        drop(ack_a); // the producer dropped with it unsent
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(spool);
        // The next start finds it to replay, and numbers its own after it.
        let (spool, left) = Spool::open(&d, 1 << 20, ServerMetrics::default()).expect("opens");
        assert_eq!(left.segments.len(), 1);
        assert_eq!(
            read_segment(&left.segments[0]).expect("reads"),
            vec![share(1)]
        );
        let (b, _ack_b) = unacked(&share(2));
        spool.write(vec![b]).await.expect("written");
        let files = segments(&d);
        assert_eq!(files.len(), 2);
        assert!(files[1] > left.segments[0], "{files:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_gives_the_batch_back() {
        let d = dir("full");
        let one = (FRAME_HEADER + share(1).encode_to_vec().len()) as u64;
        let (spool, _) = Spool::open(&d, one, ServerMetrics::default()).expect("opens");
        let (a, _ack_a) = unacked(&share(1));
        spool.write(vec![a]).await.expect("room for one");
        let (b, _ack_b) = unacked(&share(2));
        let (error, back) = spool.write(vec![b]).await.expect_err("full");
        assert!(matches!(error, SpoolError::Full { .. }), "{error}");
        assert_eq!(back.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_frame_cut_short_or_corrupt_ends_the_reading() {
        let d = dir("torn");
        std::fs::create_dir_all(&d).expect("creates");
        let path = d.join("0000000000000000.spool");
        let frame = |s: &ShareRecord| {
            let p = s.encode_to_vec();
            let mut f = (p.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
            f.extend_from_slice(&p);
            f
        };
        let mut bytes = frame(&share(1));
        let second = frame(&share(2));
        bytes.extend_from_slice(&second[..second.len() - 3]);
        std::fs::write(&path, &bytes).expect("writes");
        assert_eq!(read_segment(&path).expect("reads"), vec![share(1)]);
        let mut corrupt = frame(&share(1));
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        std::fs::write(&path, &corrupt).expect("writes");
        assert_eq!(read_segment(&path).expect("reads"), vec![]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
