//! Writes the seed corpus of the `bus_records` fuzz target: one record of
//! each topic's message as the pool really writes it, behind the byte that
//! picks the message (0 RawGbt, 1 Job, 2 Share, 3 SolvedShare, 4 Event).
//!
//! `cargo run -p sluice-proto --example fuzz_seeds -- fuzz/corpus/bus_records`

use std::net::IpAddr;
use std::path::PathBuf;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, TxMerkleNode, Txid, Weight, Wtxid};
use sluice_core::record::{
    BlockFound, Event, EventKind, Figure, MinerIdentity, ServiceStatus, ShareRecord, ShareStatus,
    SolvedShare,
};
use sluice_core::{BlockTemplate, CoinbaseParams, Job, JobId, TemplateId, TemplateTx};
use sluice_proto::Payload;

fn template() -> BlockTemplate {
    let tx = |n: u8| TemplateTx {
        raw: vec![n; 120],
        txid: Txid::from_byte_array([n; 32]),
        wtxid: Wtxid::from_byte_array([n ^ 0xff; 32]),
        fee: Amount::from_sat(1_000 * u64::from(n)),
        weight: Weight::from_wu(480),
    };
    let mut t = BlockTemplate {
        id: TemplateId([0; 32]),
        node_id: "core".into(),
        created_at_ms: 1_764_000_000_000,
        height: 840_000,
        prev_blockhash: BlockHash::from_byte_array([3; 32]),
        version: Version::from_consensus(0x2000_0000),
        bits: CompactTarget::from_consensus(0x1703_4219),
        cur_time: 1_764_000_000,
        min_time: 1_763_999_000,
        coinbase_value: Amount::from_sat(312_600_000),
        default_witness_commitment: Some(ScriptBuf::from_bytes(vec![0x6a; 38])),
        transactions: vec![tx(1), tx(2), tx(3)],
        network: Some(bitcoin::Network::Bitcoin),
        chain_work: Some(bitcoin::pow::Work::from_be_bytes([3; 32])),
    };
    t.id = t.compute_id();
    t
}

fn job() -> Job {
    let split = CoinbaseParams {
        height: 840_000,
        unique: 7,
        pool_tag: b"/sluice/".to_vec(),
        extranonce1_len: 4,
        extranonce2_len: 8,
        value: Amount::from_sat(312_600_000),
        payout_script: ScriptBuf::new_op_return([0u8; 4]),
        fixed_outputs: Vec::new(),
        witness_commitment: None,
    }
    .build()
    .expect("a coinbase");
    Job {
        id: JobId(0x0001_0000_0000_0001),
        leader_epoch: 3,
        template_id: template().id,
        height: 840_000,
        prev_blockhash: BlockHash::from_byte_array([3; 32]),
        version: Version::from_consensus(0x2000_0000),
        bits: CompactTarget::from_consensus(0x1703_4219),
        time: 1_764_000_000,
        min_time: 1_763_999_000,
        coinbase1: split.coinbase1,
        coinbase2: split.coinbase2,
        merkle_branch: vec![TxMerkleNode::from_byte_array([9; 32]); 2],
        coinbase_value: Amount::from_sat(312_600_000),
        clean: true,
        created_at_ms: 1_764_000_000_000,
        solo: None,
    }
}

fn share() -> ShareRecord {
    ShareRecord {
        job_id: JobId(0x0001_0000_0000_0001),
        user_id: 1,
        worker_id: 42,
        worker_name: "rig1".into(),
        server_id: 1,
        extranonce1: 0x0100_0001,
        extranonce2: vec![0; 8],
        ntime: 1_764_000_000,
        nonce: 0xdead_beef,
        version_bits: 0x0000_2000,
        share_difficulty: 65_536.0,
        network_bits: CompactTarget::from_consensus(0x1703_4219),
        height: 840_000,
        status: ShareStatus::Accepted,
        hash: BlockHash::from_byte_array([5; 32]),
        client_ip: IpAddr::from([192, 0, 2, 7]),
        timestamp_ms: 1_764_000_000_123,
        protocol: sluice_core::record::MiningProtocol::StratumV1,
        solo: false,
    }
}

fn solved() -> SolvedShare {
    let header = Header {
        version: Version::from_consensus(0x2000_2000),
        prev_blockhash: BlockHash::from_byte_array([3; 32]),
        merkle_root: TxMerkleNode::from_byte_array([4; 32]),
        time: 1_764_000_000,
        bits: CompactTarget::from_consensus(0x1703_4219),
        nonce: 7,
    };
    SolvedShare {
        job_id: JobId(0x0001_0000_0000_0001),
        template_id: template().id,
        height: 840_000,
        header,
        coinbase: [job().coinbase1, vec![0; 12], job().coinbase2].concat(),
        block_hash: header.block_hash(),
        user_id: 1,
        worker_id: 42,
        worker_name: "rig1".into(),
        server_id: 1,
        timestamp_ms: 1_764_000_000_123,
        solo_address: None,
    }
}

fn events() -> Vec<Event> {
    let miner = MinerIdentity {
        user_id: 1,
        user_name: "alice".into(),
        worker_id: 42,
        worker_name: "rig1".into(),
        server_id: 1,
        extranonce1: 0x0100_0001,
        client_ip: IpAddr::from([192, 0, 2, 7]),
        miner_agent: "cgminer/4.12.1".into(),
    };
    let kinds = [
        EventKind::MinerConnected(miner.clone()),
        EventKind::MinerDisconnected(miner),
        EventKind::BlockFound(BlockFound {
            height: 840_000,
            hash: BlockHash::from_byte_array([5; 32]),
            prev_hash: BlockHash::from_byte_array([3; 32]),
            user_id: 1,
            worker_id: 42,
            worker_name: "rig1".into(),
            job_id: JobId(1),
            reward_sat: 312_600_000,
            accepted: true,
            solo_address: None,
        }),
        EventKind::ServiceStatus(ServiceStatus {
            service: "sserver".into(),
            instance: "sserver-1".into(),
            host: "pool1".into(),
            version: "0.1.0".into(),
            uptime_secs: 3600,
            healthy: true,
            figures: vec![Figure {
                name: "connections".into(),
                value: 1000.0,
            }],
            problems: vec![],
        }),
    ];
    kinds
        .into_iter()
        .map(|kind| Event {
            timestamp_ms: 1_764_000_000_123,
            kind,
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus/bus_records".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let mut seeds: Vec<(String, u8, Vec<u8>)> = vec![
        ("rawgbt".into(), 0, template().encode_to_vec()),
        ("job".into(), 1, job().encode_to_vec()),
        ("share".into(), 2, share().encode_to_vec()),
        ("solved".into(), 3, solved().encode_to_vec()),
    ];
    for (n, e) in events().iter().enumerate() {
        seeds.push((format!("event{n}"), 4, e.encode_to_vec()));
    }
    for (name, topic, bytes) in seeds {
        let mut record = vec![topic];
        record.extend(bytes);
        std::fs::write(dir.join(format!("seed-{name}")), record)?;
    }
    Ok(())
}
