//! One simulated Stratum V2 miner: a Noise connection checked against the
//! pool's authority key, SetupConnection, one standard channel (as a
//! Bitaxe opens), and real proof of work on the merkle roots the pool sends
//! (or, its channel in a group, that it makes from the group's extended job
//! with its extranonce prefix; `--sv2-standard-jobs` asks for the former);
//! the same counters and measurements as a V1 miner.
//!
//! The difficulty it asks for is V1's `d=` (from `--password`): the channel
//! is opened with that target as its easiest one and a nominal hashrate that
//! puts vardiff's start there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::pow::Target;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use sluice_core::Difficulty;
use sluice_sv2::codec::{OpenChannel, REQUIRES_STANDARD_JOBS, SetupConnection, SubmitShares};
use sluice_sv2::stream::{self, unix_now};
use sluice_sv2::{AuthorityPublicKey, Message};

use crate::Shared;
use crate::miner::{Ended, Measured, connect, grind_with};

/// The share interval sserver aims vardiff at by default: a nominal
/// hashrate of `d × 2^32 / this` starts the channel at difficulty `d`.
const POOL_SHARE_INTERVAL_SECS: f64 = 10.0;

/// A job the channel may mine: active once its tip is known.
#[derive(Debug, Clone, Copy)]
struct Job {
    id: u32,
    version: u32,
    merkle_root: [u8; 32],
}

/// The job being mined, with its tip.
#[derive(Debug, Clone, Copy)]
struct Active {
    job: Job,
    prev_hash: [u8; 32],
    ntime: u32,
    nbits: u32,
    next_nonce: u64,
}

/// The `d=` of a V1 password, if any.
fn asked_difficulty(password: &str) -> Option<f64> {
    password
        .split([',', ' ', ';'])
        .find_map(|p| p.strip_prefix("d="))
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// One connection, from connect to its end.
pub(crate) async fn session(shared: &Shared, index: usize, rate: f64, m: &mut Measured) -> Ended {
    let o = &shared.options;
    let Some(authority) = o
        .authority_key
        .as_deref()
        .and_then(|k| k.parse::<AuthorityPublicKey>().ok())
    else {
        return Ended::Failed("no valid --authority-key".into());
    };
    let tcp = match connect(shared, index).await {
        Ok(s) => s,
        Err(ended) => return ended,
    };
    let (rd, wr) = tcp.into_split();
    let handshake = stream::connect(
        rd,
        wr,
        authority,
        unix_now(),
        Duration::from_secs(10),
        1 << 20,
    );
    let (mut rd, mut wr) = tokio::select! {
        () = shared.stop.cancelled() => return Ended::Stopped,
        r = handshake => match r {
            Ok(halves) => halves,
            Err(e) => return Ended::Failed(format!("handshake: {e}")),
        },
    };
    let login = o.login(index);
    let asked = asked_difficulty(&o.password);
    let setup = Message::SetupConnection(SetupConnection {
        protocol: 0,
        min_version: 2,
        max_version: 2,
        // Group jobs taken unless asked not to (the pool then sends each
        // channel its merkle roots itself).
        flags: if o.sv2_standard_jobs {
            REQUIRES_STANDARD_JOBS
        } else {
            0
        },
        endpoint_host: o.server.ip().to_string(),
        endpoint_port: o.server.port(),
        vendor: "sluice-simulator".into(),
        hardware_version: "0.1".into(),
        firmware: String::new(),
        device_id: format!("sim-{index}"),
    });
    let open = Message::OpenStandardMiningChannel(OpenChannel {
        request_id: index as u32,
        user_identity: login,
        nominal_hash_rate: asked.map_or(0.0, |d| {
            (d * 4_294_967_296.0 / POOL_SHARE_INTERVAL_SECS) as f32
        }),
        max_target: asked
            .and_then(|d| Difficulty::new(d).ok())
            .map_or([0xff; 32], |d| d.to_target().to_le_bytes()),
    });
    for message in [&setup, &open] {
        if let Err(e) = wr.queue(message) {
            return Ended::Failed(e.to_string());
        }
    }
    if let Err(e) = wr.flush().await {
        return Ended::Failed(e.to_string());
    }

    // The handshake's bytes and the setup count too.
    let mut counted_in = 0u64;
    shared.counters.bytes_sent.fetch_add(
        (sluice_sv2::noise::CLIENT_HELLO_LEN as u64) + wr.sent(),
        Ordering::Relaxed,
    );
    shared.counters.bytes_received.fetch_add(
        sluice_sv2::noise::SERVER_HELLO_LEN as u64,
        Ordering::Relaxed,
    );
    let mut counted_out = wr.sent();
    let mut connected = false;
    let mut channel_id = 0u32;
    // The group the channel is in (0: none) and its extranonce prefix, with
    // which a group's extended job becomes the channel's merkle root.
    let mut group = 0u32;
    let mut extranonce_prefix: Vec<u8> = Vec::new();
    let mut target = Target::MAX;
    let mut difficulty = 1.0;
    let mut start_difficulty: Option<f64> = None;
    let mut futures: HashMap<u32, Job> = HashMap::new();
    let mut active: Option<Active> = None;
    let mut sequence = 0u32;
    // Submits waiting for their answer: (sequence, sent, difficulty, block hash).
    let mut pending: VecDeque<(u32, Instant, f64, (BlockHash, bool))> = VecDeque::new();
    let period = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_secs(3600)
    };
    let offset = period.mul_f64(((index as f64) * 0.618_033_988_75).fract());
    let mut next_submit = tokio::time::Instant::now() + period + offset;

    let end = |pending: &VecDeque<(u32, Instant, f64, (BlockHash, bool))>,
               connected: bool,
               why: String| {
        shared.counters.add_unanswered(pending.iter().map(|p| p.2));
        if connected {
            shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
            Ended::Lost(why)
        } else {
            Ended::Failed(why)
        }
    };
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => {
                shared.counters.add_unanswered(pending.iter().map(|p| p.2));
                if connected {
                    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
                return Ended::Stopped;
            }
            frame = rd.next() => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return end(&pending, connected, "closed by the server".into()),
                    Err(e) => return end(&pending, connected, e.to_string()),
                };
                let arrived = Instant::now();
                let received = rd.received();
                shared.counters.bytes_received.fetch_add(received - counted_in, Ordering::Relaxed);
                counted_in = received;
                let message = match frame.decode() {
                    Ok(message) => message,
                    Err(e) => return end(&pending, connected, format!("bad frame from the server: {e}")),
                };
                match message {
                    Message::SetupConnectionSuccess { .. } => {}
                    Message::SetupConnectionError { error_code, .. } => {
                        return Ended::Failed(format!("setup refused: {error_code}"));
                    }
                    Message::OpenStandardMiningChannelSuccess { channel_id: id, target: t, extranonce_prefix: prefix, group_channel_id, .. } => {
                        channel_id = id;
                        group = group_channel_id;
                        extranonce_prefix = prefix;
                        target = Target::from_le_bytes(t);
                        difficulty = difficulty_of(target);
                        start_difficulty.get_or_insert(difficulty);
                        connected = true;
                        shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Message::OpenMiningChannelError { error_code, .. } => {
                        return Ended::Failed(format!("channel refused: {error_code}"));
                    }
                    Message::SetGroupChannel { group_channel_id, channel_ids } if channel_ids.contains(&channel_id) => {
                        group = group_channel_id;
                    }
                    Message::NewExtendedMiningJob(j) if group != 0 && j.channel_id == group => {
                        let job = Job { id: j.job_id, version: j.version, merkle_root: group_root(&j, &extranonce_prefix) };
                        take_job(job, j.min_ntime, &mut active, &mut futures);
                    }
                    Message::NewMiningJob { job_id, min_ntime, version, merkle_root, .. } => {
                        take_job(Job { id: job_id, version, merkle_root }, min_ntime, &mut active, &mut futures);
                    }
                    Message::SetNewPrevHash { job_id, prev_hash, min_ntime, nbits, .. } => {
                        if let Some(job) = futures.remove(&job_id) {
                            futures.clear();
                            shared.counters.clean_jobs.fetch_add(1, Ordering::Relaxed);
                            m.clean.push((BlockHash::from_byte_array(prev_hash), arrived));
                            active = Some(Active { job, prev_hash, ntime: min_ntime, nbits, next_nonce: 0 });
                        }
                    }
                    Message::SetTarget { maximum_target, .. } => {
                        target = Target::from_le_bytes(maximum_target);
                        difficulty = difficulty_of(target);
                    }
                    Message::SubmitSharesSuccess { last_sequence_number, .. } => {
                        // Every submit up to it that got no error was accepted.
                        while let Some((seq, sent, d, block)) = pending.front().copied() {
                            if seq > last_sequence_number {
                                break;
                            }
                            pending.pop_front();
                            m.round_trips.push(micros(sent));
                            shared.on_accepted(block.0, d, block.1);
                        }
                    }
                    Message::SubmitSharesError { sequence_number, error_code, .. } => {
                        if let Some(i) = pending.iter().position(|p| p.0 == sequence_number) {
                            let (_, sent, _, _) = pending.remove(i).unwrap_or((0, arrived, 0.0, (BlockHash::all_zeros(), false)));
                            m.round_trips.push(micros(sent));
                        }
                        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        *m.rejections.entry(error_code).or_default() += 1;
                    }
                    Message::Reconnect { .. } => return end(&pending, connected, "asked to reconnect".into()),
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(next_submit), if rate > 0.0 && connected && active.is_some() => {
                let scale = difficulty / start_difficulty.unwrap_or(difficulty);
                let now = tokio::time::Instant::now();
                next_submit = (next_submit + period.mul_f64(scale.max(1e-3))).max(now);
                if pending.len() >= shared.options.max_in_flight {
                    continue;
                }
                let Some(a) = active.as_mut() else { continue };
                let Some((nonce, hash)) = grind(a, target, shared).await else {
                    shared.counters.too_hard.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let block = (hash, Target::from_compact(CompactTarget::from_consensus(a.nbits)).is_met_by(hash));
                let submit = Message::SubmitSharesStandard(SubmitShares {
                    channel_id,
                    sequence_number: sequence,
                    job_id: a.job.id,
                    nonce,
                    ntime: a.ntime,
                    version: a.job.version,
                });
                pending.push_back((sequence, Instant::now(), difficulty, block));
                sequence = sequence.wrapping_add(1);
                shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = wr.send(&submit).await {
                    return end(&pending, connected, e.to_string());
                }
                shared.counters.bytes_sent.fetch_add(wr.sent() - counted_out, Ordering::Relaxed);
                counted_out = wr.sent();
            }
        }
    }
}

/// The difficulty of a target, as the pool counts it.
fn difficulty_of(target: Target) -> f64 {
    Difficulty::from_target(target).map_or(1.0, Difficulty::get)
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The next nonce of the active job whose header meets `target`, within
/// `max_hashes` tries; the search goes on from there next time.
async fn grind(a: &mut Active, target: Target, shared: &Shared) -> Option<(u32, BlockHash)> {
    let (job, prev_hash, ntime, nbits) = (a.job, a.prev_hash, a.ntime, a.nbits);
    grind_with(&mut a.next_nonce, target, shared, |nonce| Header {
        version: Version::from_consensus(job.version as i32),
        prev_blockhash: BlockHash::from_byte_array(prev_hash),
        merkle_root: TxMerkleNode::from_byte_array(job.merkle_root),
        time: ntime,
        bits: CompactTarget::from_consensus(nbits),
        nonce,
    })
    .await
}

/// A job for the channel (its own or its group's): active at once on the
/// tip already known when it has a `min_ntime`, else a future job for the
/// next SetNewPrevHash.
fn take_job(
    job: Job,
    min_ntime: Option<u32>,
    active: &mut Option<Active>,
    futures: &mut HashMap<u32, Job>,
) {
    match (min_ntime, active.as_ref()) {
        (Some(ntime), Some(a)) => {
            *active = Some(Active {
                job,
                prev_hash: a.prev_hash,
                ntime,
                nbits: a.nbits,
                next_nonce: 0,
            });
        }
        _ => {
            futures.insert(job.id, job);
        }
    }
}

/// A standard channel's merkle root for a group's extended job: the coinbase
/// with the channel's whole extranonce prefix as its extranonce.
fn group_root(job: &sluice_sv2::codec::ExtendedJob, extranonce_prefix: &[u8]) -> [u8; 32] {
    let coinbase = [
        &job.coinbase_tx_prefix[..],
        extranonce_prefix,
        &job.coinbase_tx_suffix[..],
    ]
    .concat();
    let txid = bitcoin::Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(&coinbase));
    let path: Vec<TxMerkleNode> = job
        .merkle_path
        .iter()
        .map(|n| TxMerkleNode::from_byte_array(*n))
        .collect();
    sluice_core::merkle::merkle_root(txid, &path).to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_difficulty_is_v1_s_d() {
        assert_eq!(asked_difficulty("d=0.5"), Some(0.5));
        assert_eq!(asked_difficulty("x,d=2e-10"), Some(2e-10));
        assert_eq!(asked_difficulty("x"), None);
        assert_eq!(asked_difficulty("d=-1"), None);
    }
}
