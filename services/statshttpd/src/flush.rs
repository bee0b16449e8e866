//! Writing to MySQL: `mining_workers` and the `stats_*` tables.
//!
//! Rows are written in batches of multi-row `INSERT … ON DUPLICATE KEY
//! UPDATE` with absolute values, so a failed flush is simply done again at
//! the next interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use mysql_async::Value;
use mysql_async::prelude::Queryable;
use sluice_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::clock::day_of;
use crate::live::WorkerRow;
use crate::tally::{Key, Table, Totals};
use crate::window::WINDOWS;
use crate::{Stats, lock};

/// (user id, worker id).
pub(crate) type WorkerKey = (u32, i64);
/// (worker name, miner agent) from a miner connect.
pub(crate) type NameAndAgent = (String, String);

/// Rows per statement: MySQL allows 65,535 placeholders.
const BATCH: usize = 2_000;
/// Statements of one flush in flight at once (each on its own connection).
const PARALLEL: usize = 4;

/// Flushes every `flush_interval_secs` once initialized, and once more at
/// shutdown.
pub(crate) async fn every_interval(stats: Arc<Stats>, token: CancellationToken) {
    let period = Duration::from_secs(stats.config.flush_interval_secs);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {}
        }
        if stats.is_initialized() {
            flush_logged(&stats).await;
        }
    }
    if stats.is_initialized() {
        let grace = stats
            .config
            .service
            .shutdown_grace()
            .saturating_sub(Duration::from_secs(1));
        if tokio::time::timeout(grace, flush_logged(&stats))
            .await
            .is_err()
        {
            tracing::warn!(
                "the last flush did not finish within the grace period; the share log has it all"
            );
        }
    }
}

async fn flush_logged(stats: &Stats) {
    let started = Instant::now();
    match flush(stats).await {
        Ok(rows) => {
            stats
                .health
                .set("mysql", true, format!("flushed {rows} rows"));
            stats.metrics.flushes.inc();
            stats
                .metrics
                .flush_ms
                .set(started.elapsed().as_millis() as i64);
            tracing::debug!(rows, took = ?started.elapsed(), "flushed");
        }
        Err(error) => {
            stats.metrics.flush_failures.inc();
            stats.health.set("mysql", false, error.to_string());
            tracing::warn!(%error, "flush to MySQL failed; retried at the next interval");
        }
    }
}

/// One flush; returns the rows written.
pub(crate) async fn flush(stats: &Stats) -> Result<usize, StoreError> {
    let now = stats.clock.now_ms();
    let rows = {
        let mut live = lock(&stats.live);
        let gone = live.evict(now);
        lock(&stats.gone).extend(gone);
        let (users, workers) = live.counts();
        stats.metrics.users.set(users as i64);
        stats.metrics.workers.set(workers as i64);
        live.rows(now)
    };
    lock(&stats.minutes).evict(now);
    let mut written = write_block_work(stats).await?;
    let agents: Vec<_> = std::mem::take(&mut *lock(&stats.agents))
        .into_iter()
        .collect();
    if let Err(e) = write_agents(&stats.store, &agents).await {
        let mut pending = lock(&stats.agents);
        for (k, v) in agents {
            pending.entry(k).or_insert(v);
        }
        return Err(e);
    }
    written += agents.len();
    // Forgotten workers first: one that came back since is in `rows` and
    // must end with its live figures.
    let gone = lock(&stats.gone).clone();
    zero_workers(&stats.store, &gone).await?;
    lock(&stats.gone).drain(..gone.len());
    written += gone.len();
    write_workers(&stats.store, &rows).await?;
    written += rows.len();
    let changed = lock(&stats.tally).changed();
    write_totals(&stats.store, &changed).await?;
    {
        let mut tally = lock(&stats.tally);
        tally.written(&changed);
        tally.forget_before(day_of(now.saturating_sub(86_400_000)));
    }
    written += changed.len();
    stats.flushed_at.store(now / 1000, Ordering::SeqCst);
    Ok(written)
}

/// The work behind blocks counted since the last flush; what is not
/// written stays for the next.
async fn write_block_work(stats: &Stats) -> Result<usize, StoreError> {
    let works = std::mem::take(&mut *lock(&stats.block_work));
    for (i, work) in works.iter().enumerate() {
        if let Err(e) = stats.store.record_block_work(work).await {
            lock(&stats.block_work).splice(0..0, works[i..].iter().cloned());
            return Err(e);
        }
    }
    Ok(works.len())
}

/// `head VALUES (…),(…) tail` with the values written as SQL literals
/// (strings escaped by mysql_common): one text-protocol round trip, which
/// MariaDB handles faster than the same statement prepared with thousands
/// of parameters.
fn insert_sql(head: &str, rows: &[Vec<Value>], tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows.len() * 200);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&v.as_sql(false));
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Runs independent statements on up to [`PARALLEL`] connections.
async fn exec_all(store: &Store, statements: Vec<String>) -> Result<(), StoreError> {
    futures::stream::iter(statements)
        .map(|sql| exec(store, sql))
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await
}

async fn exec(store: &Store, sql: String) -> Result<(), StoreError> {
    let run = async {
        let mut conn = store.pool().get_conn().await?;
        conn.query_drop(sql).await
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| StoreError::Timeout {
            addr: store.addr().to_owned(),
            after: Duration::from_secs(30),
        })?
        .map_err(|source| StoreError::Mysql {
            addr: store.addr().to_owned(),
            source,
        })
}

/// Live figures into `mining_workers`. The name is kept when the row has
/// one and the share carried none; `miner_agent` is the events' business.
pub(crate) async fn write_workers(store: &Store, rows: &[WorkerRow]) -> Result<(), StoreError> {
    let statements = rows
        .chunks(BATCH)
        .map(|chunk| {
            let values: Vec<Vec<Value>> = chunk
                .iter()
                .map(|r| {
                    let [m5, m15, h1] = r.figures.windows;
                    vec![
                        Value::from(r.user_id),
                        Value::from(r.worker_id),
                        Value::from(r.name.as_str()),
                        Value::from(m5.accept),
                        Value::from(m15.accept),
                        Value::from(m15.stale),
                        Value::from(m15.reject),
                        Value::from(h1.accept),
                        Value::from(h1.stale),
                        Value::from(h1.reject),
                        Value::from(m5.hashrate(WINDOWS[0])),
                        Value::from(m15.hashrate(WINDOWS[1])),
                        Value::from(h1.hashrate(WINDOWS[2])),
                        Value::from(r.figures.accept_count),
                        Value::from(r.figures.last_ip.to_string()),
                        last_share_time(r.figures.last_share_ms),
                    ]
                })
                .collect();
            insert_sql(
                "INSERT INTO mining_workers (user_id, worker_id, worker_name, accept_5m, \
                 accept_15m, stale_15m, reject_15m, accept_1h, stale_1h, reject_1h, hashrate_5m, \
                 hashrate_15m, hashrate_1h, accept_count, last_share_ip, last_share_time)",
                &values,
                "ON DUPLICATE KEY UPDATE \
                 worker_name = IF(VALUES(worker_name) = '', worker_name, VALUES(worker_name)), \
                 accept_5m = VALUES(accept_5m), accept_15m = VALUES(accept_15m), \
                 stale_15m = VALUES(stale_15m), reject_15m = VALUES(reject_15m), \
                 accept_1h = VALUES(accept_1h), stale_1h = VALUES(stale_1h), \
                 reject_1h = VALUES(reject_1h), hashrate_5m = VALUES(hashrate_5m), \
                 hashrate_15m = VALUES(hashrate_15m), hashrate_1h = VALUES(hashrate_1h), \
                 accept_count = VALUES(accept_count), last_share_ip = VALUES(last_share_ip), \
                 last_share_time = VALUES(last_share_time)",
            )
        })
        .collect();
    exec_all(store, statements).await
}

/// `FROM_UNIXTIME`-free: a DATETIME literal in UTC, or NULL.
fn last_share_time(ms: u64) -> Value {
    if ms == 0 {
        return Value::NULL;
    }
    let secs = ms / 1000;
    let day = day_of(ms);
    Value::Date(
        (day / 10_000) as u16,
        (day / 100 % 100) as u8,
        (day % 100) as u8,
        (secs / 3600 % 24) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        0,
    )
}

/// Workers (and users, worker 0) without a share for an hour: their window
/// columns go to zero; names, counts and last share stay.
async fn zero_workers(store: &Store, gone: &[(u32, i64, Box<str>)]) -> Result<(), StoreError> {
    let statements = gone
        .chunks(BATCH)
        .map(|chunk| {
            let keys: Vec<String> = chunk.iter().map(|(u, w, _)| format!("({u},{w})")).collect();
            format!(
                "UPDATE mining_workers SET accept_5m = 0, accept_15m = 0, stale_15m = 0, \
                 reject_15m = 0, accept_1h = 0, stale_1h = 0, reject_1h = 0, hashrate_5m = 0, \
                 hashrate_15m = 0, hashrate_1h = 0 WHERE (user_id, worker_id) IN ({})",
                keys.join(",")
            )
        })
        .collect();
    exec_all(store, statements).await
}

/// Names and miner agents from miner connects.
async fn write_agents(
    store: &Store,
    agents: &[(WorkerKey, NameAndAgent)],
) -> Result<(), StoreError> {
    let statements = agents
        .chunks(BATCH)
        .map(|chunk| {
            let values: Vec<Vec<Value>> = chunk
                .iter()
                .map(|((u, w), (name, agent))| {
                    vec![
                        Value::from(*u),
                        Value::from(*w),
                        Value::from(truncate(name, 64)),
                        Value::from(truncate(agent, 64)),
                    ]
                })
                .collect();
            insert_sql(
                "INSERT INTO mining_workers (user_id, worker_id, worker_name, miner_agent)",
                &values,
                "ON DUPLICATE KEY UPDATE worker_name = VALUES(worker_name), \
                 miner_agent = VALUES(miner_agent)",
            )
        })
        .collect();
    exec_all(store, statements).await
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Rows of the `stats_*` tables, absolute values.
pub(crate) async fn write_totals(store: &Store, rows: &[(Key, Totals)]) -> Result<(), StoreError> {
    let mut statements = Vec::new();
    for table in Table::ALL {
        let of_table: Vec<_> = rows.iter().filter(|(k, _)| k.table == table).collect();
        let key_columns = match table {
            Table::PoolHour => "hour",
            Table::PoolDay => "day",
            Table::UsersHour => "user_id, hour",
            Table::UsersDay => "user_id, day",
            Table::WorkersHour => "user_id, worker_id, hour",
            Table::WorkersDay => "user_id, worker_id, day",
        };
        for chunk in of_table.chunks(BATCH) {
            let values: Vec<Vec<Value>> = chunk
                .iter()
                .map(|(k, t)| {
                    let mut row = match key_columns.matches(',').count() {
                        0 => vec![],
                        1 => vec![Value::from(k.user_id)],
                        _ => vec![Value::from(k.user_id), Value::from(k.worker_id)],
                    };
                    row.extend([
                        Value::from(k.period),
                        Value::from(t.accept),
                        Value::from(t.stale),
                        Value::from(t.reject),
                        Value::from(t.reject_rate()),
                        // DECIMAL(35,25) from text: no binary-float rounding on the way.
                        Value::from(format!("{:.25}", t.score)),
                        Value::from(t.earn_sat()),
                    ]);
                    row
                })
                .collect();
            statements.push(insert_sql(
                &format!(
                    "INSERT INTO {} ({key_columns}, share_accept, share_stale, share_reject, \
                     reject_rate, score, earn)",
                    table.name()
                ),
                &values,
                "ON DUPLICATE KEY UPDATE share_accept = VALUES(share_accept), \
                 share_stale = VALUES(share_stale), share_reject = VALUES(share_reject), \
                 reject_rate = VALUES(reject_rate), score = VALUES(score), earn = VALUES(earn)",
            ));
        }
    }
    exec_all(store, statements).await
}
