//! The HTTP API (ARCHITECTURE.md §9): btcpool's `/`, `/worker_status` and
//! `/flush_db_time`, with its `err_no` envelope, and the JSON `/api/v1/…`.
//! Errors are JSON too: 400 for bad parameters, 404 for unknown users or
//! paths, 503 while initializing or when MySQL does not answer.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sluice_store::BlockWork;
use tokio_util::sync::CancellationToken;

use crate::events::SERVER_UP_MS;
use crate::live::Figures;
use crate::minutes::Scope;
use crate::window::Sums;
use crate::{Stats, lock, params};

type Shared = State<Arc<Stats>>;

/// Serves until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/", get(root))
        .route("/worker_status", get(worker_status).post(worker_status))
        .route("/flush_db_time", get(flush_db_time))
        .route("/api/v1/pool", get(pool))
        .route("/api/v1/users/{name}", get(user))
        .route("/api/v1/users/{name}/workers", get(user_workers))
        .route(
            "/api/v1/users/{name}/earnings",
            get(crate::earnings::user_earnings),
        )
        .route("/api/v1/payouts", get(crate::earnings::payouts))
        .route("/api/v1/servers", get(servers))
        .route("/api/v1/services", get(services))
        .route("/api/v1/db", get(db))
        .route("/api/v1/minutes", get(pool_minutes))
        .route("/api/v1/servers/{id}/minutes", get(server_minutes))
        .route("/api/v1/users/{name}/minutes", get(user_minutes))
        .route(
            "/api/v1/users/{name}/workers/{worker}/minutes",
            get(worker_minutes),
        )
        .route("/api/v1/blocks", get(blocks))
        .route("/api/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/pool", get(crate::web::pool_page))
        .route("/servers", get(crate::web::servers_page))
        .route("/blocks", get(crate::web::blocks_page))
        .route("/u/{name}", get(crate::web::user_page))
        .route("/assets/{file}", get(crate::web::asset))
        .fallback(not_found)
        .with_state(stats);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(%error, "the HTTP API stopped");
    }
}

/// A JSON reply, counted in btcpool's `request` and `repbytes`.
pub(crate) fn reply<T: serde::Serialize + ?Sized>(
    stats: &Stats,
    status: StatusCode,
    body: &T,
) -> Response {
    // Written straight from the answer's type (sluice_api's or a Value).
    let text = serde_json::to_string(body).unwrap_or_else(|_| "null".into());
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats
        .reply_bytes
        .fetch_add(text.len() as u64, Ordering::Relaxed);
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub(crate) fn error(stats: &Stats, status: StatusCode, message: impl Into<String>) -> Response {
    reply(stats, status, &json!({ "error": message.into() }))
}

/// btcpool's envelope: `{"err_no":0,"err_msg":"","data":…}`.
fn btcpool(stats: &Stats, data: Value) -> Response {
    reply(
        stats,
        StatusCode::OK,
        &json!({ "err_no": 0, "err_msg": "", "data": data }),
    )
}

fn btcpool_error(stats: &Stats, err_no: u32, msg: &str) -> Response {
    reply(
        stats,
        StatusCode::OK,
        &json!({ "err_no": err_no, "err_msg": msg }),
    )
}

fn initializing(stats: &Stats) -> Response {
    reply(
        stats,
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "error": "service is initializing", "initializing": true }),
    )
}

/// btcpool's arrays: slot 0 is an unused 1-minute value; stale and reject
/// have no 5-minute slot.
fn btcpool_figures(f: &Figures) -> serde_json::Map<String, Value> {
    let [m5, m15, h1] = f.windows;
    let mut m = serde_json::Map::new();
    m.insert(
        "accept".into(),
        json!([0, m5.accept, m15.accept, h1.accept]),
    );
    m.insert("stale".into(), json!([0, 0, m15.stale, h1.stale]));
    m.insert("reject".into(), json!([0, 0, m15.reject, h1.reject]));
    m.insert("reject_detail".into(), json!([{}, {}, {}, {}]));
    m.insert("accept_count".into(), json!(f.accept_count));
    m
}

async fn root(State(stats): Shared) -> Response {
    if !stats.is_initialized() {
        return btcpool_error(&stats, 2, "service is initializing...");
    }
    let now = stats.clock.now_ms();
    let (pool, users, workers) = {
        let live = lock(&stats.live);
        let (users, workers) = live.counts();
        (live.pool(now), users, workers)
    };
    let mut p = btcpool_figures(&pool);
    p.insert("workers".into(), json!(workers));
    p.insert("users".into(), json!(users));
    let up = now.saturating_sub(stats.started_ms) / 1000;
    let uptime = format!(
        "{:04} d {:02} h {:02} m {:02} s",
        up / 86_400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60
    );
    btcpool(
        &stats,
        json!({
            "uptime": uptime,
            "request": stats.requests.load(Ordering::Relaxed),
            "repbytes": stats.reply_bytes.load(Ordering::Relaxed),
            "pool": p,
        }),
    )
}

async fn worker_status(State(stats): Shared, RawQuery(q): RawQuery) -> Response {
    let q = match params::worker_status(q.as_deref()) {
        Ok(q) => q,
        Err(message) => return btcpool_error(&stats, 1, message),
    };
    let (user, workers) = (q.user_id, q.worker_ids);
    if !stats.is_initialized() {
        return btcpool_error(&stats, 2, "service is initializing...");
    }
    let now = stats.clock.now_ms();
    let live = lock(&stats.live);
    let lookup = |id: i64| -> (Figures, Option<u32>) {
        if id == 0 {
            live.user(user, now)
                .map_or((empty(), Some(0)), |(f, n)| (f, Some(n)))
        } else {
            (
                live.worker(user, id, now).map_or_else(empty, |(f, _)| f),
                None,
            )
        }
    };
    let entry = |f: &Figures, n: Option<u32>| {
        let mut m = btcpool_figures(f);
        m.insert("last_share_ip".into(), json!(ip_or_empty(f)));
        m.insert("last_share_time".into(), json!(f.last_share_ms / 1000));
        if let Some(n) = n {
            m.insert("workers".into(), json!(n));
        }
        Value::Object(m)
    };
    let mut data = serde_json::Map::new();
    if q.merge {
        let mut merged = empty();
        for id in &workers {
            let (f, _) = lookup(*id);
            for (a, b) in merged.windows.iter_mut().zip(f.windows) {
                a.add(&b);
            }
            merged.accept_count += f.accept_count;
            merged.best_share = merged.best_share.max(f.best_share);
            if f.last_share_ms >= merged.last_share_ms {
                merged.last_share_ms = f.last_share_ms;
                merged.last_ip = f.last_ip;
            }
        }
        data.insert("0".into(), entry(&merged, None));
    } else {
        for id in workers {
            let (f, n) = lookup(id);
            data.insert(id.to_string(), entry(&f, n));
        }
    }
    drop(live);
    btcpool(&stats, Value::Object(data))
}

fn empty() -> Figures {
    Figures {
        windows: [Sums::default(); 3],
        accept_count: 0,
        best_share: 0.0,
        last_share_ms: 0,
        last_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

fn ip_or_empty(f: &Figures) -> String {
    if f.last_share_ms == 0 {
        String::new()
    } else {
        f.last_ip.to_string()
    }
}

async fn flush_db_time(State(stats): Shared) -> Response {
    btcpool(
        &stats,
        json!({ "flush_db_time": stats.flushed_at.load(Ordering::SeqCst) }),
    )
}

/// One entity's windows as the API gives them.
fn figures(f: &Figures) -> sluice_api::Figures {
    let mut figures = sluice_api::Figures::new(
        f.windows.map(sluice_api::Sums::from),
        f.accept_count,
        f.last_share_ms,
    );
    figures.best_share_difficulty = f.best_share;
    figures
}

async fn pool(State(stats): Shared) -> Response {
    if !stats.is_initialized() {
        return initializing(&stats);
    }
    let now = stats.clock.now_ms();
    let (f, users, workers, share_height) = {
        let live = lock(&stats.live);
        let (users, workers) = live.counts();
        (live.pool(now), users, workers, live.height)
    };
    let blocks_found = stats.store.found_blocks_total().await.ok();
    let node_height = stats.node_height.load(Ordering::SeqCst);
    // The round under way: accepted difficulty since the last block.
    let round = lock(&stats.round).now().map(|r| sluice_api::Round {
        work: r.work,
        network_difficulty: r.network_difficulty,
        effort: if r.network_difficulty > 0.0 {
            r.work / r.network_difficulty
        } else {
            0.0
        },
        since: r.since_ms / 1000,
        whole: r.whole,
    });
    let pool = sluice_api::Pool {
        figures: figures(&f),
        users: users as u64,
        workers: workers as u64,
        blocks_found,
        // The nodes' best height, or the height below the newest job mined.
        network_height: if node_height > 0 {
            node_height
        } else {
            u64::from(share_height.saturating_sub(1))
        },
        round,
    };
    reply(&stats, StatusCode::OK, &pool)
}

/// `scope`'s minute statistics, columns for charts: `start` (unix seconds
/// of the first minute), `step` 60, and per minute `shares`, `accept`
/// (accepted difficulty), `rejects` (stale and invalid shares) and
/// `hashrate` (accept x 2^32 / 60), and `hashrate_mean` over them all.
/// Minutes without shares are zeros.
/// `query`'s `minutes` says how many minutes back, the current one
/// included (default and at most 1,440).
fn minutes_reply(stats: &Stats, scope: Scope, query: Option<&str>, what: &str) -> Response {
    let count = match params::minutes(query) {
        Ok(n) => n,
        Err(message) => return error(stats, StatusCode::BAD_REQUEST, message),
    };
    if !stats.is_initialized() {
        return initializing(stats);
    }
    let now = stats.clock.now_ms();
    let minutes = {
        let minutes = lock(&stats.minutes);
        if matches!(scope, Scope::Worker(..)) && !minutes.per_worker() {
            return error(
                stats,
                StatusCode::NOT_FOUND,
                "workers' minutes are off (worker_minutes = false)",
            );
        }
        minutes.read(scope, count, now)
    };
    let Some(minutes) = minutes else {
        return error(
            stats,
            StatusCode::NOT_FOUND,
            format!("no share from {what} in 24 hours"),
        );
    };
    let start = (now / 60_000 + 1 - count as u64) * 60;
    let columns = sluice_api::Minutes::new(
        start,
        minutes.iter().map(|m| (m.shares, m.accept, m.rejects)),
    );
    reply(stats, StatusCode::OK, &columns)
}

async fn pool_minutes(State(stats): Shared, RawQuery(q): RawQuery) -> Response {
    minutes_reply(&stats, Scope::Pool, q.as_deref(), "the pool")
}

async fn server_minutes(
    State(stats): Shared,
    Path(id): Path<u8>,
    RawQuery(q): RawQuery,
) -> Response {
    minutes_reply(
        &stats,
        Scope::Server(id),
        q.as_deref(),
        &format!("server {id}"),
    )
}

async fn user_minutes(
    State(stats): Shared,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let id = match find_user(&stats, &name).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    minutes_reply(&stats, Scope::User(id), q.as_deref(), &name)
}

async fn worker_minutes(
    State(stats): Shared,
    Path((name, worker)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let id = match find_user(&stats, &name).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    // The worker's name as the user's live workers have it, else its hash.
    let known = lock(&stats.live)
        .workers_of(id, stats.clock.now_ms())
        .into_iter()
        .find_map(|(worker_id, n, _)| (n == worker).then_some(worker_id));
    let worker_id = known.unwrap_or_else(|| sluice_core::worker::worker_id(&worker));
    let scope = Scope::Worker(id, worker_id);
    minutes_reply(&stats, scope, q.as_deref(), &format!("{name}.{worker}"))
}

/// The user called `name`, or the reply to give instead.
pub(crate) async fn find_user(stats: &Stats, name: &str) -> Result<u32, Response> {
    find_account(stats, name).await.map(|u| u.id)
}

/// The `users` row called `name`, or the reply to give instead.
async fn find_account(stats: &Stats, name: &str) -> Result<sluice_store::User, Response> {
    if name.is_empty() || name.len() > 64 {
        return Err(error(
            stats,
            StatusCode::BAD_REQUEST,
            "a user name is 1 to 64 characters",
        ));
    }
    if !stats.is_initialized() {
        return Err(initializing(stats));
    }
    match stats.store.user_by_name(name).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(error(
            stats,
            StatusCode::NOT_FOUND,
            format!("unknown user {name:?}"),
        )),
        Err(e) => Err(error(
            stats,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot look the user up: {e}"),
        )),
    }
}

async fn user(State(stats): Shared, Path(name): Path<String>) -> Response {
    let account = match find_account(&stats, &name).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let id = account.id;
    let now = stats.clock.now_ms();
    let (f, workers) = lock(&stats.live).user(id, now).unwrap_or((empty(), 0));
    let user = sluice_api::User {
        figures: figures(&f),
        user_id: id,
        name,
        workers,
        solo: account.solo,
    };
    reply(&stats, StatusCode::OK, &user)
}

/// Workers that went quiet stay listed (with their last share) this long.
const OFFLINE_LISTED_SECS: u64 = 30 * 86_400;
/// At most this many quiet workers are listed, the most recently seen first.
const OFFLINE_LISTED_MAX: u32 = 1_000;

/// A user's workers: those with a share in the last hour from the live
/// windows, and those quiet since (offline: no hashrate, their last share)
/// from `mining_workers`, for `OFFLINE_LISTED_SECS`.
async fn user_workers(State(stats): Shared, Path(name): Path<String>) -> Response {
    let id = match find_user(&stats, &name).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let now = stats.clock.now_ms();
    let live = lock(&stats.live).workers_of(id, now);
    let since = (now / 1000).saturating_sub(OFFLINE_LISTED_SECS);
    let known = match stats
        .store
        .known_workers(id, since, OFFLINE_LISTED_MAX)
        .await
    {
        Ok(known) => known,
        Err(error) => {
            // The live workers are still worth an answer.
            tracing::warn!(%error, user = name, "offline workers not listed: MySQL did not answer");
            Vec::new()
        }
    };
    let online: HashSet<i64> = live.iter().map(|(worker_id, _, _)| *worker_id).collect();
    let mut workers: Vec<sluice_api::Worker> = live
        .into_iter()
        .map(|(worker_id, name, f)| sluice_api::Worker {
            figures: figures(&f),
            worker_id,
            name,
            last_share_ip: ip_or_empty(&f),
        })
        .collect();
    for w in known.into_iter().filter(|w| !online.contains(&w.worker_id)) {
        let f = Figures {
            accept_count: w.accept_count,
            last_share_ms: w.last_share_secs.unwrap_or(0) * 1000,
            ..empty()
        };
        workers.push(sluice_api::Worker {
            figures: figures(&f),
            worker_id: w.worker_id,
            name: w.worker_name,
            last_share_ip: w.last_share_ip,
        });
    }
    let answer = sluice_api::UserWorkers {
        user_id: id,
        name,
        workers,
    };
    reply(&stats, StatusCode::OK, &answer)
}

/// Every service instance heard in the last day: up while its heartbeats
/// are under 30 s old, whether it is healthy and, if not, why.
async fn services(State(stats): Shared) -> Response {
    let now = stats.clock.now_ms();
    let services = lock(&stats.services)
        .recent(now)
        .into_iter()
        .map(|(at_ms, s)| sluice_api::Service {
            figures: s
                .figures
                .iter()
                .map(|f| (f.name.clone(), f.value))
                .collect(),
            service: s.service,
            instance: s.instance,
            host: s.host,
            version: s.version,
            up: now.saturating_sub(at_ms) < SERVER_UP_MS,
            healthy: s.healthy,
            problems: s.problems,
            uptime_secs: s.uptime_secs,
            last_heartbeat: at_ms / 1000,
        })
        .collect();
    reply(&stats, StatusCode::OK, &sluice_api::Services { services })
}

/// MariaDB as the operator asks after it: reachable, version, uptime,
/// schema, table sizes; and statshttpd's side: the last flush, how long it
/// took, failures, and what waits (shares not read, rows not written).
async fn db(State(stats): Shared) -> Response {
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(3), stats.store.status()).await;
    let mut db = sluice_api::Db {
        address: stats.store.addr().to_owned(),
        last_flush: stats.flushed_at.load(Ordering::SeqCst),
        last_flush_ms: stats.metrics.flush_ms.get(),
        flush_failures: stats.metrics.flush_failures.get(),
        shares_behind: stats.metrics.consumer_lag.get(),
        rows_waiting: lock(&stats.agents).len() + lock(&stats.gone).len(),
        ..sluice_api::Db::default()
    };
    let code = match status {
        Ok(Ok(s)) => {
            db.reachable = true;
            db.server = Some(sluice_api::DbServer {
                version: s.version,
                uptime_secs: s.uptime_secs,
                schema_version: s.schema_version,
                pending_migrations: s.pending_migrations,
                tables: s
                    .tables
                    .into_iter()
                    .map(|t| sluice_api::Table {
                        name: t.name,
                        rows: t.rows,
                        bytes: t.bytes,
                    })
                    .collect(),
            });
            StatusCode::OK
        }
        Ok(Err(e)) => {
            db.error = Some(e.to_string());
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(_) => {
            db.error = Some("no answer within 3 s".into());
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    reply(&stats, code, &db)
}

async fn servers(State(stats): Shared) -> Response {
    let now = stats.clock.now_ms();
    let heard = lock(&stats.services).of("sserver");
    let live = lock(&stats.live);
    let servers = heard
        .into_iter()
        .map(|(at_ms, s)| {
            let figure = |name: &str| s.figures.iter().find(|f| f.name == name).map(|f| f.value);
            let server_id = figure("server_id").map(|v| v as u8);
            sluice_api::Server {
                from_shares: server_id
                    .and_then(|id| live.server(id, now))
                    .map(|f| figures(&f)),
                server_id,
                connections: figure("connections"),
                shares_per_sec: figure("shares_per_sec"),
                hashrate: figure("hashrate"),
                last_job_age_secs: figure("last_job_age_secs"),
                up: now.saturating_sub(at_ms) < SERVER_UP_MS,
                healthy: s.healthy,
                uptime_secs: s.uptime_secs,
                last_heartbeat: at_ms / 1000,
                instance: s.instance,
                host: s.host,
                version: s.version,
            }
        })
        .collect();
    drop(live);
    reply(&stats, StatusCode::OK, &sluice_api::Servers { servers })
}

async fn blocks(State(stats): Shared, RawQuery(q): RawQuery) -> Response {
    let (limit, user) = match params::blocks(q.as_deref()) {
        Ok(q) => (q.limit, q.user_id),
        Err(message) => return error(&stats, StatusCode::BAD_REQUEST, message),
    };
    match stats.store.recent_found_blocks(limit, user).await {
        Ok(rows) => {
            let blocks = rows
                .into_iter()
                .map(|l| sluice_api::Block {
                    found: l.block,
                    found_at: l.found_at,
                    status: l.status.as_str().to_owned(),
                    confirmations: l.confirmations,
                    work: l.work.as_ref().map(|w| w.work),
                    network_difficulty: l.work.as_ref().map(|w| w.network_difficulty),
                    effort: l.work.as_ref().map(BlockWork::effort),
                    effort_whole: l.work.as_ref().map(|w| w.whole),
                })
                .collect();
            reply(&stats, StatusCode::OK, &sluice_api::Blocks { blocks })
        }
        Err(e) => error(
            &stats,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read found_blocks: {e}"),
        ),
    }
}

async fn health(State(stats): Shared) -> Response {
    let mut components: BTreeMap<String, sluice_api::Component> = stats
        .health
        .snapshot()
        .into_iter()
        .map(|(name, c)| {
            let c = sluice_api::Component {
                ok: c.ok,
                detail: c.detail,
            };
            (name, c)
        })
        .collect();
    let initialized = stats.is_initialized();
    components.insert(
        "initialized".into(),
        sluice_api::Component {
            ok: initialized,
            detail: if initialized {
                "windows rebuilt, topic caught up"
            } else {
                "rebuilding windows from the share log and the topic"
            }
            .into(),
        },
    );
    let ok = components.values().all(|c| c.ok);
    let health = sluice_api::Health {
        ok,
        components,
        share_partitions: lock(&stats.positions).len(),
        consumer_lag: stats.metrics.consumer_lag.get(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(&stats, status, &health)
}

async fn metrics(State(stats): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        stats.registry.encode(),
    )
        .into_response()
}

async fn not_found(State(stats): Shared) -> Response {
    error(&stats, StatusCode::NOT_FOUND, "no such endpoint")
}
