//! One simulated miner: a connection, its handshake, its shares; again
//! after a lost connection or a `client.reconnect`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::BlockHash;
use bitcoin::TxMerkleNode;
use sluice_core::Difficulty;
use sluice_stratum::LineFramer;
use sluice_stratum::client::{ClientEvent, ClientSession, header_with_root, merkle_root};
use sluice_stratum::message::{Configure, Notification, Notify, Request, ServerMessage, Submit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};

use crate::Shared;

/// The BIP310 mask the miner asks for (what ASICs ask for).
const MASK: u32 = 0x1fff_e000;
/// Hashes between two yields to the runtime while grinding.
const GRIND_SLICE: u64 = 4_096;

pub(crate) enum Ended {
    Stopped,
    /// Connected and authorized once, then lost.
    Lost(String),
    /// Never got as far as authorized.
    Failed(String),
}

/// Where a miner is in its search, as an ASIC works: an extranonce2 and its
/// merkle root, computed once, under which nonces are rolled one after
/// another; a new extranonce2 only for a new job or when the nonces run out.
struct Search {
    job_id: String,
    extranonce2: Vec<u8>,
    root: TxMerkleNode,
    next_nonce: u64,
}

/// What one miner measured, merged into the shared report at the end.
#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) round_trips: Vec<u32>,
    pub(crate) clean: Vec<(BlockHash, Instant)>,
    pub(crate) rejections: HashMap<String, u64>,
}

/// Mines until the simulation stops.
pub(crate) async fn run(shared: Arc<Shared>, index: usize, rate: f64) {
    let mut measured = Measured::default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let ended = match shared.options.protocol {
            crate::Protocol::V1 => session(&shared, index, rate, &mut measured).await,
            crate::Protocol::V2 => crate::sv2::session(&shared, index, rate, &mut measured).await,
        };
        let pause = match ended {
            Ended::Stopped => break,
            Ended::Lost(why) => {
                shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(index, why, "connection lost; reconnecting");
                backoff = Duration::from_millis(200);
                backoff
            }
            Ended::Failed(why) => {
                shared
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(index, why, "could not connect; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        // Spread the reconnects of many miners over the pause.
        let jitter = pause.mul_f64(((index * 7919) % 1000) as f64 / 1000.0);
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(pause / 2 + jitter / 2) => {}
        }
    }
    shared
        .round_trips
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(measured.round_trips);
    shared
        .clean_seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(measured.clean);
    let mut rejections = shared
        .rejections
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (why, n) in measured.rejections {
        *rejections.entry(why).or_default() += n;
    }
}

async fn send(out: &mut OwnedWriteHalf, request: &Request, shared: &Shared) -> std::io::Result<()> {
    let mut line = request.to_line();
    line.push('\n');
    shared
        .counters
        .bytes_sent
        .fetch_add(line.len() as u64, Ordering::Relaxed);
    out.write_all(line.as_bytes()).await
}

/// A connection to the server from this miner's source address.
pub(crate) async fn connect(shared: &Shared, index: usize) -> Result<TcpStream, Ended> {
    let o = &shared.options;
    let socket = TcpSocket::new_v4().map_err(|e| Ended::Failed(e.to_string()))?;
    if let Some(ip) = o.source(index) {
        socket
            .bind((ip, 0).into())
            .map_err(|e| Ended::Failed(format!("bind {ip}: {e}")))?;
    }
    let stream = tokio::select! {
        () = shared.stop.cancelled() => return Err(Ended::Stopped),
        r = tokio::time::timeout(Duration::from_secs(10), socket.connect(o.server)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Ended::Failed(e.to_string())),
            Err(_) => return Err(Ended::Failed("connect timed out".into())),
        },
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One connection, from connect to its end.
async fn session(shared: &Shared, index: usize, rate: f64, m: &mut Measured) -> Ended {
    let o = &shared.options;
    let stream = match connect(shared, index).await {
        Ok(s) => s,
        Err(ended) => return ended,
    };
    let (mut rd, mut out) = stream.into_split();
    let mut client = ClientSession::new();
    let login = o.login(index);
    let handshake = [
        client.subscribe("sluice-simulator/0.1"),
        client.configure(Configure {
            version_rolling_mask: Some(MASK),
            ..Default::default()
        }),
        client.authorize(&login, &o.password),
    ];
    for r in &handshake {
        if let Err(e) = send(&mut out, r, shared).await {
            return Ended::Failed(e.to_string());
        }
    }

    let mut framer = LineFramer::new(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    let mut authorized = false;
    let mut extranonce1 = Vec::new();
    let mut extranonce2_size = 8;
    let mut extranonce2: u64 = (index as u64) << 40;
    let mut difficulty = 1.0;
    let mut job: Option<Notify> = None;
    let mut search: Option<Search> = None;
    let mut pending: HashMap<u64, (Instant, f64, (BlockHash, bool))> = HashMap::new();
    let mut tag = 0u64;
    // Spread the miners' submits over the period instead of in step. A
    // miner has a fixed hashrate: when the server raises its difficulty
    // (vardiff), it submits proportionally less often, as a real one would.
    let period = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_secs(3600)
    };
    let offset = period.mul_f64(((index as f64) * 0.618_033_988_75).fract());
    let mut next_submit = tokio::time::Instant::now() + period + offset;
    let mut start_difficulty: Option<f64> = None;

    let end = |pending: &HashMap<u64, (Instant, f64, (BlockHash, bool))>,
               authorized: bool,
               why: String| {
        shared
            .counters
            .add_unanswered(pending.values().map(|p| p.1));
        if authorized {
            shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
            Ended::Lost(why)
        } else {
            Ended::Failed(why)
        }
    };
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => {
                shared.counters.add_unanswered(pending.values().map(|p| p.1));
                if authorized {
                    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
                return Ended::Stopped;
            }
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return end(&pending, authorized, "closed by the server".into()),
                    Ok(n) => n,
                    Err(e) => return end(&pending, authorized, e.to_string()),
                };
                // A job's arrival is when its bytes arrive, not when this
                // miner is done reading it.
                let arrived = Instant::now();
                shared.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                framer.push(&buf[..n]);
                loop {
                    let line = match framer.next_line() {
                        Ok(Some(line)) => line,
                        Ok(None) => break,
                        Err(e) => return end(&pending, authorized, format!("bad line from the server: {e}")),
                    };
                    let Ok(message) = parse(shared, &line) else {
                        return end(&pending, authorized, format!("unparsable line from the server: {line:.120}"));
                    };
                    match client.on_message(message) {
                        ClientEvent::Subscribed(s) => {
                            extranonce1 = s.extranonce1;
                            extranonce2_size = s.extranonce2_size;
                        }
                        ClientEvent::Authorized(Ok(())) => {
                            authorized = true;
                            shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientEvent::Authorized(Err(e)) => {
                            return Ended::Failed(format!("authorize refused: {} {}", e.code, e.message));
                        }
                        ClientEvent::Job(n) => {
                            if n.clean {
                                shared.counters.clean_jobs.fetch_add(1, Ordering::Relaxed);
                                m.clean.push((n.prev_hash, arrived));
                            }
                            job = Some(n);
                        }
                        ClientEvent::Difficulty(d) => {
                            difficulty = d;
                            start_difficulty.get_or_insert(d);
                        }
                        ClientEvent::ShareResult { tag, result } => {
                            let Some((sent, d, block)) = pending.remove(&tag) else { continue };
                            let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                            m.round_trips.push(micros);
                            match result {
                                Ok(()) => shared.on_accepted(block.0, d, block.1),
                                Err(e) => {
                                    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                                    *m.rejections.entry(format!("{} {}", e.code, e.message)).or_default() += 1;
                                }
                            }
                        }
                        ClientEvent::Notification(Notification::Reconnect { .. }) => {
                            return end(&pending, authorized, "asked to reconnect".into());
                        }
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(next_submit), if rate > 0.0 && authorized && job.is_some() => {
                let scale = difficulty / start_difficulty.unwrap_or(difficulty);
                let now = tokio::time::Instant::now();
                next_submit = (next_submit + period.mul_f64(scale.max(1e-3))).max(now);
                let Some(j) = &job else { continue };
                if pending.len() >= shared.options.max_in_flight {
                    continue;
                }
                let s = match &mut search {
                    Some(s) if s.job_id == j.job_id && s.next_nonce <= u64::from(u32::MAX) => s,
                    _ => {
                        extranonce2 = extranonce2.wrapping_add(1);
                        let en2 = extranonce2.to_be_bytes()[8usize.saturating_sub(extranonce2_size)..].to_vec();
                        search.insert(Search {
                            job_id: j.job_id.clone(),
                            root: merkle_root(j, &extranonce1, &en2),
                            extranonce2: en2,
                            next_nonce: 0,
                        })
                    }
                };
                let Some((nonce, hash)) = grind(j, s, difficulty, shared).await else {
                    shared.counters.too_hard.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                tag += 1;
                let request = client.submit(
                    Submit {
                        worker: login.clone(),
                        job_id: j.job_id.clone(),
                        extranonce2: s.extranonce2.clone(),
                        ntime: j.time,
                        nonce,
                        version_bits: Some(0),
                    },
                    tag,
                );
                // A block too: the miner is told only "accepted", and the
                // kill matrix checks each such one has its found_blocks row.
                let block = (hash, bitcoin::Target::from_compact(j.bits).is_met_by(hash));
                pending.insert(tag, (Instant::now(), difficulty, block));
                shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = send(&mut out, &request, shared).await {
                    return end(&pending, authorized, e.to_string());
                }
            }
        }
    }
}

/// A line from the server. Every miner gets the same `mining.notify` line
/// for a job but for its coinbase2 (a solo miner's own output), so a notify
/// is parsed once without its coinbase2 and the result shared, each miner
/// given its own coinbase2: a real miner parses its own on its own CPU,
/// while here thousands share two cores with the pool under test.
fn parse(
    shared: &Shared,
    line: &str,
) -> Result<ServerMessage, sluice_stratum::message::ServerParseError> {
    if !line.contains("\"mining.notify\"") {
        return ServerMessage::parse(line);
    }
    let Some((key, coinbase2)) = without_coinbase2(line) else {
        return ServerMessage::parse(line);
    };
    let cached = {
        let last = shared
            .last_notify
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(seen, _)| *seen == key)
            .map(|(_, m)| m.clone())
    };
    let mut message = match cached {
        Some(m) => m,
        None => {
            let m = ServerMessage::parse(&key)?;
            *shared
                .last_notify
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((key, m.clone()));
            m
        }
    };
    if let ServerMessage::Notification(Notification::Notify(n)) = &mut message {
        match hex::decode(coinbase2) {
            Ok(bytes) => n.coinbase2 = bytes,
            Err(_) => return ServerMessage::parse(line),
        }
    }
    Ok(message)
}

/// A notify line with its coinbase2 (the fourth parameter, hex) left
/// empty, and that hex; `None` if the line is not laid out as expected.
fn without_coinbase2(line: &str) -> Option<(String, &str)> {
    let params = line.find("\"params\":[\"")? + "\"params\":[\"".len();
    // job id, prev hash, coinbase1: hex strings, then coinbase2's.
    let mut at = params;
    for _ in 0..3 {
        at += line[at..].find("\",\"")? + 3;
    }
    let len = line[at..].find('"')?;
    let key = [&line[..at], &line[at + len..]].concat();
    Some((key, &line[at..at + len]))
}

/// The next nonce of `search` whose header meets `difficulty`, with the
/// header's hash, within `max_hashes` tries; the search goes on from there
/// next time.
async fn grind(
    job: &Notify,
    search: &mut Search,
    difficulty: f64,
    shared: &Shared,
) -> Option<(u32, BlockHash)> {
    let target = Difficulty::new(difficulty).ok()?.to_target();
    let root = search.root;
    grind_with(&mut search.next_nonce, target, shared, |nonce| {
        header_with_root(job, root, job.time, nonce, Some(0), MASK)
    })
    .await
}

/// Tries nonces from `next_nonce` on until `header(nonce)`'s hash meets
/// `target`, within `max_hashes` tries, yielding to the runtime every
/// [`GRIND_SLICE`]; `next_nonce` is where the next search starts.
pub(crate) async fn grind_with(
    next_nonce: &mut u64,
    target: bitcoin::Target,
    shared: &Shared,
    header: impl Fn(u32) -> bitcoin::block::Header,
) -> Option<(u32, BlockHash)> {
    let max_hashes = shared.options.max_hashes;
    let mut tried = 0u64;
    while let Ok(nonce) = u32::try_from(*next_nonce) {
        *next_nonce += 1;
        let hash = header(nonce).block_hash();
        if target.is_met_by(hash) {
            return Some((nonce, hash));
        }
        tried += 1;
        if tried >= max_hashes {
            return None;
        }
        if tried.is_multiple_of(GRIND_SLICE) {
            if shared.stop.is_cancelled() {
                return None;
            }
            tokio::task::yield_now().await;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn a_notify_without_its_coinbase2_and_that_coinbase2_make_the_line() {
        let notify = Notify {
            job_id: "1a".into(),
            prev_hash: BlockHash::from_byte_array([7; 32]),
            coinbase1: vec![1, 2, 3],
            coinbase2: vec![0xab, 0xcd],
            merkle_branch: vec![TxMerkleNode::from_byte_array([9; 32])],
            version: 0x2000_0000,
            bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
            time: 1_700_000_000,
            clean: true,
        };
        let line = ServerMessage::from(Notification::Notify(notify.clone())).to_line();
        let (key, coinbase2) = without_coinbase2(&line).expect("a notify line");
        assert_eq!(coinbase2, "abcd");
        let empty = Notify {
            coinbase2: vec![],
            ..notify
        };
        assert_eq!(
            ServerMessage::parse(&key).unwrap(),
            ServerMessage::from(Notification::Notify(empty))
        );
    }
}
