//! Every domain type survives encode → decode unchanged, for arbitrary
//! values; malformed wire data is refused with the offending field named.

use std::net::IpAddr;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, TxMerkleNode, Txid, Weight, Wtxid};
use proptest::prelude::*;
use prost::Message;
use sluice_core::record::{
    BlockFound, BlockStanding, BlockStatus, Event, EventKind, Figure, MinerIdentity, PayoutNews,
    PayoutState, ServiceStatus, ShareRecord, ShareStatus, SolvedShare,
};
use sluice_core::{BlockTemplate, Job, JobId, TemplateId, TemplateTx};
use sluice_proto::{Payload, ProtoError, pb};

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn template_tx() -> impl Strategy<Value = TemplateTx> {
    (blob(300), bytes32(), bytes32(), any::<u64>(), any::<u64>()).prop_map(
        |(raw, t, w, fee, wu)| TemplateTx {
            raw,
            txid: Txid::from_byte_array(t),
            wtxid: Wtxid::from_byte_array(w),
            fee: Amount::from_sat(fee),
            weight: Weight::from_wu(wu),
        },
    )
}

prop_compose! {
    fn template()(
        id in bytes32(), node_id in "[a-z0-9-]{0,12}", created_at_ms in any::<u64>(),
        height in any::<u32>(), prev in bytes32(), version in any::<i32>(), bits in any::<u32>(),
        cur_time in any::<u32>(), min_time in any::<u32>(), value in any::<u64>(),
        commitment in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..60)),
        transactions in proptest::collection::vec(template_tx(), 0..20),
        network in proptest::option::of(prop_oneof![
            Just(bitcoin::Network::Bitcoin), Just(bitcoin::Network::Testnet),
            Just(bitcoin::Network::Testnet4), Just(bitcoin::Network::Signet),
            Just(bitcoin::Network::Regtest),
        ]),
        chain_work in proptest::option::of(bytes32()),
    ) -> BlockTemplate {
        BlockTemplate {
            id: TemplateId(id), node_id, created_at_ms, height,
            prev_blockhash: BlockHash::from_byte_array(prev),
            version: Version::from_consensus(version),
            bits: CompactTarget::from_consensus(bits),
            cur_time, min_time, coinbase_value: Amount::from_sat(value),
            default_witness_commitment: commitment.map(ScriptBuf::from_bytes),
            transactions, network,
            chain_work: chain_work.map(bitcoin::pow::Work::from_be_bytes),
        }
    }
}

prop_compose! {
    fn job()(
        id in any::<u64>(), epoch in any::<u64>(), template in bytes32(), height in any::<u32>(),
        prev in bytes32(), version in any::<i32>(), bits in any::<u32>(), time in any::<u32>(),
        min_time in any::<u32>(), coinbase1 in blob(120), coinbase2 in blob(200),
        branch in proptest::collection::vec(bytes32(), 0..14), value in any::<u64>(),
        clean in any::<bool>(), created_at_ms in any::<u64>(),
        solo in proptest::option::of((0..5usize, any::<u64>(), proptest::collection::vec((any::<u64>(), blob(40)), 0..3))),
    ) -> Job {
        Job {
            id: JobId(id), leader_epoch: epoch, template_id: TemplateId(template), height,
            prev_blockhash: BlockHash::from_byte_array(prev),
            version: Version::from_consensus(version), bits: CompactTarget::from_consensus(bits),
            time, min_time, coinbase1, coinbase2,
            merkle_branch: branch.into_iter().map(TxMerkleNode::from_byte_array).collect(),
            coinbase_value: Amount::from_sat(value), clean, created_at_ms,
            solo: solo.map(|(network, miner_value, outputs)| sluice_core::SoloCoinbase {
                network: [
                    bitcoin::Network::Bitcoin, bitcoin::Network::Testnet, bitcoin::Network::Testnet4,
                    bitcoin::Network::Signet, bitcoin::Network::Regtest,
                ][network],
                miner_value: Amount::from_sat(miner_value),
                outputs: outputs
                    .into_iter()
                    .map(|(v, s)| bitcoin::TxOut {
                        value: Amount::from_sat(v),
                        script_pubkey: ScriptBuf::from_bytes(s),
                    })
                    .collect(),
            }),
        }
    }
}

fn status() -> impl Strategy<Value = ShareStatus> {
    prop_oneof![
        Just(ShareStatus::Accepted),
        Just(ShareStatus::Block),
        Just(ShareStatus::Stale),
        Just(ShareStatus::LowDifficulty),
        Just(ShareStatus::TimeTooOld),
        Just(ShareStatus::TimeTooNew),
        Just(ShareStatus::BadVersionBits),
        Just(ShareStatus::Invalid),
    ]
}

prop_compose! {
    fn share()(
        job in any::<u64>(), user_id in any::<u32>(), worker_id in any::<i64>(),
        worker_name in "[a-zA-Z0-9._-]{0,20}", server_id in any::<u8>(), en1 in any::<u32>(),
        en2 in blob(9), ntime in any::<u32>(), nonce in any::<u32>(), vbits in any::<u32>(),
        diff in 1e-9f64..1e15, bits in any::<u32>(), height in any::<u32>(), status in status(),
        hash in bytes32(), client_ip in ip(), ts in any::<u64>(), v2 in any::<bool>(),
        solo in any::<bool>(),
    ) -> ShareRecord {
        ShareRecord {
            job_id: JobId(job), user_id, worker_id, worker_name, server_id, extranonce1: en1,
            extranonce2: en2, ntime, nonce, version_bits: vbits, share_difficulty: diff,
            network_bits: CompactTarget::from_consensus(bits), height, status,
            hash: BlockHash::from_byte_array(hash), client_ip, timestamp_ms: ts,
            protocol: if v2 {
                sluice_core::record::MiningProtocol::StratumV2
            } else {
                sluice_core::record::MiningProtocol::StratumV1
            },
            solo,
        }
    }
}

prop_compose! {
    fn header()(version in any::<i32>(), prev in bytes32(), root in bytes32(), time in any::<u32>(),
                bits in any::<u32>(), nonce in any::<u32>()) -> Header {
        Header {
            version: Version::from_consensus(version),
            prev_blockhash: BlockHash::from_byte_array(prev),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time, bits: CompactTarget::from_consensus(bits), nonce,
        }
    }
}

prop_compose! {
    fn solved()(
        job in any::<u64>(), template in bytes32(), height in any::<u32>(), header in header(),
        coinbase in blob(300), user_id in any::<u32>(), worker_id in any::<i64>(),
        worker_name in "[a-z0-9]{0,20}", server_id in any::<u8>(), ts in any::<u64>(),
        solo_address in proptest::option::of("[a-z0-9]{1,62}"),
    ) -> SolvedShare {
        SolvedShare {
            job_id: JobId(job), template_id: TemplateId(template), height, header, coinbase,
            block_hash: header.block_hash(), user_id, worker_id, worker_name, server_id,
            timestamp_ms: ts,
            solo_address,
        }
    }
}

prop_compose! {
    fn miner()(
        user_id in any::<u32>(), user_name in "[a-z]{1,10}", worker_id in any::<i64>(),
        worker_name in "[a-z0-9]{0,20}", server_id in any::<u8>(), en1 in any::<u32>(),
        client_ip in ip(), miner_agent in ".{0,30}",
    ) -> MinerIdentity {
        MinerIdentity { user_id, user_name, worker_id, worker_name, server_id, extranonce1: en1, client_ip, miner_agent }
    }
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    let block = (
        any::<u32>(),
        bytes32(),
        bytes32(),
        any::<u32>(),
        any::<i64>(),
        "[a-z]{0,8}",
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(height, h, p, user_id, worker_id, worker_name, job, reward_sat, accepted)| {
                EventKind::BlockFound(BlockFound {
                    height,
                    hash: BlockHash::from_byte_array(h),
                    prev_hash: BlockHash::from_byte_array(p),
                    user_id,
                    worker_id,
                    worker_name,
                    job_id: JobId(job),
                    reward_sat,
                    accepted,
                    solo_address: None,
                })
            },
        );
    let status = (
        "[a-z]{1,10}",
        "[a-z0-9-]{1,10}",
        "[a-z.]{1,10}",
        "[0-9.]{1,8}",
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(("[a-z_]{1,12}", -1e12f64..1e12), 0..6),
        proptest::collection::vec("[a-z_:]{1,20}", 0..3),
    )
        .prop_map(
            |(service, instance, host, version, uptime_secs, healthy, figures, problems)| {
                EventKind::ServiceStatus(ServiceStatus {
                    service,
                    instance,
                    host,
                    version,
                    uptime_secs,
                    healthy,
                    figures: figures
                        .into_iter()
                        .map(|(name, value)| Figure { name, value })
                        .collect(),
                    problems,
                })
            },
        );
    let standing = (
        any::<u32>(),
        any::<[u8; 32]>(),
        prop_oneof![
            Just(BlockStatus::Pending),
            Just(BlockStatus::Confirmed),
            Just(BlockStatus::Orphaned)
        ],
        any::<u32>(),
        "[a-z]{0,8}",
        any::<u64>(),
    )
        .prop_map(
            |(height, h, status, confirmations, worker_name, reward_sat)| {
                EventKind::BlockStanding(BlockStanding {
                    height,
                    hash: BlockHash::from_byte_array(h),
                    status,
                    confirmations,
                    worker_name,
                    reward_sat,
                })
            },
        );
    let payout = (
        any::<u64>(),
        any::<[u8; 32]>(),
        prop_oneof![
            Just(PayoutState::Broadcast),
            Just(PayoutState::Confirmed),
            Just(PayoutState::Failed)
        ],
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        "[a-z ]{0,12}",
    )
        .prop_map(|(id, t, state, total_sat, network_fee_sat, users, error)| {
            EventKind::Payout(PayoutNews {
                id,
                txid: bitcoin::Txid::from_byte_array(t),
                state,
                total_sat,
                network_fee_sat,
                users,
                error,
            })
        });
    prop_oneof![
        payout,
        miner().prop_map(EventKind::MinerConnected),
        miner().prop_map(EventKind::MinerDisconnected),
        block,
        status,
        standing,
    ]
}

fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let back =
        T::decode_from(&value.encode_to_vec()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #[test]
    fn templates_round_trip(t in template()) { round_trip(&t)?; }

    #[test]
    fn jobs_round_trip(j in job()) { round_trip(&j)?; }

    #[test]
    fn shares_round_trip(s in share()) { round_trip(&s)?; }

    #[test]
    fn solved_shares_round_trip(s in solved()) { round_trip(&s)?; }

    #[test]
    fn events_round_trip(ts in any::<u64>(), kind in event_kind()) {
        round_trip(&Event { timestamp_ms: ts, kind })?;
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_is_an_error_not_a_panic(bytes in blob(200)) {
        let _ = Job::decode_from(&bytes);
        let _ = ShareRecord::decode_from(&bytes);
        let _ = SolvedShare::decode_from(&bytes);
        let _ = Event::decode_from(&bytes);
        let _ = BlockTemplate::decode_from(&bytes);
    }
}

fn sample_share() -> pb::Share {
    pb::Share {
        hash: vec![0; 32],
        client_ip: vec![127, 0, 0, 1],
        status: pb::ShareStatus::Accepted as i32,
        share_difficulty: 1.0,
        ..Default::default()
    }
}

#[test]
fn wrong_hash_length_names_the_field() {
    let m = pb::Share {
        hash: vec![0; 31],
        ..sample_share()
    };
    let err = ShareRecord::decode_from(&m.encode_to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::Length {
                field: "hash",
                got: 31,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_template_of_an_unknown_chain_or_a_short_chain_work_is_refused() {
    let good = pb::RawGbt {
        template_id: vec![0; 32],
        prev_hash: vec![0; 32],
        ..Default::default()
    };
    let decoded = BlockTemplate::decode_from(&good.encode_to_vec()).unwrap();
    assert_eq!(
        (decoded.network, decoded.chain_work),
        (None, None),
        "a record from before both"
    );
    let m = pb::RawGbt {
        chain: "mainnet".into(),
        ..good.clone()
    };
    let err = BlockTemplate::decode_from(&m.encode_to_vec()).unwrap_err();
    assert!(
        matches!(err, ProtoError::Value { field: "chain", .. }),
        "{err}"
    );
    let m = pb::RawGbt {
        chain_work: vec![1; 8],
        ..good
    };
    let err = BlockTemplate::decode_from(&m.encode_to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::Length {
                field: "chain_work",
                got: 8,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_and_unspecified_status_are_refused() {
    for status in [0, 99] {
        let m = pb::Share {
            status,
            ..sample_share()
        };
        let err = ShareRecord::decode_from(&m.encode_to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::Value {
                    field: "status",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(ShareRecord::decode_from(&sample_share().encode_to_vec()).is_ok());
}

#[test]
fn bad_ip_difficulty_and_server_id_are_refused() {
    let m = pb::Share {
        client_ip: vec![1, 2, 3],
        ..sample_share()
    };
    assert!(
        ShareRecord::decode_from(&m.encode_to_vec())
            .unwrap_err()
            .to_string()
            .contains("client_ip")
    );
    let m = pb::Share {
        share_difficulty: 0.0,
        ..sample_share()
    };
    assert!(
        ShareRecord::decode_from(&m.encode_to_vec())
            .unwrap_err()
            .to_string()
            .contains("share_difficulty")
    );
    let m = pb::Share {
        server_id: 256,
        ..sample_share()
    };
    assert!(
        ShareRecord::decode_from(&m.encode_to_vec())
            .unwrap_err()
            .to_string()
            .contains("server_id")
    );
}

#[test]
fn event_without_kind_is_refused() {
    let m = pb::Event {
        timestamp_ms: 1,
        kind: None,
    };
    assert!(matches!(
        Event::decode_from(&m.encode_to_vec()),
        Err(ProtoError::Missing("kind"))
    ));
}

#[test]
fn short_header_is_refused() {
    let m = pb::SolvedShare {
        header: vec![0; 79],
        template_id: vec![0; 32],
        block_hash: vec![0; 32],
        ..Default::default()
    };
    let err = SolvedShare::decode_from(&m.encode_to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::Length {
                field: "header",
                got: 79,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn not_protobuf_at_all() {
    let err = Job::decode_from(&[0xff, 0xff, 0xff]).unwrap_err();
    assert!(err.to_string().starts_with("malformed Job"), "{err}");
}

/// Found by the `bus_records` fuzz target: a heartbeat whose figure is NaN
/// (a rate divided by nothing). It decodes, and re-encodes to the very same
/// bytes, though the value is not equal to itself.
#[test]
fn a_nan_figure_survives_a_round_trip_bit_for_bit() {
    // Embedded, not read at run time: a test binary built in another
    // checkout (the build cache is shared) would look in that one.
    let bytes = include_bytes!("../../fuzz/regressions/bus_records/nan-figure");
    // The first byte picks the topic (4: Event).
    assert_eq!(bytes[0], 4);
    let event = Event::decode_from(&bytes[1..]).unwrap();
    let EventKind::ServiceStatus(status) = &event.kind else {
        panic!("{event:?}");
    };
    assert!(status.figures[0].value.is_nan());
    let again = event.encode_to_vec();
    assert_eq!(Event::decode_from(&again).unwrap().encode_to_vec(), again);
}
