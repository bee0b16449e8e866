//! Stratum V2 on sserver's own SV2 port, against the real pipeline (nodesim →
//! gbtmaker → jobmaker → sserver on the local broker, ZooKeeper, MariaDB):
//! extended and standard channels get jobs, their shares are judged by the
//! same rules as V1's and land on the same Share topic; every rejection has
//! the spec's error code; a new block reaches a channel as a future job and
//! SetNewPrevHash; a handshake or setup the pool cannot honour is refused
//! cleanly and the server serves on.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::pow::Target;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode, Txid};
use common::{DIFF, Rig, record_where, rig};
use sluice_core::record::{EventKind, MiningProtocol, ShareStatus};
use sluice_sv2::codec::{
    OpenChannel, REQUIRES_FIXED_VERSION, REQUIRES_STANDARD_JOBS, REQUIRES_VERSION_ROLLING,
    REQUIRES_WORK_SELECTION, SetupConnection, SubmitShares,
};
use sluice_sv2::stream::{self, FrameReader, FrameWriter, unix_now};
use sluice_sv2::{AuthorityKeys, AuthorityPublicKey, Message};
use sluice_testkit::unique_name;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(20);

/// A rig with SV2 on; its authority's public key.
async fn sv2_rig() -> (Rig, SocketAddr, AuthorityPublicKey) {
    sv2_rig_with(|_| {}).await
}

/// [`sv2_rig`] with the rest of the configuration tweaked.
async fn sv2_rig_with(
    tweak: impl FnOnce(&mut sserver::Config),
) -> (Rig, SocketAddr, AuthorityPublicKey) {
    let keys = AuthorityKeys::generate();
    let path = std::env::temp_dir().join(unique_name("sv2-authority-"));
    keys.save_new(&path).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], sluice_testkit::free_port()).into();
    let r = rig(|c| {
        c.sv2 = Some(sserver::sv2::Sv2Config::new(addr, path));
        tweak(c);
    })
    .await;
    (r, addr, keys.public())
}

struct Sv2Miner {
    rd: FrameReader<OwnedReadHalf>,
    wr: FrameWriter<OwnedWriteHalf>,
}

impl Sv2Miner {
    async fn connect(addr: SocketAddr, authority: AuthorityPublicKey) -> Sv2Miner {
        Sv2Miner::connect_after(addr, authority, b"").await
    }

    /// Connects, writes `preface` (a PROXY header), then the handshake.
    async fn connect_after(
        addr: SocketAddr,
        authority: AuthorityPublicKey,
        preface: &[u8],
    ) -> Sv2Miner {
        let mut tcp = sluice_testkit::eventually(WAIT, "sv2 port listening", || async move {
            TcpStream::connect(addr).await.ok()
        })
        .await;
        tcp.write_all(preface).await.unwrap();
        let (rd, wr) = tcp.into_split();
        let (rd, wr) = stream::connect(rd, wr, authority, unix_now(), WAIT, 1 << 20)
            .await
            .unwrap();
        Sv2Miner { rd, wr }
    }

    async fn send(&mut self, m: Message) {
        self.wr.send(&m).await.unwrap();
    }

    async fn recv(&mut self) -> Message {
        let frame = tokio::time::timeout(WAIT, self.rd.next())
            .await
            .expect("a message from the pool in time")
            .unwrap()
            .expect("the pool closed");
        frame.decode().unwrap()
    }

    /// The next message that is not work (jobs and targets may come at any
    /// time: the job maker refreshes the template).
    async fn answer(&mut self) -> Message {
        loop {
            match self.recv().await {
                Message::NewMiningJob { .. }
                | Message::NewExtendedMiningJob(_)
                | Message::SetNewPrevHash { .. }
                | Message::SetTarget { .. } => {}
                other => return other,
            }
        }
    }

    /// The next future job (a new tip's) and its SetNewPrevHash, skipping
    /// refreshes on the current tip.
    async fn future_job(&mut self) -> (Message, Message) {
        loop {
            let m = self.recv().await;
            let future = matches!(
                m,
                Message::NewMiningJob {
                    min_ntime: None,
                    ..
                }
            ) || matches!(&m, Message::NewExtendedMiningJob(j) if j.min_ntime.is_none());
            if future {
                let prev = self.recv().await;
                assert!(matches!(prev, Message::SetNewPrevHash { .. }), "{prev:?}");
                return (m, prev);
            }
        }
    }

    async fn setup(&mut self, flags: u32) -> Message {
        self.send(Message::SetupConnection(SetupConnection {
            protocol: 0,
            min_version: 2,
            max_version: 2,
            flags,
            endpoint_host: "127.0.0.1".into(),
            endpoint_port: 0,
            vendor: "sluice-tests".into(),
            hardware_version: "cpu".into(),
            firmware: String::new(),
            device_id: "t1".into(),
        }))
        .await;
        self.recv().await
    }
}

fn open(user: &str) -> OpenChannel {
    OpenChannel {
        request_id: 1,
        user_identity: format!("{user}.sv2rig"),
        nominal_hash_rate: 0.0,
        max_target: [0xff; 32],
    }
}

/// The work of one job as the channel received it.
#[derive(Debug, Clone)]
struct Work {
    job_id: u32,
    version: u32,
    merkle_root: [u8; 32],
    prev_hash: [u8; 32],
    ntime: u32,
    nbits: u32,
}

/// Finds a nonce whose header meets (or, with `meet` false, misses) `target`.
fn grind(w: &Work, target: Target, from: u32, meet: bool) -> (u32, BlockHash) {
    (from..)
        .map(|nonce| {
            let h = Header {
                version: Version::from_consensus(w.version as i32),
                prev_blockhash: BlockHash::from_byte_array(w.prev_hash),
                merkle_root: TxMerkleNode::from_byte_array(w.merkle_root),
                time: w.ntime,
                bits: CompactTarget::from_consensus(w.nbits),
                nonce,
            };
            (nonce, h.block_hash())
        })
        .find(|(_, hash)| target.is_met_by(*hash) == meet)
        .unwrap()
}

/// A standard share on `work` with `nonce`.
fn standard_share(channel_id: u32, sequence_number: u32, work: &Work, nonce: u32) -> Message {
    Message::SubmitSharesStandard(SubmitShares {
        channel_id,
        sequence_number,
        job_id: work.job_id,
        nonce,
        ntime: work.ntime,
        version: work.version,
    })
}

fn extended_root(
    prefix: &[u8],
    en1: &[u8],
    en2: &[u8],
    suffix: &[u8],
    path: &[[u8; 32]],
) -> [u8; 32] {
    let txid = Txid::from_raw_hash(sha256d::Hash::hash(&[prefix, en1, en2, suffix].concat()));
    let path: Vec<TxMerkleNode> = path
        .iter()
        .map(|n| TxMerkleNode::from_byte_array(*n))
        .collect();
    sluice_core::merkle::merkle_root(txid, &path).to_byte_array()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_channel_mines_into_the_share_topic_with_the_spec_s_errors() {
    let (r, addr, authority) = sv2_rig().await;
    let shares = r.shares().await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(REQUIRES_VERSION_ROLLING).await,
        Message::SetupConnectionSuccess {
            used_version: 2,
            ..
        }
    ));
    m.send(Message::OpenExtendedMiningChannel {
        open: open(&r.user),
        min_extranonce_size: 6,
    })
    .await;
    let Message::OpenExtendedMiningChannelSuccess {
        channel_id,
        target,
        extranonce_size,
        extranonce_prefix,
        ..
    } = m.recv().await
    else {
        panic!("channel not opened");
    };
    assert_eq!(extranonce_size, 8);
    assert_eq!(extranonce_prefix.len(), 4, "the V1 extranonce1 space");
    // The pool's difficulty, as a target.
    assert_eq!(
        Target::from_le_bytes(target),
        sluice_core::Difficulty::new(DIFF).unwrap().to_target()
    );
    // First a future job, then the tip it builds on.
    let (job, prev) = m.future_job().await;
    let Message::NewExtendedMiningJob(job) = job else {
        panic!("no job");
    };
    assert!(job.version_rolling_allowed);
    let Message::SetNewPrevHash {
        job_id,
        prev_hash,
        min_ntime,
        nbits,
        ..
    } = prev
    else {
        panic!("no SetNewPrevHash");
    };
    assert_eq!(job_id, job.job_id);
    let en2 = [0u8, 0, 0, 0, 0, 0, 0, 1];
    let work = Work {
        job_id,
        version: job.version,
        merkle_root: extended_root(
            &job.coinbase_tx_prefix,
            &extranonce_prefix,
            &en2,
            &job.coinbase_tx_suffix,
            &job.merkle_path,
        ),
        prev_hash,
        ntime: min_ntime,
        nbits,
    };
    let target = Target::from_le_bytes(target);
    let (nonce, hash) = grind(&work, target, 0, true);
    let share = |seq: u32, nonce: u32, job_id: u32| SubmitShares {
        channel_id,
        sequence_number: seq,
        job_id,
        nonce,
        ntime: work.ntime,
        version: work.version,
    };
    m.send(Message::SubmitSharesExtended {
        share: share(0, nonce, job_id),
        extranonce: en2.to_vec(),
    })
    .await;
    let answer = m.answer().await;
    let Message::SubmitSharesSuccess {
        last_sequence_number: 0,
        new_submits_accepted_count: 1,
        ..
    } = answer
    else {
        panic!("not accepted: {answer:?}");
    };
    // On the same topic as V1's shares, with the channel's extranonce prefix.
    let record = record_where(&shares, WAIT, "a share record", |_| true).await;
    assert_eq!(record.status, ShareStatus::Accepted);
    assert_eq!(record.hash, hash);
    assert_eq!(record.user_id, r.user_id);
    assert_eq!(record.worker_name, "sv2rig");
    assert_eq!(record.extranonce1.to_be_bytes().to_vec(), extranonce_prefix);
    assert_eq!(record.extranonce2, en2);
    assert_eq!(
        record.protocol,
        MiningProtocol::StratumV2,
        "the record says which"
    );

    // Every refusal at once, with its code.
    let expect_error = async |m: &mut Sv2Miner, submit: Message, code: &str| {
        m.send(submit).await;
        match m.answer().await {
            Message::SubmitSharesError { error_code, .. } => assert_eq!(error_code, code),
            other => panic!("expected {code}, got {other:?}"),
        }
    };
    let again = Message::SubmitSharesExtended {
        share: share(1, nonce, job_id),
        extranonce: en2.to_vec(),
    };
    expect_error(&mut m, again, "duplicate-share").await;
    let unknown = Message::SubmitSharesExtended {
        share: share(2, nonce, job_id + 100),
        extranonce: en2.to_vec(),
    };
    expect_error(&mut m, unknown, "invalid-job-id").await;
    let short = Message::SubmitSharesExtended {
        share: share(3, nonce, job_id),
        extranonce: en2[..4].to_vec(),
    };
    expect_error(&mut m, short, "bad-extranonce-size").await;
    let (low, _) = grind(&work, target, nonce + 1, false);
    let low = Message::SubmitSharesExtended {
        share: share(4, low, job_id),
        extranonce: en2.to_vec(),
    };
    expect_error(&mut m, low, "difficulty-too-low").await;
    let unrolled = SubmitShares {
        version: work.version | 0x0000_0001,
        ..share(5, nonce, job_id)
    };
    let bits = Message::SubmitSharesExtended {
        share: unrolled,
        extranonce: en2.to_vec(),
    };
    expect_error(&mut m, bits, "version-rolling-not-allowed").await;
    let wrong_channel = Message::SubmitSharesExtended {
        share: SubmitShares {
            channel_id: channel_id + 7,
            ..share(6, nonce, job_id)
        },
        extranonce: en2.to_vec(),
    };
    expect_error(&mut m, wrong_channel, "invalid-channel-id").await;
    // The low-difficulty share is recorded as such (V1 records them too).
    let low = record_where(&shares, WAIT, "the low share's record", |s| {
        s.status != ShareStatus::Accepted
    })
    .await;
    assert_eq!(low.status, ShareStatus::LowDifficulty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_channel_gets_merkle_roots_and_each_new_tip() {
    let (r, addr, authority) = sv2_rig().await;
    let shares = r.shares().await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(REQUIRES_STANDARD_JOBS).await,
        Message::SetupConnectionSuccess { .. }
    ));
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    let Message::OpenStandardMiningChannelSuccess {
        channel_id,
        target,
        extranonce_prefix,
        ..
    } = m.recv().await
    else {
        panic!("channel not opened");
    };
    assert_eq!(
        extranonce_prefix.len(),
        4 + 8,
        "extranonce1 and a fixed extranonce2"
    );
    assert_ne!(
        extranonce_prefix[4..],
        [0u8; 8],
        "the fixed extranonce2 is the channel's own (random), not zeros"
    );
    let target = Target::from_le_bytes(target);
    let mut tips = Vec::new();
    for round in 0..2 {
        let (job, prev) = m.future_job().await;
        let Message::NewMiningJob {
            job_id,
            version,
            merkle_root,
            ..
        } = job
        else {
            panic!("no future job");
        };
        let Message::SetNewPrevHash {
            prev_hash,
            min_ntime,
            nbits,
            ..
        } = prev
        else {
            panic!("no SetNewPrevHash");
        };
        tips.push(prev_hash);
        let work = Work {
            job_id,
            version,
            merkle_root,
            prev_hash,
            ntime: min_ntime,
            nbits,
        };
        let (nonce, hash) = grind(&work, target, 0, true);
        m.send(standard_share(channel_id, round, &work, nonce))
            .await;
        assert!(
            matches!(m.answer().await, Message::SubmitSharesSuccess { last_sequence_number, .. } if last_sequence_number == round),
            "the standard share was accepted"
        );
        let record = record_where(&shares, WAIT, "a share record", |_| true).await;
        assert_eq!((record.status, record.hash), (ShareStatus::Accepted, hash));
        assert_eq!(
            record.extranonce2,
            extranonce_prefix[4..],
            "the share's extranonce2 is the one the channel was given"
        );
        if round == 0 {
            // A block found elsewhere: the channel moves to the new tip.
            r.generate().await;
        }
    }
    assert_ne!(tips[0], tips[1], "the new tip reached the channel");
}

/// A device that takes group jobs (no REQUIRES_STANDARD_JOBS) has every
/// standard channel in the connection's group: a new block reaches all of
/// them as one extended job and one SetNewPrevHash sent to the group, each
/// channel makes its merkle root with its own extranonce prefix, and a job
/// has one id on every channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_channels_in_a_group_get_one_job_for_all() {
    let (r, addr, authority) = sv2_rig().await;
    let shares = r.shares().await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(0).await,
        Message::SetupConnectionSuccess { .. }
    ));
    // Two channels, their openings and first jobs (each on its own channel:
    // the group's newest job, under the group's id for it).
    let mut channels = Vec::new();
    let mut first_jobs = Vec::new();
    for (request_id, worker) in [(1u32, "a"), (2, "b")] {
        m.send(Message::OpenStandardMiningChannel(OpenChannel {
            request_id,
            user_identity: format!("{}.{worker}", r.user),
            ..open(&r.user)
        }))
        .await;
        let opened = loop {
            match m.recv().await {
                m @ Message::OpenStandardMiningChannelSuccess { .. } => break m,
                Message::NewMiningJob {
                    job_id, channel_id, ..
                } => first_jobs.push((channel_id, job_id)),
                _ => {}
            }
        };
        let Message::OpenStandardMiningChannelSuccess {
            channel_id,
            target,
            extranonce_prefix,
            group_channel_id,
            ..
        } = opened
        else {
            unreachable!()
        };
        channels.push((
            channel_id,
            Target::from_le_bytes(target),
            extranonce_prefix,
            group_channel_id,
        ));
    }
    let group = channels[0].3;
    assert_ne!(group, 0, "the channel is in a group");
    assert_eq!(
        channels[1].3, group,
        "one group for the connection's channels"
    );
    assert!(
        channels.iter().all(|c| c.0 != group),
        "the group's id is no channel's"
    );

    // A block found elsewhere: one job to the group, then its prev hash.
    r.generate().await;
    let (ext, prev) = loop {
        match m.recv().await {
            Message::NewExtendedMiningJob(j) if j.min_ntime.is_none() => {
                assert_eq!(j.channel_id, group, "the new tip's job goes to the group");
                break (j, m.recv().await);
            }
            Message::NewMiningJob {
                job_id,
                channel_id,
                min_ntime: None,
                ..
            } => {
                first_jobs.push((channel_id, job_id));
                // Only the first jobs, before the new tip, come per channel.
                assert!(
                    first_jobs.len() <= 2,
                    "a per-channel future job: {first_jobs:?}"
                );
            }
            _ => {}
        }
    };
    let Message::SetNewPrevHash {
        channel_id: prev_channel,
        job_id: prev_job,
        prev_hash,
        min_ntime,
        nbits,
    } = prev
    else {
        panic!("no SetNewPrevHash after the group's job: {prev:?}");
    };
    assert_eq!((prev_channel, prev_job), (group, ext.job_id));
    if let [(_, a), (_, b)] = first_jobs[..] {
        assert_eq!(a, b, "the same job has the same id on both channels");
        assert_ne!(a, ext.job_id, "a new job has a new id");
    }
    // Each channel mines the group's job with its own extranonce prefix.
    for (seq, (channel_id, target, prefix, _)) in channels.iter().enumerate() {
        let work = Work {
            job_id: ext.job_id,
            version: ext.version,
            merkle_root: extended_root(
                &ext.coinbase_tx_prefix,
                prefix,
                &[],
                &ext.coinbase_tx_suffix,
                &ext.merkle_path,
            ),
            prev_hash,
            ntime: min_ntime,
            nbits,
        };
        let (nonce, hash) = grind(&work, *target, 0, true);
        m.send(standard_share(*channel_id, seq as u32, &work, nonce))
            .await;
        assert!(
            matches!(m.answer().await, Message::SubmitSharesSuccess { channel_id: c, .. } if c == *channel_id),
            "channel {channel_id}'s share on the group's job was accepted"
        );
        let record = record_where(&shares, WAIT, "the share's record", |s| s.hash == hash).await;
        assert_eq!(record.status, ShareStatus::Accepted);
        assert_eq!(
            record.extranonce2,
            prefix[4..],
            "the channel's own extranonce"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_pool_cannot_honour_is_refused_cleanly() {
    let (r, addr, authority) = sv2_rig().await;
    // A client that trusts another authority refuses the pool.
    let stranger = AuthorityKeys::generate().public();
    let tcp = sluice_testkit::eventually(WAIT, "sv2 port listening", || async move {
        TcpStream::connect(addr).await.ok()
    })
    .await;
    let (rd, wr) = tcp.into_split();
    assert!(
        stream::connect(rd, wr, stranger, unix_now(), WAIT, 1 << 20)
            .await
            .is_err()
    );
    // Work selection (job declaration) is not offered.
    let mut m = Sv2Miner::connect(addr, authority).await;
    match m.setup(REQUIRES_WORK_SELECTION).await {
        Message::SetupConnectionError { flags, error_code } => {
            assert_eq!(error_code, "unsupported-feature-flags");
            assert_eq!(flags, REQUIRES_WORK_SELECTION);
        }
        other => panic!("expected SetupConnection.Error, got {other:?}"),
    }
    // An unknown user gets the spec's error.
    let mut m = Sv2Miner::connect(addr, authority).await;
    m.setup(0).await;
    m.send(Message::OpenStandardMiningChannel(open(
        "nobody-of-that-name",
    )))
    .await;
    match m.recv().await {
        Message::OpenMiningChannelError { error_code, .. } => {
            assert_eq!(error_code, "unknown-user")
        }
        other => panic!("expected OpenMiningChannel.Error, got {other:?}"),
    }
    // Garbage instead of a handshake: closed, and the pool serves on.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    junk.write_all(&[0x42; 300]).await.unwrap();
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(0).await,
        Message::SetupConnectionSuccess { .. }
    ));
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    assert!(matches!(
        m.recv().await,
        Message::OpenStandardMiningChannelSuccess { .. }
    ));
}

/// Sluice offers no SV2 extension: a request for any is answered with
/// RequestExtensions.Error naming them, as the extensions negotiation spec
/// (0x0001 §4) requires, and the device mines on without them (issue 27 §4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_extensions_get_the_spec_s_error_and_mining_goes_on() {
    let (r, addr, authority) = sv2_rig().await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    m.setup(0).await;
    m.send(Message::RequestExtensions {
        request_id: 7,
        requested: vec![0x0002, 0x0003],
    })
    .await;
    assert_eq!(
        m.recv().await,
        Message::RequestExtensionsError {
            request_id: 7,
            unsupported: vec![0x0002, 0x0003],
            required: vec![],
        }
    );
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    assert!(matches!(
        m.recv().await,
        Message::OpenStandardMiningChannelSuccess { .. }
    ));
}

/// A pool whose version mask is empty says the version is fixed, refuses a
/// device that must roll it, and gives jobs that may not be rolled; a pool
/// with a mask offers rolling (issue 27 §4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rolling_is_offered_only_as_the_pool_s_mask_allows() {
    let (_rolls, addr, authority) = sv2_rig().await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    match m.setup(0).await {
        Message::SetupConnectionSuccess { flags, .. } => assert_eq!(flags, 0),
        other => panic!("expected SetupConnection.Success, got {other:?}"),
    }

    let (r, addr, authority) = sv2_rig_with(|c| c.version_mask = "00000000".into()).await;
    let mut m = Sv2Miner::connect(addr, authority).await;
    match m.setup(REQUIRES_VERSION_ROLLING).await {
        Message::SetupConnectionError { flags, error_code } => {
            assert_eq!(error_code, "unsupported-feature-flags");
            assert_eq!(flags, REQUIRES_VERSION_ROLLING);
        }
        other => panic!("expected SetupConnection.Error, got {other:?}"),
    }
    let mut m = Sv2Miner::connect(addr, authority).await;
    match m.setup(0).await {
        Message::SetupConnectionSuccess { flags, .. } => {
            assert_eq!(flags, REQUIRES_FIXED_VERSION)
        }
        other => panic!("expected SetupConnection.Success, got {other:?}"),
    }
    m.send(Message::OpenExtendedMiningChannel {
        open: open(&r.user),
        min_extranonce_size: 6,
    })
    .await;
    assert!(matches!(
        m.recv().await,
        Message::OpenExtendedMiningChannelSuccess { .. }
    ));
    let (job, _) = m.future_job().await;
    let Message::NewExtendedMiningJob(job) = job else {
        panic!("no extended job: {job:?}");
    };
    assert!(!job.version_rolling_allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_s_sv2_miners_mine_with_real_proof_of_work() {
    let (r, addr, authority) = sv2_rig().await;
    let shares = r.shares().await;
    // The port up before the miners start.
    drop(Sv2Miner::connect(addr, authority).await);
    let mut o = simulator::Options::new(addr, 20);
    o.user = r.user.clone();
    o.password = format!("d={DIFF}");
    o.rate = 100.0;
    o.duration = 4.0;
    o.protocol = simulator::Protocol::V2;
    o.authority_key = Some(authority.to_string());
    let report = simulator::run(
        o,
        std::sync::Arc::new(simulator::Counters::default()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((report.connected, report.reconnects), (20, 0), "{report:?}");
    // 5 shares/s each at first; vardiff then raises their difficulty (10 s
    // a share is its aim) and they submit less often, as fixed hashrates do.
    assert!(report.accepted >= 50, "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert!(report.submit_round_trip.p99_ms > 0.0);
    // Their shares are the pool's: on the Share topic, from 20 workers.
    let mut workers = std::collections::HashSet::new();
    while workers.len() < 20 {
        let s = record_where(&shares, WAIT, "a share of each simulated worker", |s| {
            s.status == ShareStatus::Accepted
        })
        .await;
        workers.insert(s.worker_name);
    }
}

/// A raw encrypted connection through SetupConnection, to send frames the
/// codec would never write.
async fn raw_after_setup(addr: SocketAddr, authority: AuthorityPublicKey) -> Sv2Miner {
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(0).await,
        Message::SetupConnectionSuccess { .. }
    ));
    m
}

/// Whether the pool closed the connection (within the wait).
async fn closed(m: &mut Sv2Miner) -> bool {
    loop {
        match tokio::time::timeout(WAIT, m.rd.next()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None) | Err(_)) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_skipped_or_close_the_connection_never_the_server() {
    let (r, addr, authority) = sv2_rig().await;
    // A message type of another subprotocol (job declaration's
    // SetCustomMiningJob, 0x22) is skipped: the session goes on.
    let mut m = raw_after_setup(addr, authority).await;
    let unknown = sluice_sv2::Header {
        extension_type: 0,
        channel_msg: true,
        msg_type: 0x22,
        length: 3,
    };
    let mut frame = unknown.to_bytes().to_vec();
    frame.extend([1, 2, 3]);
    m.wr.queue_raw(&frame).unwrap();
    m.wr.flush().await.unwrap();
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    assert!(
        matches!(
            m.answer().await,
            Message::OpenStandardMiningChannelSuccess { .. }
        ),
        "the session went on after an unknown message"
    );
    // A known message with a bad length closes this connection.
    let short = sluice_sv2::Header {
        extension_type: 0,
        channel_msg: true,
        msg_type: 0x1a,
        length: 5,
    };
    let mut frame = short.to_bytes().to_vec();
    frame.extend([0; 5]);
    m.wr.queue_raw(&frame).unwrap();
    m.wr.flush().await.unwrap();
    assert!(
        closed(&mut m).await,
        "a malformed submit closes its connection"
    );
    // A frame larger than any a miner sends closes it too, before its payload.
    let mut m = raw_after_setup(addr, authority).await;
    let huge = sluice_sv2::Header {
        extension_type: 0,
        channel_msg: false,
        msg_type: 0x10,
        length: 1 << 20,
    };
    m.wr.queue_raw(&huge.to_bytes()).unwrap();
    m.wr.flush().await.unwrap();
    assert!(
        closed(&mut m).await,
        "an oversized frame closes its connection"
    );
    // Anything but SetupConnection first closes it.
    let mut m = Sv2Miner::connect(addr, authority).await;
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    assert!(closed(&mut m).await);
    // And the server serves on.
    let mut m = raw_after_setup(addr, authority).await;
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    assert!(matches!(
        m.answer().await,
        Message::OpenStandardMiningChannelSuccess { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vardiff_raises_a_fast_channel_s_difficulty_with_set_target() {
    let (r, addr, authority) = sv2_rig().await;
    // Its own jobs (not its group's): the merkle root comes with each.
    let mut m = Sv2Miner::connect(addr, authority).await;
    assert!(matches!(
        m.setup(REQUIRES_STANDARD_JOBS).await,
        Message::SetupConnectionSuccess { .. }
    ));
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    let Message::OpenStandardMiningChannelSuccess {
        channel_id, target, ..
    } = m.answer().await
    else {
        panic!("channel not opened");
    };
    let start = Target::from_le_bytes(target);
    let (job, prev) = m.future_job().await;
    let (
        Message::NewMiningJob {
            job_id,
            version,
            merkle_root,
            ..
        },
        Message::SetNewPrevHash {
            prev_hash,
            min_ntime,
            nbits,
            ..
        },
    ) = (job, prev)
    else {
        panic!("no job");
    };
    let work = Work {
        job_id,
        version,
        merkle_root,
        prev_hash,
        ntime: min_ntime,
        nbits,
    };
    // Far faster than one share per 10 s: the channel is retargeted at
    // once (after 8 shares), not at the end of its 300 s window.
    let mut nonce = 0;
    for seq in 0..12 {
        let (n, _) = grind(&work, start, nonce, true);
        nonce = n + 1;
        m.send(Message::SubmitSharesStandard(SubmitShares {
            channel_id,
            sequence_number: seq,
            job_id,
            nonce: n,
            ntime: work.ntime,
            version,
        }))
        .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no SetTarget");
        if let Message::SetTarget {
            channel_id: id,
            maximum_target,
        } = m.recv().await
        {
            assert_eq!(id, channel_id);
            let harder = Target::from_le_bytes(maximum_target);
            assert!(harder < start, "a harder target, not an easier one");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_header_and_drained_with_reconnect_as_v1() {
    let (r, addr, authority) = sv2_rig_with(|c| {
        c.proxy_protocol = true;
        c.limits.drain_spread_secs = 0.5;
    })
    .await;
    let shares = r.shares().await;
    let events = r.events().await;
    let mut m = Sv2Miner::connect_after(
        addr,
        authority,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 3336\r\n",
    )
    .await;
    assert!(matches!(
        m.setup(REQUIRES_STANDARD_JOBS).await,
        Message::SetupConnectionSuccess { .. }
    ));
    m.send(Message::OpenStandardMiningChannel(open(&r.user)))
        .await;
    let Message::OpenStandardMiningChannelSuccess {
        channel_id, target, ..
    } = m.recv().await
    else {
        panic!("channel not opened");
    };
    // The miner's connect event and share carry the address the proxy saw.
    let connected = record_where(
        &events,
        WAIT,
        "MinerConnected",
        |e| matches!(&e.kind, EventKind::MinerConnected(who) if who.worker_name == "sv2rig"),
    )
    .await;
    let EventKind::MinerConnected(who) = connected.kind else {
        unreachable!()
    };
    assert_eq!(
        (who.user_id, who.client_ip),
        (r.user_id, std::net::IpAddr::from([203, 0, 113, 7]))
    );
    let (job, prev) = m.future_job().await;
    let (
        Message::NewMiningJob {
            job_id,
            version,
            merkle_root,
            ..
        },
        Message::SetNewPrevHash {
            prev_hash,
            min_ntime,
            nbits,
            ..
        },
    ) = (job, prev)
    else {
        panic!("no work");
    };
    let work = Work {
        job_id,
        version,
        merkle_root,
        prev_hash,
        ntime: min_ntime,
        nbits,
    };
    let (nonce, _) = grind(&work, Target::from_le_bytes(target), 0, true);
    m.send(Message::SubmitSharesStandard(SubmitShares {
        channel_id,
        sequence_number: 0,
        job_id,
        nonce,
        ntime: work.ntime,
        version,
    }))
    .await;
    assert!(matches!(
        m.answer().await,
        Message::SubmitSharesSuccess { .. }
    ));
    let rec = record_where(&shares, WAIT, "the share", |s| s.nonce == nonce).await;
    assert_eq!(rec.client_ip, std::net::IpAddr::from([203, 0, 113, 7]));
    assert_eq!(rec.protocol, MiningProtocol::StratumV2);

    // Without a header the connection is closed before any handshake.
    let mut bare = TcpStream::connect(addr).await.unwrap();
    bare.write_all(&[0u8; 64]).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut bare, &mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is answered without a PROXY header");

    // A drain (SIGTERM) asks the miner to reconnect, then closes.
    r.server_ctx.shutdown.token().cancel();
    assert!(matches!(
        m.answer().await,
        Message::Reconnect { new_port: 0, .. }
    ));
    let end = tokio::time::timeout(WAIT, m.rd.next())
        .await
        .expect("closed in time");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    record_where(
        &events,
        WAIT,
        "MinerDisconnected",
        |e| matches!(&e.kind, EventKind::MinerDisconnected(d) if d.worker_name == "sv2rig"),
    )
    .await;
}
