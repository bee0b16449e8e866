//! What the `sharelog` tool does with a day's file: rebuild that day's
//! `stats_*` rows, print its shares, or re-verify them against the Job topic.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use bitcoin::hex::DisplayHex;
use sluice_bus::{TailConsumer, Topic};
use sluice_core::record::ShareRecord;
use sluice_core::{Difficulty, Job, JobId, Submission};
use sluice_store::Store;

use crate::Config;
use crate::clock::day_of;
use crate::sharelog::{self, Entry};
use crate::tally::Tally;

/// What a replay wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Shares counted.
    pub shares: u64,
    /// Rows written to the `stats_*` tables.
    pub rows: usize,
}

/// Recounts day YYYYMMDD from its share log and writes every hourly and
/// daily row of that day (absolute values: the same rows as the live
/// service wrote, bit for bit, since shares are counted in the same order).
pub async fn replay(config: &Config, day: u32) -> anyhow::Result<Replayed> {
    let mut tally = Tally::new(config.bitcoin_network());
    let mut shares = 0;
    let path = sharelog::path_of(&config.data_dir, day);
    if !path.exists() {
        anyhow::bail!("no share log for {day}: {} does not exist", path.display());
    }
    sharelog::read(&path, |e| {
        if day_of(e.share.timestamp_ms) == day {
            tally.apply(&e.share);
            shares += 1;
        }
    })?;
    let rows = tally.all();
    let store = Store::new(&config.mysql.url)?;
    let written = crate::flush::write_totals(&store, &rows).await;
    store.close().await;
    written?;
    Ok(Replayed {
        shares,
        rows: rows.len(),
    })
}

/// Prints day YYYYMMDD's shares as JSON lines (only `user`'s if given).
pub fn dump(
    config: &Config,
    day: u32,
    user: Option<u32>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut n = 0;
    let mut failed = None;
    sharelog::read(&sharelog::path_of(&config.data_dir, day), |e| {
        if failed.is_some() || user.is_some_and(|u| u != e.share.user_id) {
            return;
        }
        let line = serde_json::to_string(&share_json(&e)).unwrap_or_default();
        if let Err(err) = writeln!(out, "{line}") {
            failed = Some(err);
        }
        n += 1;
    })?;
    if let Some(err) = failed {
        return Err(err.into());
    }
    Ok(n)
}

fn share_json(e: &Entry) -> serde_json::Value {
    let s = &e.share;
    serde_json::json!({
        "partition": e.partition, "offset": e.offset,
        "job_id": s.job_id.0, "user_id": s.user_id, "worker_id": s.worker_id,
        "worker_name": s.worker_name, "server_id": s.server_id,
        "extranonce1": format!("{:08x}", s.extranonce1),
        "extranonce2": s.extranonce2.to_lower_hex_string(), "ntime": s.ntime,
        "nonce": format!("{:08x}", s.nonce), "version_bits": format!("{:08x}", s.version_bits),
        "share_difficulty": s.share_difficulty,
        "network_bits": format!("{:08x}", s.network_bits.to_consensus()),
        "height": s.height, "status": format!("{:?}", s.status),
        "hash": s.hash.to_string(), "client_ip": s.client_ip.to_string(),
        "timestamp_ms": s.timestamp_ms,
    })
}

/// What an offline check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Shares in the file.
    pub shares: u64,
    /// Header rebuilt from the job, hash equal to the share's, and an
    /// accepted share's hash meets its difficulty.
    pub ok: u64,
    /// Shares whose job the topic no longer holds.
    pub job_unknown: u64,
    /// Shares that do not check out: (offset, why), the first 100.
    pub bad: Vec<(i64, String)>,
    /// How many did not check out.
    pub bad_count: u64,
}

/// Rebuilds every share's header of day YYYYMMDD from its job (read from
/// the Job topic) and checks its hash. `version_mask` is the sserver's
/// `version_mask` (the negotiated mask is at most that).
pub async fn verify(config: &Config, day: u32, version_mask: u32) -> anyhow::Result<Verified> {
    let owner = sluice_bus::TopicOwner::of(&config.kafka, &config.kafka.topics.share).await?;
    sharelog::check_owner(&sharelog::path_of(&config.data_dir, day), &owner)?;
    let jobs = read_jobs(config).await?;
    let mut v = Verified::default();
    sharelog::read(&sharelog::path_of(&config.data_dir, day), |e| {
        v.shares += 1;
        let Some(job) = jobs.get(&e.share.job_id) else {
            v.job_unknown += 1;
            return;
        };
        match check(job, &e.share, version_mask) {
            Ok(()) => v.ok += 1,
            Err(why) => {
                v.bad_count += 1;
                if v.bad.len() < 100 {
                    v.bad.push((e.offset, why));
                }
            }
        }
    })?;
    Ok(v)
}

fn check(job: &Job, s: &ShareRecord, version_mask: u32) -> Result<(), String> {
    let work = job.work(s.extranonce2.len());
    let extranonce1 = s.extranonce1.to_be_bytes();
    let sub = Submission {
        extranonce1: &extranonce1,
        extranonce2: &s.extranonce2,
        ntime: s.ntime,
        nonce: s.nonce,
        version_bits: (s.version_bits != 0).then_some(s.version_bits),
    };
    let header = work.header(&sub, version_mask).map_err(|e| e.to_string())?;
    let hash = header.block_hash();
    if hash != s.hash {
        return Err(format!(
            "header hashes to {hash}, the share says {}",
            s.hash
        ));
    }
    if s.status.is_accepted() {
        let target = Difficulty::new(s.share_difficulty)
            .map_err(|e| e.to_string())?
            .to_target();
        if !target.is_met_by(hash) {
            return Err(format!(
                "accepted, but {hash} is above difficulty {}",
                s.share_difficulty
            ));
        }
    }
    Ok(())
}

/// Every job the Job topic still holds.
async fn read_jobs(config: &Config) -> anyhow::Result<HashMap<JobId, Job>> {
    let topic = Topic::<Job>::new(config.kafka.topics.job.clone());
    let marks = sluice_bus::fetch_watermarks(&config.kafka, topic.name()).await?;
    let total: i64 = marks.iter().map(|(_, low, high)| high - low).sum();
    let mut jobs = HashMap::new();
    if total == 0 {
        return Ok(jobs);
    }
    let consumer = TailConsumer::new(&config.kafka, &topic, total).await?;
    let mut left: HashMap<i32, i64> = marks
        .iter()
        .filter(|m| m.2 > m.1)
        .map(|m| (m.0, m.2))
        .collect();
    while !left.is_empty() {
        let r = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .map_err(|_| anyhow::anyhow!("the Job topic stopped answering"))??;
        if left
            .get(&r.partition)
            .is_some_and(|&high| r.offset + 1 >= high)
        {
            left.remove(&r.partition);
        }
        jobs.insert(r.value.id, r.value);
    }
    Ok(jobs)
}
