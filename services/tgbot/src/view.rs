//! The answers, written for a phone screen: short lines, the figure first,
//! units a person reads (TH/s, "3 min ago"). Pure functions of statshttpd's
//! answers (`sluice_api`'s types), so every answer is tested without
//! Telegram or a pool.

use sluice_api::{
    Block, Blocks, Db, Health, Minutes, Pool, PoolBooks, Servers, Service, Services, UserWorkers,
    Worker, newest,
};

/// `/help` and `/start`.
pub fn help() -> String {
    [
        "Sluice pool bot",
        "/status  servers, services, node, broker",
        "/speed  hashrate of each server",
        "/pool  hashrate, users, workers, rejects",
        "/results  blocks today and this week",
        "/blocks N  the last N blocks",
        "/payouts  what the pool owes and its last payouts",
        "/workers USER  a user's workers",
        "/db  the database and the stats flushes",
        "/subscribe USER  tell me when USER's workers go offline",
        "/unsubscribe USER, /subscriptions",
        "/help  this list",
    ]
    .join("\n")
}

/// A hashrate in hashes per second, with its unit.
pub fn hashrate(hps: f64) -> String {
    const UNITS: [&str; 7] = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let mut value = hps.max(0.0);
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// Seconds as a person says them: "45 s", "12 min", "3 h", "2 d".
pub fn age(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 90.0 * 60.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 36.0 * 3600.0 {
        format!("{:.0} h", secs / 3600.0)
    } else {
        format!("{:.0} d", secs / 86_400.0)
    }
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.2}%", 100.0 * part / whole)
    } else {
        "—".into()
    }
}

/// Sums a column of `/api/v1/minutes` over `n` minutes, the newest `skip`
/// left out.
/// A count column as figures.
fn counts(column: &[u64]) -> Vec<f64> {
    column.iter().map(|&v| v as f64).collect()
}

/// `/pool` from `/api/v1/pool` and the pool's `/api/v1/minutes` (a day of
/// them: their mean hashrate is the 24 h one); shares/s is over the last
/// five whole minutes.
pub fn pool(pool: &Pool, minutes: &Minutes) -> String {
    let day = hashrate(minutes.hashrate_mean);
    // The current minute is partial: the five before it.
    let shares_5 = newest(&counts(&minutes.shares), 5, 1);
    let hour = pool.figures.shares.h1;
    let all = hour.accept + hour.stale + hour.reject;
    [
        "Pool".to_owned(),
        format!("5 min  {}", hashrate(pool.figures.hashrate.m5)),
        format!("1 h  {}", hashrate(pool.figures.hashrate.h1)),
        format!("24 h  {day}"),
        format!("users {}, workers {}", pool.users, pool.workers),
        format!("shares/s  {:.1}", shares_5 / 300.0),
        format!(
            "stale {}, rejected {} (1 h, by work)",
            percent(hour.stale, all),
            percent(hour.reject, all)
        ),
        format!("height {}", pool.network_height),
    ]
    .join("\n")
}

/// `/speed` from `/api/v1/servers`: each sserver's hashrate over 5 min and
/// 1 h from the shares statshttpd counted.
pub fn speed(servers: &Servers) -> String {
    if servers.servers.is_empty() {
        return "No sserver has sent a heartbeat.".into();
    }
    let mut lines = vec!["Hashrate by server (5 min / 1 h)".to_owned()];
    for s in &servers.servers {
        let rates = s
            .from_shares
            .as_ref()
            .map(|f| f.hashrate)
            .unwrap_or_default();
        lines.push(format!(
            "{} #{}: {} / {}",
            s.instance,
            s.server_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string()),
            hashrate(rates.m5),
            hashrate(rates.h1),
        ));
    }
    lines.join("\n")
}

/// `/status` from `/api/v1/servers`, `/api/v1/services` and
/// `/api/v1/health`: each sserver, every other service (up, healthy, and
/// why not), then the infrastructure statshttpd watches.
pub fn status(servers: &Servers, services: &Services, health: &Health) -> String {
    let mut lines = Vec::new();
    lines.push(format!("Servers ({})", servers.servers.len()));
    for s in &servers.servers {
        let state = match (s.up, s.healthy) {
            (false, _) => "DOWN",
            (true, false) => "UNHEALTHY",
            (true, true) => "up",
        };
        lines.push(format!(
            "{} {state}: {} miners, {:.1} shares/s, job {} old",
            s.instance,
            s.connections.unwrap_or(0.0),
            s.shares_per_sec.unwrap_or(0.0),
            age(s.last_job_age_secs.unwrap_or(0.0)),
        ));
    }
    let others: Vec<&Service> = services
        .services
        .iter()
        .filter(|s| s.service != "sserver")
        .collect();
    lines.push(format!("Services ({})", others.len()));
    for s in others {
        // Unhealthy with nothing reported yet: it has just started.
        let state = match (s.up, s.healthy) {
            (false, _) => "DOWN",
            (true, false) if s.problems.is_empty() => "starting",
            (true, false) => "UNHEALTHY",
            (true, true) => "ok",
        };
        let why = if s.up && !s.problems.is_empty() {
            format!(" ({})", s.problems.join("; "))
        } else {
            String::new()
        };
        lines.push(format!("{} {} {state}{why}", s.service, s.instance));
    }
    lines.push(if health.ok {
        "Infrastructure: all ok".to_owned()
    } else {
        "Infrastructure: PROBLEMS".to_owned()
    });
    for (name, c) in &health.components {
        let mark = if c.ok { "ok" } else { "NOT OK" };
        lines.push(format!("{name} {mark}: {}", c.detail));
    }
    lines.push(format!("share lag {}", health.consumer_lag));
    lines.join("\n")
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n.max(0.0), 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// `/db` from `/api/v1/db`: MariaDB's state and statshttpd's flushes.
pub fn db(body: &Db, now_secs: u64) -> String {
    let address = &body.address;
    let mut lines = Vec::new();
    match (&body.server, body.reachable) {
        (Some(s), true) => {
            lines.push(format!("MariaDB at {address}: reachable"));
            lines.push(format!("{}, up {}", s.version, age(s.uptime_secs as f64)));
            let pending = s.pending_migrations.len();
            lines.push(if pending == 0 {
                format!("schema {} (current)", s.schema_version)
            } else {
                format!(
                    "schema {}: {pending} migrations NOT applied (sluicectl migrate)",
                    s.schema_version
                )
            });
            let total: f64 = s.tables.iter().map(|t| t.bytes as f64).sum();
            lines.push(format!(
                "tables {}, {} in all; largest:",
                s.tables.len(),
                bytes(total)
            ));
            for t in s.tables.iter().take(5) {
                lines.push(format!(
                    "  {} {} rows, {}",
                    t.name,
                    t.rows,
                    bytes(t.bytes as f64)
                ));
            }
        }
        _ => lines.push(format!(
            "MariaDB at {address}: UNREACHABLE ({})",
            body.error.as_deref().unwrap_or("no answer")
        )),
    }
    let last = body.last_flush;
    lines.push(if last == 0 {
        "stats flush: none yet".to_owned()
    } else {
        format!(
            "last stats flush {} ago, took {} ms; failed flushes {}",
            age(now_secs.saturating_sub(last) as f64),
            body.last_flush_ms,
            body.flush_failures
        )
    });
    lines.push(format!(
        "behind: {} shares not yet read, {} rows not yet written",
        body.shares_behind, body.rows_waiting
    ));
    lines.join("\n")
}

/// A block's state at the nodes: its standing (blkmaker's confirmation
/// watch), else what the nodes answered to `submitblock`.
fn block_state(block: &Block) -> String {
    let confirmations = block.confirmations;
    match block.status.as_str() {
        "orphaned" => return "ORPHANED".into(),
        "confirmed" => return format!("confirmed ({confirmations} conf)"),
        "pending" if confirmations >= 1 => {
            return format!("pending ({confirmations} conf)");
        }
        _ if block.found.is_orphaned => return "ORPHANED".into(),
        _ => {}
    }
    let results = &block.found.submit_results;
    let accepted = results
        .values()
        .filter(|r| *r == "accepted" || *r == "duplicate")
        .count();
    let total = results.len();
    if accepted > 0 {
        format!("accepted ({accepted}/{total} nodes)")
    } else {
        let why: Vec<String> = results.iter().map(|(n, r)| format!("{n}: {r}")).collect();
        format!("not accepted ({})", why.join(", "))
    }
}

fn block_line(block: &Block, now_secs: u64) -> String {
    let found = &block.found;
    let hash = &found.hash;
    let solo = match &found.solo_address {
        Some(address) => format!(" (solo, paying {address})"),
        None => String::new(),
    };
    format!(
        "#{} {}… by {}{solo} {} ago, {:.8} BTC, {}",
        found.height,
        &hash[..hash.len().min(16)],
        found.worker_name,
        age(now_secs as f64 - block.found_at as f64),
        found.reward as f64 / 1e8,
        block_state(block),
    ) + &effort(block)
}

/// `, effort 87%` (`≥` when the round began before statshttpd's oldest
/// share), or nothing if the work behind the block is not known.
fn effort(block: &Block) -> String {
    match block.effort {
        Some(e) => {
            let at_least = if block.effort_whole == Some(false) {
                "≥"
            } else {
                ""
            };
            format!(", effort {at_least}{:.0}%", e * 100.0)
        }
        None => String::new(),
    }
}

/// Satoshis as BTC with 8 decimals.
fn btc(sat: i64) -> String {
    format!(
        "{}{}.{:08}",
        if sat < 0 { "-" } else { "" },
        sat.unsigned_abs() / 100_000_000,
        sat.unsigned_abs() % 100_000_000
    )
}

/// `/payouts` from `/api/v1/payouts`: what the pool owes and its newest
/// batches.
pub fn payouts(books: &PoolBooks) -> String {
    let mut lines = vec![
        format!(
            "Owed {} BTC payable, {} BTC immature",
            btc(books.owed),
            btc(books.immature)
        ),
        format!(
            "In flight {} BTC, paid {} BTC",
            btc(books.in_flight),
            btc(books.paid)
        ),
    ];
    if books.payouts.is_empty() {
        lines.push("No payout yet.".into());
    }
    for p in books.payouts.iter().take(5) {
        let txid = &p.txid;
        lines.push(format!(
            "#{} {} {}: {} BTC to {} ({} sat fee) {}…",
            p.id,
            p.created_at,
            p.state,
            btc(p.total as i64),
            p.users,
            p.network_fee,
            &txid[..txid.len().min(12)]
        ));
    }
    lines.join("\n")
}

/// `/blocks N` from `/api/v1/blocks?limit=N`.
pub fn blocks(blocks: &Blocks, now_secs: u64) -> String {
    let list = &blocks.blocks;
    if list.is_empty() {
        return "No block found yet.".into();
    }
    let mut lines = vec![format!("Last {} blocks", list.len())];
    lines.extend(list.iter().map(|b| block_line(b, now_secs)));
    lines.join("\n")
}

/// `/results`: blocks found today (UTC) and in the last 7 days, the latest
/// one, and today's accepted, stale and rejected work from the minutes.
pub fn results(blocks: &Blocks, minutes: &Minutes, now_secs: u64) -> String {
    let list = &blocks.blocks;
    let midnight = now_secs - now_secs % 86_400;
    let found = |since: u64| list.iter().filter(|b| b.found_at >= since).count();
    let since_midnight = ((now_secs - midnight) / 60 + 1) as usize;
    let accept = newest(&minutes.accept, since_midnight, 0);
    let shares = newest(&counts(&minutes.shares), since_midnight, 0);
    let rejects = newest(&counts(&minutes.rejects), since_midnight, 0);
    let mut lines = vec![
        format!(
            "Blocks today {}, last 7 days {}",
            found(midnight),
            found(now_secs - 7 * 86_400)
        ),
        match list.first() {
            Some(b) => format!("Latest {}", block_line(b, now_secs)),
            None => "No block found yet.".into(),
        },
        "Today (UTC)".into(),
        format!(
            "accepted work {accept:.6e} ({})",
            hashrate(sluice_api::hashrate(
                accept,
                (now_secs - midnight).max(1) as f64
            ))
        ),
        format!(
            "shares {shares:.0}, rejected or stale {rejects:.0} ({})",
            percent(rejects, shares)
        ),
    ];
    lines.retain(|l| !l.is_empty());
    lines.join("\n")
}

/// `/workers USER` from `/api/v1/users/USER/workers`: offline workers (no
/// share in `offline_secs`) first, then by hashrate.
pub fn workers(user: &str, body: &UserWorkers, now_secs: u64, offline_secs: u64) -> String {
    let list = &body.workers;
    if list.is_empty() {
        return format!("{user} has no worker with shares in the last hour.");
    }
    let offline = |w: &Worker| w.is_offline(now_secs, offline_secs);
    let mut sorted: Vec<&Worker> = list.iter().collect();
    sorted.sort_by(|a, b| {
        offline(b)
            .cmp(&offline(a))
            .then(b.figures.hashrate.m5.total_cmp(&a.figures.hashrate.m5))
    });
    let down = sorted.iter().filter(|w| offline(w)).count();
    let mut lines = vec![format!("{user}: {} workers, {down} offline", list.len())];
    for w in sorted {
        let last = w.figures.last_share_time.unwrap_or(0);
        lines.push(format!(
            "{}{}: {} (1 h {}), last share {} ago",
            if offline(w) { "OFFLINE " } else { "" },
            w.name,
            hashrate(w.figures.hashrate.m5),
            hashrate(w.figures.hashrate.h1),
            age(now_secs.saturating_sub(last) as f64),
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn hashrates_and_ages_read_like_a_person_says_them() {
        assert_eq!(hashrate(0.0), "0.00 H/s");
        assert_eq!(hashrate(950.0), "950 H/s");
        assert_eq!(hashrate(1.234e12), "1.23 TH/s");
        assert_eq!(hashrate(56.7e15), "56.7 PH/s");
        assert_eq!(hashrate(1e24), "1000000 EH/s");
        assert_eq!(age(42.0), "42 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(age(7200.0), "2 h");
        assert_eq!(age(3.0 * 86_400.0), "3 d");
    }

    /// `n` minutes alike, as statshttpd answers them.
    fn minutes(n: usize, shares: f64, accept: f64, rejects: f64) -> Minutes {
        let one = (shares as u64, accept, rejects as u64);
        Minutes::new(0, std::iter::repeat_n(one, n))
    }

    #[test]
    fn pool_answers_hashrates_counts_and_rates() {
        let pool = json!({
            "hashrate": {"5m": 2.0e15, "15m": 1.9e15, "1h": 1.5e15},
            "shares": {"1h": {"accept": 970.0, "stale": 20.0, "reject": 10.0}},
            "users": 3, "workers": 42, "network_height": 900_123,
        });
        // 1,440 minutes of 60 shares and 60 x 2^32 / 60 ... = 1 GH/s... of work.
        let m = minutes(
            1440,
            60.0,
            60.0 * 1e9 / sluice_api::HASHES_PER_DIFFICULTY,
            1.0,
        );
        let text = pool_text(&pool, &m);
        assert!(text.contains("5 min  2.00 PH/s"), "{text}");
        assert!(text.contains("1 h  1.50 PH/s"), "{text}");
        assert!(text.contains("24 h  1.00 GH/s"), "{text}");
        assert!(text.contains("users 3, workers 42"), "{text}");
        assert!(text.contains("shares/s  1.0"), "{text}");
        assert!(text.contains("stale 2.00%, rejected 1.00%"), "{text}");
        assert!(text.contains("height 900123"), "{text}");
    }

    fn pool_text(pool_json: &Value, m: &Minutes) -> String {
        pool(&typed(pool_json), m)
    }

    /// statshttpd's answer as the bot parses it.
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
        serde_json::from_value(v.clone()).unwrap()
    }

    #[test]
    fn status_names_each_server_and_every_problem() {
        let servers = json!({"servers": [
            {"instance": "ss-a", "server_id": 1, "up": true, "healthy": true, "connections": 120,
             "shares_per_sec": 33.3, "last_job_age_secs": 12},
            {"instance": "ss-b", "server_id": 2, "up": false, "healthy": true, "connections": 0,
             "shares_per_sec": 0, "last_job_age_secs": 400},
        ]});
        let health = json!({"ok": false, "consumer_lag": 5, "components": {
            "kafka": {"ok": true, "detail": "1 broker"},
            "mysql": {"ok": false, "detail": "connection refused"},
        }});
        let services = json!({"services": [
            {"service": "sserver", "instance": "ss-a", "up": true, "healthy": true, "problems": []},
            {"service": "jobmaker", "instance": "jm-1", "up": true, "healthy": false,
             "problems": ["templates: no template for 75s", "kafka_jobs: stalled"]},
            {"service": "blkmaker", "instance": "bm-1", "up": true, "healthy": true, "problems": []},
            {"service": "gbtmaker", "instance": "gm-1", "up": false, "healthy": true, "problems": []},
        ]});
        let text = status(&typed(&servers), &typed(&services), &typed(&health));
        assert!(text.starts_with("Servers (2)"), "{text}");
        assert!(
            text.contains("ss-a up: 120 miners, 33.3 shares/s, job 12 s old"),
            "{text}"
        );
        assert!(text.contains("ss-b DOWN"), "{text}");
        assert!(text.contains("Services (3)"), "{text}");
        assert!(
            text.contains(
                "jobmaker jm-1 UNHEALTHY (templates: no template for 75s; kafka_jobs: stalled)"
            ),
            "{text}"
        );
        assert!(text.contains("blkmaker bm-1 ok"), "{text}");
        assert!(text.contains("gbtmaker gm-1 DOWN"), "{text}");
        assert!(text.contains("Infrastructure: PROBLEMS"), "{text}");
        assert!(text.contains("mysql NOT OK: connection refused"), "{text}");
        assert!(text.contains("kafka ok: 1 broker"), "{text}");
    }

    #[test]
    fn blocks_and_results_count_by_day_and_say_the_node_answer() {
        let now = 1_800_000_000; // 2027-01-15T08:00:00Z
        let midnight = now - now % 86_400;
        let blocks = json!({"blocks": [
            {"height": 12, "hash": "00000000000000000001aa", "worker_name": "rig1",
             "found_at": now - 120, "reward": 312_500_000, "is_orphaned": false,
             "status": "pending", "confirmations": 0, "effort": 0.874, "effort_whole": true,
             "submit_results": {"core-a": "accepted", "core-b": "pending"}},
            {"height": 11, "hash": "00000000000000000004dd", "worker_name": "rig3",
             "found_at": now - 60, "reward": 312_500_000, "is_orphaned": false,
             "status": "confirmed", "confirmations": 101, "effort": 2.5, "effort_whole": false,
             "submit_results": {"core-a": "accepted"}},
            {"height": 11, "hash": "00000000000000000002bb", "worker_name": "rig2",
             "found_at": midnight - 3600, "reward": 312_500_000, "is_orphaned": false,
             "submit_results": {"core-a": "high-hash"}},
            {"height": 10, "hash": "00000000000000000003cc", "worker_name": "rig2",
             "found_at": now - 10 * 86_400, "reward": 312_500_000, "is_orphaned": true,
             "status": "orphaned", "confirmations": 0, "effort": null,
             "submit_results": {"core-a": "accepted"}},
        ]});
        let text = blocks_text(&blocks, now);
        assert!(
            text.contains(
                "#12 0000000000000000… by rig1 2 min ago, 3.12500000 BTC, accepted (1/2 nodes), effort 87%\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("by rig3 60 s ago, 3.12500000 BTC, confirmed (101 conf), effort ≥250%"),
            "{text}"
        );
        assert!(
            text.contains("not accepted (core-a: high-hash)\n"),
            "{text}"
        );
        assert!(text.contains("BTC, ORPHANED"), "{text}");
        let m = minutes(1440, 10.0, 5.0, 1.0);
        let text = results(&typed(&blocks), &m, now);
        assert!(text.contains("Blocks today 2, last 7 days 3"), "{text}");
        assert!(text.contains("Latest #12"), "{text}");
        // 8 h and the current minute: 481 minutes of 10 shares, 1 rejected.
        assert!(
            text.contains("shares 4810, rejected or stale 481 (10.00%)"),
            "{text}"
        );
    }

    #[test]
    fn payouts_say_what_is_owed_and_the_last_batches() {
        let books = json!({"owed": 150_000_000, "immature": 7, "in_flight": 0, "paid": 990_001_258i64,
            "pool": 5, "payouts": [{"id": 3, "state": "confirmed", "txid": "f8a1234a25c345514dddf9c0",
            "total": 990_000_000, "network_fee": 1258, "users": 2, "error": null,
            "created_at": "2026-12-07 00:12:53"}]});
        let text = payouts(&typed(&books));
        assert!(
            text.starts_with("Owed 1.50000000 BTC payable, 0.00000007 BTC immature"),
            "{text}"
        );
        assert!(text.contains("paid 9.90001258 BTC"), "{text}");
        assert!(
            text.contains(
                "#3 2026-12-07 00:12:53 confirmed: 9.90000000 BTC to 2 (1258 sat fee) f8a1234a25c3…"
            ),
            "{text}"
        );
        assert!(payouts(&typed(&json!({"payouts": []}))).ends_with("No payout yet."));
    }

    fn blocks_text(b: &Value, now: u64) -> String {
        blocks(&typed(b), now)
    }

    #[test]
    fn db_says_the_server_the_schema_the_tables_and_the_flushes() {
        let now = 1_800_000_000;
        let body = json!({
            "address": "127.0.0.1:3306", "reachable": true,
            "last_flush": now - 12, "last_flush_ms": 85, "flush_failures": 0,
            "shares_behind": 3, "rows_waiting": 0,
            "server": {"version": "10.11.6-MariaDB-0+deb12u1", "uptime_secs": 3 * 86_400,
                "schema_version": 5, "pending_migrations": [],
                "tables": [{"name": "mining_workers", "rows": 100100, "bytes": 52_428_800},
                           {"name": "users", "rows": 3, "bytes": 32_768}]},
        });
        let text = db(&typed(&body), now);
        assert!(
            text.starts_with(
                "MariaDB at 127.0.0.1:3306: reachable\n10.11.6-MariaDB-0+deb12u1, up 3 d"
            ),
            "{text}"
        );
        assert!(text.contains("schema 5 (current)"), "{text}");
        assert!(
            text.contains("tables 2, 50.0 MiB in all; largest:"),
            "{text}"
        );
        assert!(
            text.contains("  mining_workers 100100 rows, 50.0 MiB"),
            "{text}"
        );
        assert!(
            text.contains("last stats flush 12 s ago, took 85 ms; failed flushes 0"),
            "{text}"
        );
        assert!(
            text.ends_with("behind: 3 shares not yet read, 0 rows not yet written"),
            "{text}"
        );
        let down = json!({"address": "db:3306", "reachable": false, "error": "connection refused",
                          "last_flush": 0, "shares_behind": 0, "rows_waiting": 7});
        let text = db(&typed(&down), now);
        assert!(
            text.starts_with("MariaDB at db:3306: UNREACHABLE (connection refused)"),
            "{text}"
        );
        assert!(text.contains("stats flush: none yet"), "{text}");
        assert!(text.contains("7 rows not yet written"), "{text}");
    }

    #[test]
    fn workers_list_the_offline_first() {
        let now = 1_800_000_000;
        let body = json!({"workers": [
            {"name": "fast", "hashrate": {"5m": 3e12, "1h": 2e12}, "last_share_time": now - 5},
            {"name": "gone", "hashrate": {"5m": 0.0, "1h": 1e12}, "last_share_time": now - 1200},
            {"name": "slow", "hashrate": {"5m": 1e12, "1h": 1e12}, "last_share_time": now - 30},
        ]});
        let text = workers("alice", &typed(&body), now, 600);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "alice: 3 workers, 1 offline");
        assert!(
            lines[1].starts_with("OFFLINE gone: 0.00 H/s (1 h 1.00 TH/s), last share 20 min ago"),
            "{text}"
        );
        assert!(lines[2].starts_with("fast: 3.00 TH/s"), "{text}");
        assert!(lines[3].starts_with("slow: 1.00 TH/s"), "{text}");
        assert_eq!(
            workers("bob", &typed(&json!({"workers": []})), now, 600),
            "bob has no worker with shares in the last hour."
        );
    }
}
