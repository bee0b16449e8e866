//! statshttpd's HTTP API as types. statshttpd answers with these and its
//! readers (tgbot) parse them, so a field renamed on one side is a compile
//! error on the other, not a figure that silently reads as zero. The
//! figures are computed once, here and in statshttpd: hashrate from
//! accepted difficulty is [`hashrate`], and readers show what the API
//! computed instead of working it out again.
//!
//! Every field has a default: a reader takes an answer of an older or
//! newer statshttpd, missing fields reading as their defaults.
//!
//! Every `/api/v1` answer: `/api/v1/pool`, `/api/v1/servers`,
//! `/api/v1/services`, `/api/v1/health`, `/api/v1/users/NAME` with its
//! `/workers` and `/earnings`, `/api/v1/blocks`, `/api/v1/payouts`,
//! `/api/v1/db` and the minutes (`/api/v1/minutes`, a server's, a user's, a
//! worker's). With the `mysql` feature the store reads the rows of a user's
//! earnings straight into their types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Hashes a share of difficulty 1 stands for on average.
pub const HASHES_PER_DIFFICULTY: f64 = 4_294_967_296.0;

/// Hashes per second for `accepted` difficulty over `secs` seconds.
pub fn hashrate(accepted: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        accepted * HASHES_PER_DIFFICULTY / secs
    } else {
        0.0
    }
}

/// One value per window: 5 minutes, 15 minutes, an hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Windows<T: Default> {
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    pub m5: T,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    pub m15: T,
    /// The last hour.
    #[serde(rename = "1h")]
    pub h1: T,
}

/// The windows' lengths in seconds: 5 minutes, 15 minutes, an hour.
pub const WINDOW_SECS: [u64; 3] = [300, 900, 3600];

impl<T: Default> Windows<T> {
    /// From the three values in window order.
    pub fn from_array([m5, m15, h1]: [T; 3]) -> Self {
        Windows { m5, m15, h1 }
    }
}

/// Accepted, stale and rejected difficulty in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sums {
    /// Accepted difficulty (the work).
    pub accept: f64,
    /// Difficulty of stale shares.
    pub stale: f64,
    /// Difficulty of rejected shares.
    pub reject: f64,
}

/// One entity's windows (the pool, a server, a user, a worker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Figures {
    /// Hashes per second from the accepted work.
    pub hashrate: Windows<f64>,
    /// The sums behind them.
    pub shares: Windows<Sums>,
    /// Accepted shares counted (all time since the windows were built).
    pub accept_count: u64,
    /// The best accepted share's own difficulty (its hash's) since the
    /// windows were built: what a solo miner watches for.
    pub best_share_difficulty: f64,
    /// The newest share, unix seconds; `None` before the first.
    pub last_share_time: Option<u64>,
}

impl Figures {
    /// From the three windows' sums: the hashrates computed here.
    pub fn new(sums: [Sums; 3], accept_count: u64, last_share_ms: u64) -> Self {
        let rates = std::array::from_fn(|i| hashrate(sums[i].accept, WINDOW_SECS[i] as f64));
        Figures {
            hashrate: Windows::from_array(rates),
            shares: Windows::from_array(sums),
            accept_count,
            best_share_difficulty: 0.0,
            last_share_time: (last_share_ms > 0).then_some(last_share_ms / 1000),
        }
    }
}

/// `GET /api/v1/pool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pool {
    /// The pool's windows.
    #[serde(flatten)]
    pub figures: Figures,
    /// Users with shares in the last hour.
    pub users: u64,
    /// Workers with shares in the last hour.
    pub workers: u64,
    /// Blocks in found_blocks; `None` when the database did not answer.
    pub blocks_found: Option<u64>,
    /// The nodes' best height, or the height below the newest job mined.
    pub network_height: u64,
    /// The round under way; `None` before any share.
    pub round: Option<Round>,
}

/// The round under way: accepted difficulty since the last block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Round {
    /// Accepted difficulty since it began.
    pub work: f64,
    /// The newest share's network difficulty.
    pub network_difficulty: f64,
    /// `work / network_difficulty` (0 without a difficulty).
    pub effort: f64,
    /// When it began, unix seconds.
    pub since: u64,
    /// It began at a block (not at the first share counted).
    pub whole: bool,
}

/// `GET /api/v1/servers`: every sserver heard in the last day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Servers {
    /// One per sserver instance.
    pub servers: Vec<Server>,
}

/// One sserver: its heartbeat's figures and its shares' windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    /// Its instance name.
    pub instance: String,
    /// Its host.
    pub host: String,
    /// Its version.
    pub version: String,
    /// Its extranonce1 prefix, from its heartbeat.
    pub server_id: Option<u8>,
    /// Heard from in the last 30 s.
    pub up: bool,
    /// Its last heartbeat said healthy.
    pub healthy: bool,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Its last heartbeat, unix seconds.
    pub last_heartbeat: u64,
    /// Connections it holds.
    pub connections: Option<f64>,
    /// Shares it answers a second.
    pub shares_per_sec: Option<f64>,
    /// Hashrate it measures itself.
    pub hashrate: Option<f64>,
    /// Seconds since it had a new job.
    pub last_job_age_secs: Option<f64>,
    /// Its shares' windows, as statshttpd counted them.
    pub from_shares: Option<Figures>,
}

/// `GET /api/v1/services`: every service instance heard in the last day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Services {
    /// One per instance.
    pub services: Vec<Service>,
}

/// One service instance, from its heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// gbtmaker, jobmaker, sserver, …
    pub service: String,
    /// Its instance name.
    pub instance: String,
    /// Its host.
    pub host: String,
    /// Its version.
    pub version: String,
    /// Heard from in the last 30 s.
    pub up: bool,
    /// Its last heartbeat said healthy.
    pub healthy: bool,
    /// What its last heartbeat said is wrong.
    pub problems: Vec<String>,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Its last heartbeat, unix seconds.
    pub last_heartbeat: u64,
    /// Its own figures, by name.
    pub figures: BTreeMap<String, f64>,
}

/// `GET /api/v1/health` (503 when not `ok`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// Every component is.
    pub ok: bool,
    /// By name.
    pub components: BTreeMap<String, Component>,
    /// Share topic partitions read.
    pub share_partitions: usize,
    /// Shares on the topic not read yet.
    pub consumer_lag: i64,
}

/// One component of a service's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Component {
    /// Working.
    pub ok: bool,
    /// What it says.
    pub detail: String,
}

/// `GET /api/v1/users/NAME`: a user's windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Its windows.
    #[serde(flatten)]
    pub figures: Figures,
    /// The user's id.
    pub user_id: u32,
    /// The user's name.
    pub name: String,
    /// Workers with shares in the last hour.
    pub workers: u32,
    /// A solo miner: its name is the address its blocks pay.
    pub solo: bool,
}

/// `GET /api/v1/users/NAME/workers`: the user's workers, those with shares
/// in the last hour and those offline up to 30 days (with their last share).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserWorkers {
    /// The user's id.
    pub user_id: u32,
    /// The user's name.
    pub name: String,
    /// Each worker.
    pub workers: Vec<Worker>,
}

/// One worker of a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Worker {
    /// Its windows (zeros for an offline one, with its last share).
    #[serde(flatten)]
    pub figures: Figures,
    /// Its id (a hash of its name).
    pub worker_id: i64,
    /// Its name.
    pub name: String,
    /// Where its newest share came from ("" before any).
    pub last_share_ip: String,
}

impl Worker {
    /// No share for more than `offline_secs` at `now_secs` (or none at all).
    pub fn is_offline(&self, now_secs: u64, offline_secs: u64) -> bool {
        let last = self.figures.last_share_time.unwrap_or(0);
        now_secs.saturating_sub(last) > offline_secs
    }
}

/// `GET /api/v1/blocks`: the newest found blocks first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blocks {
    /// One per found block.
    pub blocks: Vec<Block>,
}

/// A found block as blkmaker records it (a row of `found_blocks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FoundBlock {
    /// Height.
    pub height: u32,
    /// Hash, as RPC shows it.
    pub hash: String,
    /// Parent's hash.
    pub prev_hash: String,
    /// Finder's user id.
    pub user_id: u32,
    /// Finder's worker id.
    pub worker_id: i64,
    /// Finder's worker name.
    pub worker_name: String,
    /// The job it answered.
    pub job_id: u64,
    /// Its coinbase's outputs, satoshis.
    pub reward: u64,
    /// Its transactions' fees, satoshis.
    pub fees: u64,
    /// Serialized size, bytes.
    pub size: u32,
    /// Transactions, coinbase included.
    pub tx_count: u32,
    /// Each node's answer to submitblock (`accepted`, `duplicate`, or
    /// Core's reason), by node name.
    pub submit_results: BTreeMap<String, String>,
    /// It left the best chain.
    pub is_orphaned: bool,
    /// A solo miner's block: the address its coinbase pays (the reward
    /// less the pool's solo fee); `None` for the pool's own blocks.
    pub solo_address: Option<String>,
}

/// A found block as listed: its row, where it stands, the work behind it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Block {
    /// The row blkmaker recorded (its fields at the top level).
    #[serde(flatten)]
    pub found: FoundBlock,
    /// When it was recorded, unix seconds.
    pub found_at: u64,
    /// `pending`, `confirmed` or `orphaned`.
    pub status: String,
    /// Confirmations at the last check.
    pub confirmations: u32,
    /// Accepted difficulty of the round it ended, if known.
    pub work: Option<f64>,
    /// The network difficulty then.
    pub network_difficulty: Option<f64>,
    /// `work / network_difficulty`.
    pub effort: Option<f64>,
    /// The round began at a block (false: at statshttpd's oldest share, so
    /// the effort is at least this).
    pub effort_whole: Option<bool>,
}

/// `GET /api/v1/payouts`: the pool's side of the books, satoshis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolBooks {
    /// Owed to users: payable.
    pub owed: i64,
    /// Owed to users once their blocks mature.
    pub immature: i64,
    /// In payouts not yet confirmed (network fees included).
    pub in_flight: i64,
    /// Paid (network fees included).
    pub paid: i64,
    /// The pool's own payable balance (fees, less network fees).
    pub pool: i64,
    /// The newest batches.
    pub payouts: Vec<Payout>,
}

/// One payout batch: one transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Payout {
    /// Its id.
    pub id: u64,
    /// `signed`, `broadcast`, `confirmed` or `failed`.
    pub state: String,
    /// Its transaction's id.
    pub txid: String,
    /// Satoshis paid to users.
    pub total: u64,
    /// The network fee (the pool's).
    pub network_fee: u64,
    /// Users paid.
    pub users: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it was written, `YYYY-MM-DD HH:MM:SS` UTC.
    pub created_at: String,
}

/// `GET /api/v1/users/NAME/earnings`: what the books say of one user,
/// enough to redo their own split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Earnings {
    /// The user's id.
    pub user_id: u32,
    /// Their name.
    pub name: String,
    /// Where they are paid, if set.
    pub address: Option<String>,
    /// Their own threshold, satoshis, if set (the payer's otherwise).
    pub min_payout: Option<u64>,
    /// Their balances.
    pub balances: Balances,
    /// The newest blocks they have a part of.
    pub blocks: Vec<EarnedBlock>,
    /// The newest payouts to them.
    pub payouts: Vec<UserPayout>,
    /// The newest entries of their accounts.
    pub entries: Vec<UserEntry>,
}

/// A user's balances, satoshis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Balances {
    /// Credited from blocks not yet mature.
    pub immature: i64,
    /// Payable now.
    pub payable: i64,
    /// In payouts not yet confirmed.
    pub in_flight: u64,
    /// Paid in confirmed payouts.
    pub paid: u64,
}

/// A credited block, as one user earned from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(mysql_async::prelude::FromRow))]
#[serde(default)]
pub struct EarnedBlock {
    /// Block hash, hex.
    pub hash: String,
    /// Height.
    pub height: u32,
    /// `immature`, `mature` or `orphaned` in the books.
    pub state: String,
    /// `pplns`, `pps` or `fpps`.
    pub scheme: String,
    /// The reward split, satoshis.
    pub reward: u64,
    /// The pool's fee, basis points.
    pub fee_bps: u32,
    /// The window's oldest unix minute.
    pub first_minute: u32,
    /// Its newest.
    pub last_minute: u32,
    /// Its size, hashes (decimal text).
    pub window_size: String,
    /// The work counted in it, hashes (decimal text).
    pub window_work: String,
    /// Whether it reached its size.
    pub filled: bool,
    /// The user's work in it, hashes (decimal text).
    pub work: String,
    /// The user's credit, satoshis.
    pub credit: u64,
    /// When it was credited, `YYYY-MM-DD HH:MM:SS` UTC.
    pub credited_at: String,
}

/// A payout to one user: their part of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(mysql_async::prelude::FromRow))]
#[serde(default)]
pub struct UserPayout {
    /// The batch.
    pub id: u64,
    /// Its transaction.
    pub txid: String,
    /// `signed`, `broadcast`, `confirmed` or `failed`.
    pub state: String,
    /// Satoshis to this user.
    pub amount: u64,
    /// Where.
    pub address: String,
    /// When it was written, `YYYY-MM-DD HH:MM:SS` UTC.
    pub created_at: String,
}

/// One entry of a user's accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(mysql_async::prelude::FromRow))]
#[serde(default)]
pub struct UserEntry {
    /// The transaction's kind (`block_credit`, `payout`…).
    pub kind: String,
    /// Its reference (block hash, payout id, credit time).
    pub reference: String,
    /// 3 immature, 4 balance (the ledger's account codes).
    pub account: u8,
    /// Satoshis, signed.
    pub amount: i64,
    /// When, `YYYY-MM-DD HH:MM:SS` UTC.
    pub at: String,
}

/// `GET /api/v1/db` (503 when MariaDB does not answer): MariaDB as the
/// operator asks after it, and statshttpd's flushes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Db {
    /// Where statshttpd reaches it (no credentials).
    pub address: String,
    /// The last flush, unix seconds.
    pub last_flush: u64,
    /// How long it took, ms.
    pub last_flush_ms: i64,
    /// Flushes that failed.
    pub flush_failures: u64,
    /// Shares on the topic not read yet.
    pub shares_behind: i64,
    /// Rows waiting to be written.
    pub rows_waiting: usize,
    /// It answered.
    pub reachable: bool,
    /// What it said, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<DbServer>,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// MariaDB's own figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DbServer {
    /// `SELECT VERSION()`.
    pub version: String,
    /// Its uptime, seconds.
    pub uptime_secs: u64,
    /// The newest migration applied.
    pub schema_version: u32,
    /// Migrations the code has that the database has not.
    pub pending_migrations: Vec<u32>,
    /// The pool's tables, largest first.
    pub tables: Vec<Table>,
}

/// One table's size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// InnoDB's estimate of its rows.
    pub rows: u64,
    /// Data and indexes.
    pub bytes: u64,
}

/// `GET /api/v1/minutes` (and a server's, a user's, a worker's): one
/// column per figure, a value per minute from `start`, oldest first; the
/// newest minute is the current one, partial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Minutes {
    /// The first minute, unix seconds.
    pub start: u64,
    /// Seconds per value (60).
    pub step: u64,
    /// Shares answered.
    pub shares: Vec<u64>,
    /// Accepted difficulty.
    pub accept: Vec<f64>,
    /// Stale and rejected shares.
    pub rejects: Vec<u64>,
    /// Hashes per second of each minute's accepted work.
    pub hashrate: Vec<f64>,
    /// Over all the minutes given: their work over their time.
    pub hashrate_mean: f64,
}

impl Minutes {
    /// From each minute's (shares, accepted difficulty, rejects), oldest
    /// first: the hashrates computed here.
    pub fn new(start: u64, minutes: impl IntoIterator<Item = (u64, f64, u64)>) -> Self {
        let mut m = Minutes {
            start,
            step: 60,
            ..Minutes::default()
        };
        for (shares, accept, rejects) in minutes {
            m.shares.push(shares);
            m.accept.push(accept);
            m.rejects.push(rejects);
            m.hashrate.push(hashrate(accept, 60.0));
        }
        m.hashrate_mean = hashrate(m.accept.iter().sum(), 60.0 * m.accept.len() as f64);
        m
    }
}

/// The sum of the newest `n` values of a column after skipping the newest
/// `skip` (the current, partial minute).
pub fn newest(column: &[f64], n: usize, skip: usize) -> f64 {
    column.iter().rev().skip(skip).take(n).sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn minutes_carry_each_minute_s_hashrate_and_their_mean() {
        let m = Minutes::new(600, [(1, 60.0, 0), (2, 120.0, 1), (0, 0.0, 0)]);
        assert_eq!(m.hashrate[0], HASHES_PER_DIFFICULTY);
        assert_eq!(m.hashrate_mean, hashrate(180.0, 180.0));
        assert_eq!(newest(&m.accept, 2, 1), 180.0);
        assert_eq!(newest(&m.accept, 5, 0), 180.0);
        assert_eq!(Minutes::new(0, []).hashrate_mean, 0.0);
    }

    use super::*;

    #[test]
    fn hashrate_is_accepted_difficulty_times_2_32_over_the_window() {
        assert_eq!(hashrate(300.0, 300.0), HASHES_PER_DIFFICULTY);
        assert_eq!(hashrate(1.0, 0.0), 0.0);
        let f = Figures::new(
            [
                Sums {
                    accept: 300.0,
                    stale: 1.0,
                    reject: 0.0,
                },
                Sums {
                    accept: 900.0,
                    stale: 1.0,
                    reject: 0.0,
                },
                Sums {
                    accept: 7200.0,
                    stale: 1.0,
                    reject: 2.0,
                },
            ],
            10,
            1_700_000_000_500,
        );
        assert_eq!(f.hashrate.m5, HASHES_PER_DIFFICULTY);
        assert_eq!(f.hashrate.h1, 2.0 * HASHES_PER_DIFFICULTY);
        assert_eq!(f.last_share_time, Some(1_700_000_000));
        assert_eq!(
            Figures::new([Sums::default(); 3], 0, 0).last_share_time,
            None
        );
    }

    #[test]
    fn the_pool_reads_back_as_it_is_written_with_the_window_names() {
        let pool = Pool {
            figures: Figures::new(
                [Sums {
                    accept: 3.0,
                    stale: 0.0,
                    reject: 0.0,
                }; 3],
                3,
                0,
            ),
            users: 2,
            workers: 5,
            blocks_found: Some(7),
            network_height: 100,
            round: None,
        };
        let v = serde_json::to_value(&pool).unwrap();
        assert_eq!(v["hashrate"]["5m"], serde_json::json!(hashrate(3.0, 300.0)));
        assert_eq!(v["shares"]["1h"]["accept"], serde_json::json!(3.0));
        assert_eq!(v["last_share_time"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Pool>(v).unwrap(), pool);
    }
}
