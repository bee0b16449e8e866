//! Domain ↔ protobuf conversions. Encoding cannot fail; decoding checks that
//! every hash is 32 bytes, every header 80, every IP 4 or 16, every enum
//! known, and every oneof set, and names the offending field when not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, TxMerkleNode, Txid, Weight, Wtxid};
use prost::Message;
use sluice_core::record::{
    BlockFound, BlockStanding, BlockStatus, Event, EventKind, Figure, MinerIdentity,
    MiningProtocol, PayoutNews, PayoutState, ServiceStatus, ShareRecord, ShareStatus, SolvedShare,
};
use sluice_core::{BlockTemplate, Job, JobId, SoloCoinbase, TemplateId, TemplateTx};

use crate::{Payload, pb};

/// Why bytes are not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Not protobuf of the expected message.
    #[error("malformed {message}: {source}")]
    Decode {
        /// Message type.
        message: &'static str,
        /// prost's reason.
        source: prost::DecodeError,
    },
    /// A fixed-size field has the wrong size.
    #[error("field {field} is {got} bytes, expected {expected}")]
    Length {
        /// Field name.
        field: &'static str,
        /// Size received.
        got: usize,
        /// Size required.
        expected: &'static str,
    },
    /// A field holds a value outside its domain.
    #[error("field {field} has invalid value {value}")]
    Value {
        /// Field name.
        field: &'static str,
        /// The value, rendered.
        value: String,
    },
    /// A required message or oneof is absent.
    #[error("field {0} is missing")]
    Missing(&'static str),
}

fn hash32(field: &'static str, bytes: &[u8]) -> Result<[u8; 32], ProtoError> {
    bytes.try_into().map_err(|_| ProtoError::Length {
        field,
        got: bytes.len(),
        expected: "32",
    })
}

fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_from_bytes(field: &'static str, bytes: &[u8]) -> Result<IpAddr, ProtoError> {
    match bytes.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).expect("length checked"),
        ))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).expect("length checked"),
        ))),
        got => Err(ProtoError::Length {
            field,
            got,
            expected: "4 or 16",
        }),
    }
}

fn server_id(v: u32) -> Result<u8, ProtoError> {
    u8::try_from(v).map_err(|_| ProtoError::Value {
        field: "server_id",
        value: v.to_string(),
    })
}

fn decode<M: Message + Default>(message: &'static str, bytes: &[u8]) -> Result<M, ProtoError> {
    M::decode(bytes).map_err(|source| ProtoError::Decode { message, source })
}

// ---- RawGbt ----

impl From<&BlockTemplate> for pb::RawGbt {
    fn from(t: &BlockTemplate) -> Self {
        pb::RawGbt {
            template_id: t.id.0.to_vec(),
            node_id: t.node_id.clone(),
            created_at_ms: t.created_at_ms,
            height: t.height,
            prev_hash: t.prev_blockhash.to_byte_array().to_vec(),
            version: t.version.to_consensus(),
            bits: t.bits.to_consensus(),
            cur_time: t.cur_time,
            min_time: t.min_time,
            coinbase_value_sat: t.coinbase_value.to_sat(),
            default_witness_commitment: t
                .default_witness_commitment
                .as_ref()
                .map(|s| s.to_bytes())
                .unwrap_or_default(),
            transactions: t
                .transactions
                .iter()
                .map(|tx| pb::TemplateTransaction {
                    raw: tx.raw.clone(),
                    txid: tx.txid.to_byte_array().to_vec(),
                    wtxid: tx.wtxid.to_byte_array().to_vec(),
                    fee_sat: tx.fee.to_sat(),
                    weight: tx.weight.to_wu(),
                })
                .collect(),
            chain: t
                .network
                .map(|n| sluice_core::network::chain_name(n).to_owned())
                .unwrap_or_default(),
            chain_work: t
                .chain_work
                .map(|w| w.to_be_bytes().to_vec())
                .unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::RawGbt> for BlockTemplate {
    type Error = ProtoError;

    fn try_from(m: pb::RawGbt) -> Result<Self, ProtoError> {
        let transactions = m
            .transactions
            .into_iter()
            .map(|tx| {
                Ok(TemplateTx {
                    txid: Txid::from_byte_array(hash32("transactions.txid", &tx.txid)?),
                    wtxid: Wtxid::from_byte_array(hash32("transactions.wtxid", &tx.wtxid)?),
                    raw: tx.raw,
                    fee: Amount::from_sat(tx.fee_sat),
                    weight: Weight::from_wu(tx.weight),
                })
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(BlockTemplate {
            id: TemplateId(hash32("template_id", &m.template_id)?),
            node_id: m.node_id,
            created_at_ms: m.created_at_ms,
            height: m.height,
            prev_blockhash: BlockHash::from_byte_array(hash32("prev_hash", &m.prev_hash)?),
            version: Version::from_consensus(m.version),
            bits: CompactTarget::from_consensus(m.bits),
            cur_time: m.cur_time,
            min_time: m.min_time,
            coinbase_value: Amount::from_sat(m.coinbase_value_sat),
            default_witness_commitment: (!m.default_witness_commitment.is_empty())
                .then(|| ScriptBuf::from_bytes(m.default_witness_commitment)),
            transactions,
            network: match m.chain.as_str() {
                "" => None,
                chain => Some(
                    sluice_core::network::network_of_chain(chain).ok_or_else(|| {
                        ProtoError::Value {
                            field: "chain",
                            value: format!("{chain:?}"),
                        }
                    })?,
                ),
            },
            chain_work: match m.chain_work.len() {
                0 => None,
                _ => Some(bitcoin::pow::Work::from_be_bytes(hash32(
                    "chain_work",
                    &m.chain_work,
                )?)),
            },
        })
    }
}

// ---- Job ----

impl From<&Job> for pb::Job {
    fn from(j: &Job) -> Self {
        pb::Job {
            job_id: j.id.0,
            leader_epoch: j.leader_epoch,
            template_id: j.template_id.0.to_vec(),
            height: j.height,
            prev_hash: j.prev_blockhash.to_byte_array().to_vec(),
            version: j.version.to_consensus(),
            bits: j.bits.to_consensus(),
            time: j.time,
            min_time: j.min_time,
            coinbase1: j.coinbase1.clone(),
            coinbase2: j.coinbase2.clone(),
            merkle_branch: j
                .merkle_branch
                .iter()
                .map(|n| n.to_byte_array().to_vec())
                .collect(),
            coinbase_value_sat: j.coinbase_value.to_sat(),
            clean: j.clean,
            created_at_ms: j.created_at_ms,
            solo: j.solo.as_ref().map(|solo| pb::SoloCoinbase {
                network: sluice_core::network::chain_name(solo.network).to_owned(),
                miner_value_sat: solo.miner_value.to_sat(),
                outputs: solo
                    .outputs
                    .iter()
                    .map(|o| pb::TxOutput {
                        value_sat: o.value.to_sat(),
                        script: o.script_pubkey.to_bytes(),
                    })
                    .collect(),
            }),
        }
    }
}

impl TryFrom<pb::Job> for Job {
    type Error = ProtoError;

    fn try_from(m: pb::Job) -> Result<Self, ProtoError> {
        let merkle_branch = m
            .merkle_branch
            .iter()
            .map(|b| Ok(TxMerkleNode::from_byte_array(hash32("merkle_branch", b)?)))
            .collect::<Result<_, ProtoError>>()?;
        Ok(Job {
            id: JobId(m.job_id),
            leader_epoch: m.leader_epoch,
            template_id: TemplateId(hash32("template_id", &m.template_id)?),
            height: m.height,
            prev_blockhash: BlockHash::from_byte_array(hash32("prev_hash", &m.prev_hash)?),
            version: Version::from_consensus(m.version),
            bits: CompactTarget::from_consensus(m.bits),
            time: m.time,
            min_time: m.min_time,
            coinbase1: m.coinbase1,
            coinbase2: m.coinbase2,
            merkle_branch,
            coinbase_value: Amount::from_sat(m.coinbase_value_sat),
            clean: m.clean,
            created_at_ms: m.created_at_ms,
            solo: m.solo.map(solo_from_pb).transpose()?,
        })
    }
}

fn solo_from_pb(m: pb::SoloCoinbase) -> Result<SoloCoinbase, ProtoError> {
    let network =
        sluice_core::network::network_of_chain(&m.network).ok_or_else(|| ProtoError::Value {
            field: "solo.network",
            value: m.network.clone(),
        })?;
    Ok(SoloCoinbase {
        network,
        miner_value: Amount::from_sat(m.miner_value_sat),
        outputs: m
            .outputs
            .into_iter()
            .map(|o| bitcoin::TxOut {
                value: Amount::from_sat(o.value_sat),
                script_pubkey: bitcoin::ScriptBuf::from_bytes(o.script),
            })
            .collect(),
    })
}

// ---- Share ----

fn status_to_pb(s: ShareStatus) -> pb::ShareStatus {
    match s {
        ShareStatus::Accepted => pb::ShareStatus::Accepted,
        ShareStatus::Block => pb::ShareStatus::Block,
        ShareStatus::Stale => pb::ShareStatus::Stale,
        ShareStatus::LowDifficulty => pb::ShareStatus::LowDifficulty,
        ShareStatus::TimeTooOld => pb::ShareStatus::TimeTooOld,
        ShareStatus::TimeTooNew => pb::ShareStatus::TimeTooNew,
        ShareStatus::BadVersionBits => pb::ShareStatus::BadVersionBits,
        ShareStatus::Invalid => pb::ShareStatus::Invalid,
    }
}

fn status_from_pb(v: i32) -> Result<ShareStatus, ProtoError> {
    let bad = || ProtoError::Value {
        field: "status",
        value: v.to_string(),
    };
    Ok(match pb::ShareStatus::try_from(v).map_err(|_| bad())? {
        pb::ShareStatus::Unspecified => return Err(bad()),
        pb::ShareStatus::Accepted => ShareStatus::Accepted,
        pb::ShareStatus::Block => ShareStatus::Block,
        pb::ShareStatus::Stale => ShareStatus::Stale,
        pb::ShareStatus::LowDifficulty => ShareStatus::LowDifficulty,
        pb::ShareStatus::TimeTooOld => ShareStatus::TimeTooOld,
        pb::ShareStatus::TimeTooNew => ShareStatus::TimeTooNew,
        pb::ShareStatus::BadVersionBits => ShareStatus::BadVersionBits,
        pb::ShareStatus::Invalid => ShareStatus::Invalid,
    })
}

impl From<&ShareRecord> for pb::Share {
    fn from(s: &ShareRecord) -> Self {
        pb::Share {
            job_id: s.job_id.0,
            user_id: s.user_id,
            worker_id: s.worker_id,
            worker_name: s.worker_name.clone(),
            server_id: u32::from(s.server_id),
            extranonce1: s.extranonce1,
            extranonce2: s.extranonce2.clone(),
            ntime: s.ntime,
            nonce: s.nonce,
            version_bits: s.version_bits,
            share_difficulty: s.share_difficulty,
            network_bits: s.network_bits.to_consensus(),
            height: s.height,
            status: status_to_pb(s.status) as i32,
            hash: s.hash.to_byte_array().to_vec(),
            client_ip: ip_to_bytes(s.client_ip),
            timestamp_ms: s.timestamp_ms,
            protocol: match s.protocol {
                MiningProtocol::StratumV1 => pb::MiningProtocol::StratumV1,
                MiningProtocol::StratumV2 => pb::MiningProtocol::StratumV2,
            } as i32,
            solo: s.solo,
        }
    }
}

impl TryFrom<pb::Share> for ShareRecord {
    type Error = ProtoError;

    fn try_from(m: pb::Share) -> Result<Self, ProtoError> {
        if !(m.share_difficulty.is_finite() && m.share_difficulty > 0.0) {
            return Err(ProtoError::Value {
                field: "share_difficulty",
                value: m.share_difficulty.to_string(),
            });
        }
        Ok(ShareRecord {
            job_id: JobId(m.job_id),
            user_id: m.user_id,
            worker_id: m.worker_id,
            worker_name: m.worker_name,
            server_id: server_id(m.server_id)?,
            extranonce1: m.extranonce1,
            extranonce2: m.extranonce2,
            ntime: m.ntime,
            nonce: m.nonce,
            version_bits: m.version_bits,
            share_difficulty: m.share_difficulty,
            network_bits: CompactTarget::from_consensus(m.network_bits),
            height: m.height,
            status: status_from_pb(m.status)?,
            hash: BlockHash::from_byte_array(hash32("hash", &m.hash)?),
            client_ip: ip_from_bytes("client_ip", &m.client_ip)?,
            timestamp_ms: m.timestamp_ms,
            protocol: match pb::MiningProtocol::try_from(m.protocol) {
                Ok(pb::MiningProtocol::StratumV1) => MiningProtocol::StratumV1,
                Ok(pb::MiningProtocol::StratumV2) => MiningProtocol::StratumV2,
                Err(_) => {
                    return Err(ProtoError::Value {
                        field: "protocol",
                        value: m.protocol.to_string(),
                    });
                }
            },
            solo: m.solo,
        })
    }
}

// ---- SolvedShare ----

impl From<&SolvedShare> for pb::SolvedShare {
    fn from(s: &SolvedShare) -> Self {
        pb::SolvedShare {
            job_id: s.job_id.0,
            template_id: s.template_id.0.to_vec(),
            height: s.height,
            header: serialize(&s.header),
            coinbase: s.coinbase.clone(),
            block_hash: s.block_hash.to_byte_array().to_vec(),
            user_id: s.user_id,
            worker_id: s.worker_id,
            worker_name: s.worker_name.clone(),
            server_id: u32::from(s.server_id),
            timestamp_ms: s.timestamp_ms,
            solo_address: s.solo_address.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::SolvedShare> for SolvedShare {
    type Error = ProtoError;

    fn try_from(m: pb::SolvedShare) -> Result<Self, ProtoError> {
        if m.header.len() != 80 {
            return Err(ProtoError::Length {
                field: "header",
                got: m.header.len(),
                expected: "80",
            });
        }
        let header: Header = deserialize(&m.header).map_err(|e| ProtoError::Value {
            field: "header",
            value: e.to_string(),
        })?;
        Ok(SolvedShare {
            job_id: JobId(m.job_id),
            template_id: TemplateId(hash32("template_id", &m.template_id)?),
            height: m.height,
            header,
            coinbase: m.coinbase,
            block_hash: BlockHash::from_byte_array(hash32("block_hash", &m.block_hash)?),
            user_id: m.user_id,
            worker_id: m.worker_id,
            worker_name: m.worker_name,
            server_id: server_id(m.server_id)?,
            timestamp_ms: m.timestamp_ms,
            solo_address: (!m.solo_address.is_empty()).then_some(m.solo_address),
        })
    }
}

// ---- Event ----

impl From<&MinerIdentity> for pb::MinerIdentity {
    fn from(m: &MinerIdentity) -> Self {
        pb::MinerIdentity {
            user_id: m.user_id,
            user_name: m.user_name.clone(),
            worker_id: m.worker_id,
            worker_name: m.worker_name.clone(),
            server_id: u32::from(m.server_id),
            extranonce1: m.extranonce1,
            client_ip: ip_to_bytes(m.client_ip),
            miner_agent: m.miner_agent.clone(),
        }
    }
}

fn miner_from_pb(m: Option<pb::MinerIdentity>) -> Result<MinerIdentity, ProtoError> {
    let m = m.ok_or(ProtoError::Missing("miner"))?;
    Ok(MinerIdentity {
        user_id: m.user_id,
        user_name: m.user_name,
        worker_id: m.worker_id,
        worker_name: m.worker_name,
        server_id: server_id(m.server_id)?,
        extranonce1: m.extranonce1,
        client_ip: ip_from_bytes("miner.client_ip", &m.client_ip)?,
        miner_agent: m.miner_agent,
    })
}

impl From<&Event> for pb::Event {
    fn from(e: &Event) -> Self {
        use pb::event::Kind;
        let kind = match &e.kind {
            EventKind::MinerConnected(m) => Kind::MinerConnected(pb::MinerConnected {
                miner: Some(m.into()),
            }),
            EventKind::MinerDisconnected(m) => Kind::MinerDisconnected(pb::MinerDisconnected {
                miner: Some(m.into()),
            }),
            EventKind::BlockFound(b) => Kind::BlockFound(pb::BlockFound {
                height: b.height,
                hash: b.hash.to_byte_array().to_vec(),
                prev_hash: b.prev_hash.to_byte_array().to_vec(),
                user_id: b.user_id,
                worker_id: b.worker_id,
                worker_name: b.worker_name.clone(),
                job_id: b.job_id.0,
                reward_sat: b.reward_sat,
                accepted: b.accepted,
                solo_address: b.solo_address.clone().unwrap_or_default(),
            }),
            EventKind::ServiceStatus(s) => Kind::ServiceStatus(pb::ServiceStatus {
                service: s.service.clone(),
                instance: s.instance.clone(),
                host: s.host.clone(),
                version: s.version.clone(),
                uptime_secs: s.uptime_secs,
                healthy: s.healthy,
                figures: s
                    .figures
                    .iter()
                    .map(|f| pb::Figure {
                        name: f.name.clone(),
                        value: f.value,
                    })
                    .collect(),
                problems: s.problems.clone(),
            }),
            EventKind::Payout(p) => Kind::Payout(pb::Payout {
                id: p.id,
                txid: p.txid.to_byte_array().to_vec(),
                state: match p.state {
                    PayoutState::Broadcast => pb::PayoutState::Broadcast,
                    PayoutState::Confirmed => pb::PayoutState::Confirmed,
                    PayoutState::Failed => pb::PayoutState::Failed,
                }
                .into(),
                total_sat: p.total_sat,
                network_fee_sat: p.network_fee_sat,
                users: p.users,
                error: p.error.clone(),
            }),
            EventKind::BlockStanding(b) => Kind::BlockStanding(pb::BlockStanding {
                height: b.height,
                hash: b.hash.to_byte_array().to_vec(),
                status: match b.status {
                    BlockStatus::Pending => pb::BlockStatus::Pending,
                    BlockStatus::Confirmed => pb::BlockStatus::Confirmed,
                    BlockStatus::Orphaned => pb::BlockStatus::Orphaned,
                }
                .into(),
                confirmations: b.confirmations,
                worker_name: b.worker_name.clone(),
                reward_sat: b.reward_sat,
            }),
        };
        pb::Event {
            timestamp_ms: e.timestamp_ms,
            kind: Some(kind),
        }
    }
}

impl TryFrom<pb::Event> for Event {
    type Error = ProtoError;

    fn try_from(m: pb::Event) -> Result<Self, ProtoError> {
        use pb::event::Kind;
        let kind = match m.kind.ok_or(ProtoError::Missing("kind"))? {
            Kind::MinerConnected(c) => EventKind::MinerConnected(miner_from_pb(c.miner)?),
            Kind::MinerDisconnected(d) => EventKind::MinerDisconnected(miner_from_pb(d.miner)?),
            Kind::BlockFound(b) => EventKind::BlockFound(BlockFound {
                height: b.height,
                hash: BlockHash::from_byte_array(hash32("block_found.hash", &b.hash)?),
                prev_hash: BlockHash::from_byte_array(hash32(
                    "block_found.prev_hash",
                    &b.prev_hash,
                )?),
                user_id: b.user_id,
                worker_id: b.worker_id,
                worker_name: b.worker_name,
                job_id: JobId(b.job_id),
                reward_sat: b.reward_sat,
                accepted: b.accepted,
                solo_address: (!b.solo_address.is_empty()).then_some(b.solo_address),
            }),
            Kind::ServiceStatus(s) => EventKind::ServiceStatus(ServiceStatus {
                service: s.service,
                instance: s.instance,
                host: s.host,
                version: s.version,
                uptime_secs: s.uptime_secs,
                healthy: s.healthy,
                figures: s
                    .figures
                    .into_iter()
                    .map(|f| Figure {
                        name: f.name,
                        value: f.value,
                    })
                    .collect(),
                problems: s.problems,
            }),
            Kind::Payout(p) => EventKind::Payout(payout_from_pb(p)?),
            Kind::BlockStanding(b) => {
                let bad = || ProtoError::Value {
                    field: "block_standing.status",
                    value: b.status.to_string(),
                };
                EventKind::BlockStanding(BlockStanding {
                    height: b.height,
                    hash: BlockHash::from_byte_array(hash32("block_standing.hash", &b.hash)?),
                    status: match pb::BlockStatus::try_from(b.status).map_err(|_| bad())? {
                        pb::BlockStatus::Unspecified => return Err(bad()),
                        pb::BlockStatus::Pending => BlockStatus::Pending,
                        pb::BlockStatus::Confirmed => BlockStatus::Confirmed,
                        pb::BlockStatus::Orphaned => BlockStatus::Orphaned,
                    },
                    confirmations: b.confirmations,
                    worker_name: b.worker_name,
                    reward_sat: b.reward_sat,
                })
            }
        };
        Ok(Event {
            timestamp_ms: m.timestamp_ms,
            kind,
        })
    }
}

fn payout_from_pb(p: pb::Payout) -> Result<PayoutNews, ProtoError> {
    let bad = || ProtoError::Value {
        field: "payout.state",
        value: p.state.to_string(),
    };
    Ok(PayoutNews {
        id: p.id,
        txid: bitcoin::Txid::from_byte_array(hash32("payout.txid", &p.txid)?),
        state: match pb::PayoutState::try_from(p.state).map_err(|_| bad())? {
            pb::PayoutState::Unspecified => return Err(bad()),
            pb::PayoutState::Broadcast => PayoutState::Broadcast,
            pb::PayoutState::Confirmed => PayoutState::Confirmed,
            pb::PayoutState::Failed => PayoutState::Failed,
        },
        total_sat: p.total_sat,
        network_fee_sat: p.network_fee_sat,
        users: p.users,
        error: p.error,
    })
}

// ---- Payload: one impl per topic message ----

macro_rules! payload {
    ($domain:ty, $pb:ty, $name:literal) => {
        impl Payload for $domain {
            fn encode_to_vec(&self) -> Vec<u8> {
                <$pb>::from(self).encode_to_vec()
            }

            fn decode_from(bytes: &[u8]) -> Result<Self, ProtoError> {
                decode::<$pb>($name, bytes)?.try_into()
            }
        }
    };
}

payload!(BlockTemplate, pb::RawGbt, "RawGbt");
payload!(Job, pb::Job, "Job");
payload!(ShareRecord, pb::Share, "Share");
payload!(SolvedShare, pb::SolvedShare, "SolvedShare");
payload!(Event, pb::Event, "Event");
