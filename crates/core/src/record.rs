//! What sserver records about shares and miners: the Share, SolvedShare and
//! Event messages, as domain types.

use std::net::IpAddr;

use bitcoin::BlockHash;
use bitcoin::CompactTarget;
use bitcoin::block::Header;

use crate::job_id::JobId;
use crate::template::TemplateId;

/// How a share was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareStatus {
    /// Met the share target.
    Accepted,
    /// Met the network target: a block candidate (also an accepted share).
    Block,
    /// For a job replaced by a clean job.
    Stale,
    /// Above the share target.
    LowDifficulty,
    /// ntime before the job's mintime.
    TimeTooOld,
    /// ntime too far in the future.
    TimeTooNew,
    /// Version bits outside the negotiated mask.
    BadVersionBits,
    /// Malformed parameters (e.g. extranonce2 size).
    Invalid,
}

impl ShareStatus {
    /// Whether the share counts toward the miner's accepted work.
    pub fn is_accepted(self) -> bool {
        matches!(self, ShareStatus::Accepted | ShareStatus::Block)
    }
}

/// One checked share: enough to re-verify it offline.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRecord {
    /// The job it answered.
    pub job_id: JobId,
    /// Account id (`users.id`).
    pub user_id: u32,
    /// Worker id ([`crate::worker::worker_id`]).
    pub worker_id: i64,
    /// Worker name as sanitised.
    pub worker_name: String,
    /// sserver id (extranonce1's top byte).
    pub server_id: u8,
    /// The session's extranonce1.
    pub extranonce1: u32,
    /// The miner's extranonce2.
    pub extranonce2: Vec<u8>,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// BIP310 version bits submitted (0 if none).
    pub version_bits: u32,
    /// Difficulty the share was checked against.
    pub share_difficulty: f64,
    /// Network target of the job.
    pub network_bits: CompactTarget,
    /// Block height of the job.
    pub height: u32,
    /// Verdict.
    pub status: ShareStatus,
    /// Header hash (all zeros if no header could be built).
    pub hash: BlockHash,
    /// The miner's address.
    pub client_ip: IpAddr,
    /// Server time at submission, unix milliseconds.
    pub timestamp_ms: u64,
    /// How the miner spoke to the pool.
    pub protocol: MiningProtocol,
    /// A solo miner's share: its blocks pay its own address, so its work
    /// earns nothing from the pool's blocks (no PPLNS, no PPS).
    pub solo: bool,
}

/// The protocol a share came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MiningProtocol {
    /// Stratum V1 (JSON lines), plain or over TLS.
    #[default]
    StratumV1,
    /// Stratum V2 (binary, Noise-encrypted).
    StratumV2,
}

impl MiningProtocol {
    /// Its name in logs, tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            MiningProtocol::StratumV1 => "stratum_v1",
            MiningProtocol::StratumV2 => "stratum_v2",
        }
    }
}

/// A share that met the network target: everything blkmaker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvedShare {
    /// The job it answered.
    pub job_id: JobId,
    /// The template behind the job.
    pub template_id: TemplateId,
    /// Block height.
    pub height: u32,
    /// The full 80-byte header.
    pub header: Header,
    /// The legacy coinbase bytes the miner hashed.
    pub coinbase: Vec<u8>,
    /// The header's hash.
    pub block_hash: BlockHash,
    /// Finder's account.
    pub user_id: u32,
    /// Finder's worker id.
    pub worker_id: i64,
    /// Finder's worker name.
    pub worker_name: String,
    /// sserver that checked it.
    pub server_id: u8,
    /// Server time at submission, unix milliseconds.
    pub timestamp_ms: u64,
    /// The address a solo miner's block pays (its coinbase's first output);
    /// `None` for the pool's own blocks.
    pub solo_address: Option<String>,
}

/// Who a miner is on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerIdentity {
    /// Account id.
    pub user_id: u32,
    /// Account name.
    pub user_name: String,
    /// Worker id.
    pub worker_id: i64,
    /// Worker name.
    pub worker_name: String,
    /// sserver id.
    pub server_id: u8,
    /// The session's extranonce1.
    pub extranonce1: u32,
    /// The miner's address.
    pub client_ip: IpAddr,
    /// The miner's software, from `mining.subscribe`.
    pub miner_agent: String,
}

/// A block submitted by blkmaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFound {
    /// Height.
    pub height: u32,
    /// Hash.
    pub hash: BlockHash,
    /// Parent.
    pub prev_hash: BlockHash,
    /// Finder's account.
    pub user_id: u32,
    /// Finder's worker id.
    pub worker_id: i64,
    /// Finder's worker name.
    pub worker_name: String,
    /// The job it answered.
    pub job_id: JobId,
    /// Total coinbase output, satoshis.
    pub reward_sat: u64,
    /// Whether at least one node accepted it.
    pub accepted: bool,
    /// A solo miner's block: the address its coinbase pays.
    pub solo_address: Option<String>,
}

/// Where a found block stands at the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// On the best chain, not yet mature.
    Pending,
    /// Mature: buried under enough blocks that its reward is spendable.
    Confirmed,
    /// On no node's best chain.
    Orphaned,
}

impl BlockStatus {
    /// Its name in `found_blocks.status` and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockStatus::Pending => "pending",
            BlockStatus::Confirmed => "confirmed",
            BlockStatus::Orphaned => "orphaned",
        }
    }

    /// From its name; anything unknown is pending (looked at again).
    pub fn parse(name: &str) -> Self {
        match name {
            "confirmed" => BlockStatus::Confirmed,
            "orphaned" => BlockStatus::Orphaned,
            _ => BlockStatus::Pending,
        }
    }
}

/// A found block's standing changed (blkmaker's confirmation watch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStanding {
    /// Height.
    pub height: u32,
    /// Hash.
    pub hash: BlockHash,
    /// Where it stands now.
    pub status: BlockStatus,
    /// Confirmations the best node gives it.
    pub confirmations: u32,
    /// Finder's worker name.
    pub worker_name: String,
    /// Total coinbase output, satoshis.
    pub reward_sat: u64,
}

/// Where a payout batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutState {
    /// Sent to the node.
    Broadcast,
    /// Confirmed as deep as the payer waits for.
    Confirmed,
    /// Can never confirm: its users' balances are back.
    Failed,
}

/// A payout batch's news (the payer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutNews {
    /// The batch.
    pub id: u64,
    /// Its transaction.
    pub txid: bitcoin::Txid,
    /// Where it stands now.
    pub state: PayoutState,
    /// Satoshis to users.
    pub total_sat: u64,
    /// The network fee, satoshis.
    pub network_fee_sat: u64,
    /// Users paid.
    pub users: u32,
    /// Why it failed (empty otherwise).
    pub error: String,
}

/// One named figure in a heartbeat (connections, shares/s, lag...).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Low-cardinality name, e.g. `connections`.
    pub name: String,
    /// Its value.
    pub value: f64,
}

impl Figure {
    /// `name` = `value`.
    pub fn new(name: &str, value: f64) -> Self {
        Figure {
            name: name.into(),
            value,
        }
    }
}

/// A service's periodic heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// Service name (`sserver`, ...).
    pub service: String,
    /// Instance name, unique within the service.
    pub instance: String,
    /// Host name.
    pub host: String,
    /// Software version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Whether the service considers itself healthy.
    pub healthy: bool,
    /// Key figures.
    pub figures: Vec<Figure>,
    /// `component: detail` of each `/health` component not ok (why it is
    /// unhealthy).
    pub problems: Vec<String>,
}

/// Something that happened, for statistics and operators.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A miner authorized.
    MinerConnected(MinerIdentity),
    /// An authorized miner went away.
    MinerDisconnected(MinerIdentity),
    /// A block was submitted.
    BlockFound(BlockFound),
    /// A heartbeat.
    ServiceStatus(ServiceStatus),
    /// A found block became confirmed or orphaned (or came back).
    BlockStanding(BlockStanding),
    /// A payout batch was broadcast, confirmed or taken back.
    Payout(PayoutNews),
}

/// An event with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix milliseconds.
    pub timestamp_ms: u64,
    /// What happened.
    pub kind: EventKind,
}
