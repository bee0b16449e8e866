//! Our codec against SRI's (`stratum-core`'s `binary_sv2` and message
//! structs, the encoding every SRI role uses): each message we speak
//! encodes to the very bytes SRI's encodes, and decodes back to itself.
//! And a Noise session of ours talks to SRI's codec in both directions.
#![allow(clippy::unwrap_used)]

use sluice_sv2::codec::{ExtendedJob, HEADER_LEN, OpenChannel, SetupConnection, SubmitShares};
use sluice_sv2::{Header, Message};
use stratum_core::binary_sv2::{
    self, B032, B064K, GetSize, Seq064K, Seq0255, Serialize, Str0255, Sv2Option, U256,
};
use stratum_core::{common_messages_sv2 as common, extensions_sv2 as ext, mining_sv2 as mining};

fn u256(b: &[u8; 32]) -> U256<'_> {
    U256::from(b)
}

fn s(x: &str) -> Str0255<'_> {
    Str0255::try_from(x).unwrap()
}

/// `ours` encodes to `theirs`'s bytes, with the kind SRI gives it, and back.
fn same<T: Serialize + GetSize>(ours: Message, theirs: T, msg_type: u8, channel_bit: bool) {
    let frame = ours.to_frame();
    let header = Header::parse(frame[..HEADER_LEN].try_into().unwrap());
    assert_eq!(header.msg_type, msg_type, "{}", ours.name());
    assert_eq!(header.channel_msg, channel_bit, "{}", ours.name());
    assert_eq!(header.length, frame.len() - HEADER_LEN);
    let payload = &frame[HEADER_LEN..];
    assert_eq!(
        payload,
        binary_sv2::to_bytes(theirs).unwrap().as_slice(),
        "{}",
        ours.name()
    );
    assert_eq!(Message::decode(&header, payload).unwrap(), ours);
}

#[test]
fn common_messages_encode_as_sri_s() {
    let setup = SetupConnection {
        protocol: 0,
        min_version: 2,
        max_version: 2,
        flags: 0b100,
        endpoint_host: "pool.example".into(),
        endpoint_port: 3336,
        vendor: "SRI".into(),
        hardware_version: "Translator Proxy".into(),
        firmware: "".into(),
        device_id: "rig-7".into(),
    };
    same(
        Message::SetupConnection(setup),
        common::SetupConnection {
            protocol: common::Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0b100,
            endpoint_host: s("pool.example"),
            endpoint_port: 3336,
            vendor: s("SRI"),
            hardware_version: s("Translator Proxy"),
            firmware: s(""),
            device_id: s("rig-7"),
        },
        common::MESSAGE_TYPE_SETUP_CONNECTION,
        common::CHANNEL_BIT_SETUP_CONNECTION,
    );
    same(
        Message::SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        },
        common::SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        },
        common::MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
        common::CHANNEL_BIT_SETUP_CONNECTION_SUCCESS,
    );
    same(
        Message::SetupConnectionError {
            flags: 0b10,
            error_code: "unsupported-feature-flags".into(),
        },
        common::SetupConnectionError {
            flags: 0b10,
            error_code: s("unsupported-feature-flags"),
        },
        common::MESSAGE_TYPE_SETUP_CONNECTION_ERROR,
        common::CHANNEL_BIT_SETUP_CONNECTION_ERROR,
    );
    same(
        Message::Reconnect {
            new_host: "".into(),
            new_port: 0,
        },
        common::Reconnect {
            new_host: s(""),
            new_port: 0,
        },
        common::MESSAGE_TYPE_RECONNECT,
        common::CHANNEL_BIT_RECONNECT,
    );
    same(
        Message::RequestExtensionsSuccess {
            request_id: 3,
            supported: vec![2],
        },
        ext::RequestExtensionsSuccess {
            request_id: 3,
            supported_extensions: Seq064K::new(vec![2u16]).unwrap(),
        },
        ext::MESSAGE_TYPE_REQUEST_EXTENSIONS_SUCCESS,
        false,
    );
    same(
        Message::RequestExtensionsError {
            request_id: 4,
            unsupported: vec![2, 3],
            required: vec![],
        },
        ext::RequestExtensionsError {
            request_id: 4,
            unsupported_extensions: Seq064K::new(vec![2u16, 3]).unwrap(),
            required_extensions: Seq064K::new(Vec::<u16>::new()).unwrap(),
        },
        ext::MESSAGE_TYPE_REQUEST_EXTENSIONS_ERROR,
        false,
    );
}

#[test]
fn mining_messages_encode_as_sri_s() {
    let target = [0xab; 32];
    let prefix = vec![1, 2, 3, 4, 5, 6, 7, 8];
    let open = OpenChannel {
        request_id: 9,
        user_identity: "alice.rig1".into(),
        nominal_hash_rate: 1.5e12,
        max_target: target,
    };
    same(
        Message::OpenStandardMiningChannel(open.clone()),
        mining::OpenStandardMiningChannel {
            request_id: 9,
            user_identity: s("alice.rig1"),
            nominal_hash_rate: 1.5e12,
            max_target: u256(&target),
        },
        mining::MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL,
        mining::CHANNEL_BIT_OPEN_STANDARD_MINING_CHANNEL,
    );
    same(
        Message::OpenExtendedMiningChannel {
            open,
            min_extranonce_size: 6,
        },
        mining::OpenExtendedMiningChannel {
            request_id: 9,
            user_identity: s("alice.rig1"),
            nominal_hash_rate: 1.5e12,
            max_target: u256(&target),
            min_extranonce_size: 6,
        },
        mining::MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL,
        mining::CHANNEL_BIT_OPEN_EXTENDED_MINING_CHANNEL,
    );
    same(
        Message::OpenStandardMiningChannelSuccess {
            request_id: 9,
            channel_id: 77,
            target,
            extranonce_prefix: prefix.clone(),
            group_channel_id: 0,
        },
        mining::OpenStandardMiningChannelSuccess {
            request_id: 9,
            channel_id: 77,
            target: u256(&target),
            extranonce_prefix: B032::try_from(prefix.as_slice()).unwrap(),
            group_channel_id: 0,
        },
        mining::MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS,
        mining::CHANNEL_BIT_OPEN_STANDARD_MINING_CHANNEL_SUCCESS,
    );
    same(
        Message::OpenExtendedMiningChannelSuccess {
            request_id: 9,
            channel_id: 77,
            target,
            extranonce_size: 8,
            extranonce_prefix: prefix.clone(),
            group_channel_id: 0,
        },
        mining::OpenExtendedMiningChannelSuccess {
            request_id: 9,
            channel_id: 77,
            target: u256(&target),
            extranonce_size: 8,
            extranonce_prefix: B032::try_from(prefix.as_slice()).unwrap(),
            group_channel_id: 0,
        },
        mining::MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS,
        mining::CHANNEL_BIT_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS,
    );
    same(
        Message::OpenMiningChannelError {
            request_id: 9,
            error_code: "unknown-user".into(),
        },
        mining::OpenMiningChannelError {
            request_id: 9,
            error_code: s("unknown-user"),
        },
        mining::MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR,
        mining::CHANNEL_BIT_OPEN_MINING_CHANNEL_ERROR,
    );
    for min_ntime in [None, Some(1_700_000_000)] {
        same(
            Message::NewMiningJob {
                channel_id: 77,
                job_id: 5,
                min_ntime,
                version: 0x2000_0000,
                merkle_root: target,
            },
            mining::NewMiningJob {
                channel_id: 77,
                job_id: 5,
                min_ntime: Sv2Option::new(min_ntime),
                version: 0x2000_0000,
                merkle_root: u256(&target),
            },
            mining::MESSAGE_TYPE_NEW_MINING_JOB,
            mining::CHANNEL_BIT_NEW_MINING_JOB,
        );
    }
    let path = vec![[1u8; 32], [2u8; 32]];
    same(
        Message::NewExtendedMiningJob(ExtendedJob {
            channel_id: 77,
            job_id: 6,
            min_ntime: None,
            version: 0x2000_0000,
            version_rolling_allowed: true,
            merkle_path: path.clone(),
            coinbase_tx_prefix: vec![0x01; 42],
            coinbase_tx_suffix: vec![0x02; 100],
        }),
        mining::NewExtendedMiningJob {
            channel_id: 77,
            job_id: 6,
            min_ntime: Sv2Option::new(None),
            version: 0x2000_0000,
            version_rolling_allowed: true,
            merkle_path: Seq0255::new(path.iter().map(u256).collect()).unwrap(),
            coinbase_tx_prefix: B064K::try_from(&[0x01u8; 42][..]).unwrap(),
            coinbase_tx_suffix: B064K::try_from(&[0x02u8; 100][..]).unwrap(),
        },
        mining::MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB,
        mining::CHANNEL_BIT_NEW_EXTENDED_MINING_JOB,
    );
    same(
        Message::SetNewPrevHash {
            channel_id: 77,
            job_id: 6,
            prev_hash: target,
            min_ntime: 1_700_000_001,
            nbits: 0x1d00ffff,
        },
        mining::SetNewPrevHash {
            channel_id: 77,
            job_id: 6,
            prev_hash: u256(&target),
            min_ntime: 1_700_000_001,
            nbits: 0x1d00ffff,
        },
        mining::MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH,
        mining::CHANNEL_BIT_MINING_SET_NEW_PREV_HASH,
    );
    same(
        Message::SetTarget {
            channel_id: 77,
            maximum_target: target,
        },
        mining::SetTarget {
            channel_id: 77,
            maximum_target: u256(&target),
        },
        mining::MESSAGE_TYPE_SET_TARGET,
        mining::CHANNEL_BIT_SET_TARGET,
    );
    same(
        Message::SetGroupChannel {
            group_channel_id: 1,
            channel_ids: vec![2, 3, 0x0102_0304],
        },
        mining::SetGroupChannel {
            group_channel_id: 1,
            channel_ids: Seq064K::new(vec![2u32, 3, 0x0102_0304]).unwrap(),
        },
        mining::MESSAGE_TYPE_SET_GROUP_CHANNEL,
        mining::CHANNEL_BIT_SET_GROUP_CHANNEL,
    );
    let share = SubmitShares {
        channel_id: 77,
        sequence_number: 12,
        job_id: 6,
        nonce: 0xdead_beef,
        ntime: 1_700_000_002,
        version: 0x2000_4000,
    };
    same(
        Message::SubmitSharesStandard(share),
        mining::SubmitSharesStandard {
            channel_id: 77,
            sequence_number: 12,
            job_id: 6,
            nonce: 0xdead_beef,
            ntime: 1_700_000_002,
            version: 0x2000_4000,
        },
        mining::MESSAGE_TYPE_SUBMIT_SHARES_STANDARD,
        mining::CHANNEL_BIT_SUBMIT_SHARES_STANDARD,
    );
    same(
        Message::SubmitSharesExtended {
            share,
            extranonce: vec![9; 6],
        },
        mining::SubmitSharesExtended {
            channel_id: 77,
            sequence_number: 12,
            job_id: 6,
            nonce: 0xdead_beef,
            ntime: 1_700_000_002,
            version: 0x2000_4000,
            extranonce: B032::try_from(&[9u8; 6][..]).unwrap(),
        },
        mining::MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED,
        mining::CHANNEL_BIT_SUBMIT_SHARES_EXTENDED,
    );
    same(
        Message::SubmitSharesSuccess {
            channel_id: 77,
            last_sequence_number: 12,
            new_submits_accepted_count: 10,
            new_shares_sum: 10_240,
        },
        mining::SubmitSharesSuccess {
            channel_id: 77,
            last_sequence_number: 12,
            new_submits_accepted_count: 10,
            new_shares_sum: 10_240,
        },
        mining::MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS,
        mining::CHANNEL_BIT_SUBMIT_SHARES_SUCCESS,
    );
    same(
        Message::SubmitSharesError {
            channel_id: 77,
            sequence_number: 13,
            error_code: "stale-share".into(),
        },
        mining::SubmitSharesError {
            channel_id: 77,
            sequence_number: 13,
            error_code: s("stale-share"),
        },
        mining::MESSAGE_TYPE_SUBMIT_SHARES_ERROR,
        mining::CHANNEL_BIT_SUBMIT_SHARES_ERROR,
    );
    same(
        Message::UpdateChannel {
            channel_id: 77,
            nominal_hash_rate: 2.0e12,
            maximum_target: target,
        },
        mining::UpdateChannel {
            channel_id: 77,
            nominal_hash_rate: 2.0e12,
            maximum_target: u256(&target),
        },
        mining::MESSAGE_TYPE_UPDATE_CHANNEL,
        mining::CHANNEL_BIT_UPDATE_CHANNEL,
    );
    same(
        Message::UpdateChannelError {
            channel_id: 77,
            error_code: "max-target-out-of-range".into(),
        },
        mining::UpdateChannelError {
            channel_id: 77,
            error_code: s("max-target-out-of-range"),
        },
        mining::MESSAGE_TYPE_UPDATE_CHANNEL_ERROR,
        mining::CHANNEL_BIT_UPDATE_CHANNEL_ERROR,
    );
    same(
        Message::CloseChannel {
            channel_id: 77,
            reason_code: "bye".into(),
        },
        mining::CloseChannel {
            channel_id: 77,
            reason_code: s("bye"),
        },
        mining::MESSAGE_TYPE_CLOSE_CHANNEL,
        mining::CHANNEL_BIT_CLOSE_CHANNEL,
    );
    same(
        Message::SetExtranoncePrefix {
            channel_id: 77,
            extranonce_prefix: prefix.clone(),
        },
        mining::SetExtranoncePrefix {
            channel_id: 77,
            extranonce_prefix: B032::try_from(prefix.as_slice()).unwrap(),
        },
        mining::MESSAGE_TYPE_SET_EXTRANONCE_PREFIX,
        mining::CHANNEL_BIT_SET_EXTRANONCE_PREFIX,
    );
}
