//! The proof of the books (`sluicectl payouts verify`): every credited
//! block's split and every PPS credit redone from statshttpd's share log
//! and compared with the books, to the satoshi.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_ledger::PpsTerms;
use sluice_ledger::books::{Account, Kind, POOL};
use sluice_ledger::verify::{BlockTerms, Recount};
use sluice_store::{CreditedBlock, Store};

/// What the books were redone from, and what differs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Shares read.
    pub shares: u64,
    /// Share log files read.
    pub files: usize,
    /// Blocks redone.
    pub blocks: usize,
    /// PPS credits redone.
    pub pps_credits: usize,
    /// Each difference, one line each; empty when the books agree.
    pub differences: Vec<String>,
}

/// Redoes the books in `store` from the share log files in `share_log`
/// (statshttpd's `data_dir`), valuing PPS shares with `pps`.
pub async fn verify(
    store: &Store,
    share_log: &Path,
    pps: Option<PpsTerms>,
) -> anyhow::Result<Report> {
    let blocks = store.credited_blocks().await?;
    let credits = store.pps_credit_cuts().await?;
    let mut recount = Recount::new(
        blocks.iter().map(block_terms).collect(),
        credits.iter().map(|(_, cut)| cut.clone()).collect(),
        pps,
    );
    let files = share_log_files(share_log)?;
    for file in &files {
        statshttpd::sharelog::read(file, |e| recount.add(e.partition, e.offset, &e.share))?;
    }
    if recount.shares == 0 && !(blocks.is_empty() && credits.is_empty()) {
        anyhow::bail!(
            "no shares in {}: the share log is statshttpd's data_dir",
            share_log.display()
        );
    }
    let mut differences = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        differences.extend(check_block(store, &recount, i, block).await?);
    }
    for ((reference, _), redone) in credits.iter().zip(recount.pps_credits()) {
        let booked: BTreeMap<u32, u64> = store
            .ledger_txn(Kind::PpsCredit, reference)
            .await?
            .map(|t| {
                t.entries
                    .iter()
                    .filter_map(|(a, v)| match a {
                        Account::Balance(u) => Some((*u, v.unsigned_abs())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if booked != redone {
            differences.push(format!(
                "PPS credit {reference}: books {booked:?}, shares {redone:?}"
            ));
        }
    }
    Ok(Report {
        shares: recount.shares,
        files: files.len(),
        blocks: blocks.len(),
        pps_credits: credits.len(),
        differences,
    })
}

fn block_terms(b: &CreditedBlock) -> BlockTerms {
    BlockTerms {
        reward: b.reward,
        fee_bps: b.fee_bps,
        size: b.window_size,
        last_minute: b.last_minute,
        first_minute: b.first_minute,
        cut: b.cut.clone(),
    }
}

/// What differs between block `i`'s books and its redone split.
async fn check_block(
    store: &Store,
    recount: &Recount,
    i: usize,
    b: &CreditedBlock,
) -> anyhow::Result<Vec<String>> {
    let (window, split) = recount.block_split(i)?;
    let mut wrong = Vec::new();
    let name = format!("block {} ({})", b.height, &b.hash[..16.min(b.hash.len())]);
    if window.total() != b.window_work || window.filled != b.filled {
        wrong.push(format!(
            "{name}: window work {} (filled {}) in the books, {} (filled {}) in the shares",
            b.window_work,
            b.filled,
            window.total(),
            window.filled
        ));
    }
    let redone: BTreeMap<u32, (u128, u64)> = split
        .credits
        .iter()
        .map(|(u, c)| (*u, (c.work, c.sat)))
        .collect();
    if redone != b.users {
        wrong.push(format!(
            "{name}: users' work and credits differ: books {:?}, shares {redone:?}",
            b.users
        ));
    }
    match store.ledger_txn(Kind::BlockCredit, &b.hash).await? {
        Some(t) => {
            let pool = t
                .entries
                .get(&Account::Immature(POOL))
                .copied()
                .unwrap_or(0);
            let users: i64 = t
                .entries
                .iter()
                .filter(|(a, _)| matches!(a, Account::Immature(u) if *u != POOL))
                .map(|(_, v)| v)
                .sum();
            if pool.unsigned_abs() != split.pool() || users.unsigned_abs() != split.credited() {
                wrong.push(format!(
                    "{name}: entries give users {users} and the pool {pool}; the shares {} and {}",
                    split.credited(),
                    split.pool()
                ));
            }
        }
        None => wrong.push(format!("{name}: no credit transaction in the books")),
    }
    if let Some(found) = store.found_block(&b.hash).await?
        && found.reward != b.reward
    {
        wrong.push(format!(
            "{name}: reward {} credited, {} found",
            b.reward, found.reward
        ));
    }
    Ok(wrong)
}

/// `sharelog-YYYY-MM-DD.bin` files of `dir`, oldest first.
fn share_log_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (the share log is statshttpd's data_dir)",
                dir.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sharelog-") && n.ends_with(".bin"))
        })
        .collect();
    files.sort();
    Ok(files)
}
