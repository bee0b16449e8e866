//! tgbot: the pool on Telegram. Operators ask in a chat and get the state of
//! each mining server, the speed of each, the pool's, the infrastructure's
//! health and the results, from live data (statshttpd's API).
//!
//! - Telegram: long polling (`getUpdates`) through teloxide's Bot API
//!   client, at `telegram.api_url` (a local Bot API server or a test's fake
//!   works as well as Telegram's). Unreachable: retried with backoff, the
//!   service carries on, `/health` says so.
//! - Only the chats in `telegram.allowed_chats` are answered; any other gets
//!   one refusal naming its chat id (what the operator adds to the list).
//! - Replies go through one sender (`send.rs`) that keeps Telegram's limits
//!   (1 message a second per chat, 30 overall) and retries what fails.
//! - The token comes from `SLUICE_TGBOT_TOKEN` or `telegram.token_file`,
//!   never from the config itself, and is never logged. Without one the bot
//!   is off: it says so and exits 0.

pub mod alerts;
mod send;
mod stats;
pub mod subscribe;
pub mod view;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use sluice_bus::{BusConfig, Producer, TailConsumer, Topic, start_heartbeat};
use sluice_core::record::{Event, EventKind, Figure};
use sluice_service::{Backoff, CommonConfig, Context, Validate};
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::Requester;
use teloxide::types::UpdateKind;
use tokio::sync::mpsc;

use crate::alerts::{AlertConfig, Watch};
use crate::send::Outgoing;
use crate::stats::StatsApi;
use crate::subscribe::{Subscriptions, WorkerWatch};
use sluice_api::{Blocks, Db, Health, Minutes, Pool, PoolBooks, Servers, Services, UserWorkers};

/// The environment variable holding the bot token.
pub const TOKEN_ENV: &str = "SLUICE_TGBOT_TOKEN";

/// tgbot's configuration (deploy/config/tgbot.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`.
    #[serde(default = "CommonConfig::on_port::<9108>")]
    pub service: CommonConfig,
    /// `[kafka]`: the heartbeat.
    #[serde(default)]
    pub kafka: BusConfig,
    /// `[telegram]`.
    #[serde(default)]
    pub telegram: TelegramConfig,
    /// statshttpd's API, where every answer comes from.
    #[serde(default = "default_stats_url")]
    pub stats_url: String,
    /// A worker without a share for this long is offline (`/workers`).
    #[serde(default = "default_offline")]
    pub worker_offline_secs: u64,
    /// `[alerts]`: what is told to every allowed chat unasked.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Where `/subscribe` keeps which chat follows which user's workers.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
}

fn default_state_file() -> PathBuf {
    "/var/lib/sluice/tgbot/subscriptions.json".into()
}

/// `[telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// A file holding the bot token (read when `SLUICE_TGBOT_TOKEN` is not
    /// set). Neither: the bot is off.
    pub token_file: Option<PathBuf>,
    /// The Bot API server.
    pub api_url: String,
    /// Chats answered (ids as Telegram gives them; groups are negative).
    pub allowed_chats: Vec<i64>,
    /// Long-poll wait of `getUpdates`, seconds.
    pub poll_timeout_secs: u32,
    /// Messages a second to one chat, and overall (Telegram's limits).
    pub per_chat_per_sec: f64,
    /// See `per_chat_per_sec`.
    pub overall_per_sec: f64,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            token_file: None,
            api_url: "https://api.telegram.org".into(),
            allowed_chats: Vec::new(),
            poll_timeout_secs: 25,
            per_chat_per_sec: 1.0,
            overall_per_sec: 30.0,
        }
    }
}

fn default_stats_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_offline() -> u64 {
    600
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        for (name, url) in [
            ("telegram.api_url", &self.telegram.api_url),
            ("stats_url", &self.stats_url),
        ] {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("{name} {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("{name} {url:?}: not http or https"));
            }
        }
        if !(1..=50).contains(&self.telegram.poll_timeout_secs) {
            return Err("telegram.poll_timeout_secs must be 1 to 50".into());
        }
        let t = &self.telegram;
        if !(t.per_chat_per_sec > 0.0 && t.overall_per_sec >= t.per_chat_per_sec) {
            return Err(
                "telegram.per_chat_per_sec must be positive and at most overall_per_sec".into(),
            );
        }
        if self.worker_offline_secs == 0 {
            return Err("worker_offline_secs must be positive".into());
        }
        let a = &self.alerts;
        if a.heartbeat_timeout_secs < 15 || a.check_interval_secs == 0 {
            return Err(
                "alerts.heartbeat_timeout_secs must be at least 15 (heartbeats come every 10 s) and check_interval_secs positive"
                    .into(),
            );
        }
        if !(a.hashrate_drop_percent > 0.0 && a.hashrate_drop_percent < 100.0) {
            return Err("alerts.hashrate_drop_percent must be between 0 and 100".into());
        }
        Ok(())
    }
}

impl Config {
    /// The token: the environment's, else the file's. `Ok(None)` when
    /// neither is configured; an error when the file cannot be read or is
    /// empty.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Ok(token) = std::env::var(TOKEN_ENV)
            && !token.trim().is_empty()
        {
            return Ok(Some(token.trim().to_owned()));
        }
        let Some(path) = &self.telegram.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the token file {} is empty",
            path.display()
        );
        Ok(Some(token.to_owned()))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: String,
}

/// tgbot's counters.
#[derive(Clone, Default)]
struct BotMetrics {
    commands: Family<CommandLabel, Counter>,
    refused: Counter,
    updates: Counter,
}

impl BotMetrics {
    fn register(ctx: &Context) -> Self {
        let m = BotMetrics::default();
        ctx.metrics.register(|r| {
            r.register(
                "tgbot_commands",
                "Commands answered, by command",
                m.commands.clone(),
            );
            r.register(
                "tgbot_refused",
                "Messages from chats not allowed",
                m.refused.clone(),
            );
            r.register("tgbot_updates", "Updates received", m.updates.clone());
        });
        m
    }
}

/// The service.
pub async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    let Some(token) = config.token()? else {
        tracing::warn!(
            "tgbot is off: no bot token ({TOKEN_ENV} or telegram.token_file); nothing to do"
        );
        return Ok(());
    };
    let api_url = reqwest::Url::parse(&config.telegram.api_url)?;
    let bot = teloxide::Bot::new(token).set_api_url(api_url);
    let metrics = BotMetrics::register(&ctx);
    let token = ctx.shutdown.token().clone();
    start_heartbeat(
        &ctx,
        Producer::new(&config.kafka, 0)?,
        &config.kafka,
        "tgbot",
        &config.service.instance,
        {
            let (health, m) = (ctx.health.clone(), metrics.clone());
            move || {
                (
                    health.is_healthy(),
                    vec![Figure::new("updates", m.updates.get() as f64)],
                )
            }
        },
    );
    let (out, queue) = mpsc::channel::<Outgoing>(1024);
    ctx.shutdown.tracker().spawn(send::run(
        bot.clone(),
        queue,
        send::Limits::of(&config.telegram),
        ctx.health.clone(),
        ctx.metrics.clone(),
        token.clone(),
    ));
    let api = StatsApi::new(&config.stats_url)?;
    let subs = Arc::new(Mutex::new(Subscriptions::load(&config.state_file)?));
    let watch = Arc::new(Mutex::new(Watch::new(config.alerts.clone())));
    ctx.shutdown.tracker().spawn(follow_events(
        config.kafka.clone(),
        watch.clone(),
        ctx.health.clone(),
        token.clone(),
    ));
    ctx.shutdown.tracker().spawn(tell_alerts(
        config.clone(),
        api.clone(),
        watch,
        subs.clone(),
        out.clone(),
        ctx.metrics.clone(),
        token.clone(),
    ));
    tracing::info!(
        chats = config.telegram.allowed_chats.len(),
        stats = config.stats_url,
        "tgbot polling Telegram"
    );
    let mut offset = 0i32;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    while !token.is_cancelled() {
        let poll = bot
            .get_updates()
            .offset(offset)
            .timeout(config.telegram.poll_timeout_secs);
        let updates = tokio::select! {
            () = token.cancelled() => break,
            u = poll => u,
        };
        let updates = match updates {
            Ok(u) => u,
            Err(error) => {
                ctx.health
                    .set("telegram", false, format!("getUpdates: {error}"));
                tracing::warn!(%error, retry_in = ?backoff.delay(), "Telegram not reachable");
                if !backoff.wait(&token).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        ctx.health.set("telegram", true, "polling");
        for update in updates {
            offset = offset.max(update.id.0 as i32 + 1);
            metrics.updates.inc();
            let UpdateKind::Message(message) = update.kind else {
                continue;
            };
            let Some(text) = message.text() else { continue };
            let chat = message.chat.id;
            if !config.telegram.allowed_chats.contains(&chat.0) {
                metrics.refused.inc();
                tracing::warn!(chat = chat.0, "message from a chat not allowed; refused");
                let _ = out
                    .send(Outgoing::new(
                        chat,
                        format!(
                            "This chat ({}) is not allowed. The pool's operator can add it to telegram.allowed_chats.",
                            chat.0
                        ),
                    ))
                    .await;
                continue;
            }
            let Some((command, argument)) = parse(text) else {
                continue;
            };
            metrics
                .commands
                .get_or_create(&CommandLabel {
                    command: command.clone(),
                })
                .inc();
            // Each answer in its own task: a slow one delays no other.
            let (api, out, offline) = (api.clone(), out.clone(), config.worker_offline_secs);
            let (subs, state_file) = (subs.clone(), config.state_file.clone());
            tokio::spawn(async move {
                let reply = match command.as_str() {
                    "subscribe" | "unsubscribe" | "subscriptions" => {
                        let request = Subscription {
                            chat: chat.0,
                            command: &command,
                            user: &argument,
                        };
                        subscription(&api, &subs, &state_file, request, offline).await
                    }
                    _ => answer(&api, &command, &argument, offline).await,
                };
                let _ = out.send(Outgoing::new(chat, reply)).await;
            });
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A user name as a command's argument: one path segment of the API.
fn user_argument(argument: &str) -> Option<&str> {
    (!argument.is_empty() && !argument.contains(['/', '?', '#', ' '])).then_some(argument)
}

/// Queues `text` for each of `chats`; false once the sender is gone (the
/// service is stopping).
async fn tell(out: &mpsc::Sender<Outgoing>, chats: &[i64], text: &str) -> bool {
    for chat in chats {
        let message = Outgoing::new(teloxide::types::ChatId(*chat), text.to_owned());
        if out.send(message).await.is_err() {
            return false;
        }
    }
    true
}

/// A `/subscribe`, `/unsubscribe` or `/subscriptions` from `chat`.
struct Subscription<'a> {
    chat: i64,
    command: &'a str,
    user: &'a str,
}

/// Follows, unfollows or lists users for a chat, kept in `state_file`.
async fn subscription(
    api: &StatsApi,
    subs: &Mutex<Subscriptions>,
    state_file: &std::path::Path,
    request: Subscription<'_>,
    offline_secs: u64,
) -> String {
    let Subscription {
        chat,
        command,
        user,
    } = request;
    if command == "subscriptions" {
        let mine: Vec<String> = lock(subs)
            .pairs
            .iter()
            .filter(|(c, _)| *c == chat)
            .map(|(_, u)| u.clone())
            .collect();
        return if mine.is_empty() {
            "No subscription. /subscribe USER tells you when USER's workers go offline.".into()
        } else {
            format!("Following the workers of: {}", mine.join(", "))
        };
    }
    let Some(user) = user_argument(user) else {
        return format!("Usage: /{command} USER");
    };
    let offline_now = if command == "subscribe" {
        match api
            .typed::<UserWorkers>(&format!("/api/v1/users/{user}/workers"))
            .await
        {
            Ok(body) => {
                let now = sluice_service::now_ms() / 1000;
                body.workers
                    .iter()
                    .filter(|w| w.is_offline(now, offline_secs))
                    .count()
            }
            Err(e) => return format!("Cannot subscribe to {user}: {e:#}"),
        }
    } else {
        0
    };
    let saved = {
        let mut s = lock(subs);
        let pair = (chat, user.to_owned());
        if command == "subscribe" {
            s.pairs.insert(pair);
        } else if !s.pairs.remove(&pair) {
            return format!("You do not follow {user}.");
        }
        s.save(state_file)
    };
    if let Err(error) = saved {
        tracing::error!(error = format!("{error:#}"), "subscriptions not saved");
        return format!("Done, but not saved ({error:#}): a restart forgets it.");
    }
    if command == "subscribe" {
        format!(
            "Following {user}: you will be told when its workers go offline (no share for {}) and when they are back. Offline now: {offline_now}.",
            view::age(offline_secs as f64)
        )
    } else {
        format!("No longer following {user}.")
    }
}

/// Events read back at start: the services' last heartbeats (blocks found
/// before the bot started are not news).
const EVENTS_TAIL: i64 = 2_000;

/// Feeds every heartbeat and found block on the Event topic to the alerts.
async fn follow_events(
    kafka: BusConfig,
    watch: Arc<Mutex<Watch>>,
    health: sluice_service::Health,
    token: tokio_util::sync::CancellationToken,
) {
    let started_ms = sluice_service::now_ms();
    let topic = Topic::<Event>::new(kafka.topics.event.clone());
    let consumer = Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
        .retry(
            &token,
            || TailConsumer::new(&kafka, &topic, EVENTS_TAIL),
            |error, retry_in| {
                health.set("events", false, error.to_string());
                tracing::warn!(%error, ?retry_in, "cannot read the Event topic yet");
            },
        )
        .await;
    let Some(consumer) = consumer else { return };
    health.set("events", true, "following the Event topic");
    loop {
        let record = tokio::select! {
            () = token.cancelled() => return,
            r = consumer.next() => r,
        };
        match record {
            Ok(r) => match r.value.kind {
                EventKind::ServiceStatus(s) => lock(&watch).heartbeat(r.value.timestamp_ms, s),
                EventKind::BlockFound(b) if r.value.timestamp_ms >= started_ms => {
                    lock(&watch).block(&b);
                }
                EventKind::BlockStanding(b) if r.value.timestamp_ms >= started_ms => {
                    lock(&watch).standing(&b);
                }
                EventKind::Payout(p) if r.value.timestamp_ms >= started_ms => {
                    lock(&watch).payout(&p);
                }
                _ => {}
            },
            Err(error) => {
                // A record that does not decode is skipped by the consumer;
                // a broker error is retried.
                health.set("events", false, error.to_string());
                tracing::warn!(%error, "reading the Event topic failed; retrying");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Every few seconds: statshttpd's figures when due, then whatever the
/// alerts have to tell, to every allowed chat.
async fn tell_alerts(
    config: Config,
    api: StatsApi,
    watch: Arc<Mutex<Watch>>,
    subs: Arc<Mutex<Subscriptions>>,
    out: mpsc::Sender<Outgoing>,
    metrics: sluice_service::Metrics,
    token: tokio_util::sync::CancellationToken,
) {
    let mut workers = WorkerWatch::default();
    let (open, told) = (Gauge::<i64>::default(), Counter::<u64>::default());
    metrics.register(|r| {
        r.register(
            "tgbot_alerts_open",
            "Incidents told and not yet recovered",
            open.clone(),
        );
        r.register(
            "tgbot_notices",
            "Alerts, recoveries and news told",
            told.clone(),
        );
    });
    let check = Duration::from_secs(config.alerts.check_interval_secs);
    let mut last_check: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5).min(check));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_check.is_none_or(|t| t.elapsed() >= check) {
            last_check = Some(tokio::time::Instant::now());
            let (pool, health) = tokio::join!(
                api.typed::<Pool>("/api/v1/pool"),
                api.typed_any::<Health>("/api/v1/health")
            );
            let read = match (pool, health) {
                (Ok(p), Ok(h)) => Ok((p, h)),
                (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
            };
            lock(&watch).stats(read);
            // Each followed user's workers: who went offline, who is back.
            let users = lock(&subs).users();
            workers.keep_only(&users);
            for user in users {
                let Ok(body) = api
                    .typed::<UserWorkers>(&format!("/api/v1/users/{user}/workers"))
                    .await
                else {
                    continue;
                };
                let now = sluice_service::now_ms() / 1000;
                let Some(text) = workers.look(&user, &body, now, config.worker_offline_secs) else {
                    continue;
                };
                told.inc();
                let mut chats = lock(&subs).chats_of(&user);
                chats.retain(|c| config.telegram.allowed_chats.contains(c));
                if !tell(&out, &chats, &text).await {
                    return;
                }
            }
        }
        let (notices, open_now) = {
            let mut w = lock(&watch);
            (w.evaluate(sluice_service::now_ms()), w.open())
        };
        open.set(open_now as i64);
        for notice in notices {
            told.inc();
            let text = notice.text();
            tracing::info!(notice = text, "telling the operators");
            if !tell(&out, &config.telegram.allowed_chats, &text).await {
                return;
            }
        }
    }
}

/// `/command@bot argument` → (`command`, `argument`); `None` if not a command.
pub fn parse(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (word, argument) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let command = word.split('@').next().unwrap_or("").to_ascii_lowercase();
    (!command.is_empty()).then(|| (command, argument.trim().to_owned()))
}

/// The reply to one command.
async fn answer(api: &StatsApi, command: &str, argument: &str, offline_secs: u64) -> String {
    let now = sluice_service::now_ms() / 1000;
    let reply = match command {
        "start" | "help" => Ok(view::help()),
        "pool" => {
            async {
                let (pool, minutes) = tokio::join!(
                    api.typed::<Pool>("/api/v1/pool"),
                    api.typed::<Minutes>("/api/v1/minutes")
                );
                Ok(view::pool(&pool?, &minutes?))
            }
            .await
        }
        "speed" => api
            .typed::<Servers>("/api/v1/servers")
            .await
            .map(|s| view::speed(&s)),
        "payouts" => api
            .typed::<PoolBooks>("/api/v1/payouts")
            .await
            .map(|p| view::payouts(&p)),
        "db" => api
            .typed_any::<Db>("/api/v1/db")
            .await
            .map(|d| view::db(&d, now)),
        "status" => {
            async {
                let (servers, services, health) = tokio::join!(
                    api.typed::<Servers>("/api/v1/servers"),
                    api.typed::<Services>("/api/v1/services"),
                    api.typed_any::<Health>("/api/v1/health")
                );
                Ok(view::status(&servers?, &services?, &health?))
            }
            .await
        }
        "blocks" => match argument.parse::<u32>() {
            Ok(n) if (1..=50).contains(&n) => api
                .typed::<Blocks>(&format!("/api/v1/blocks?limit={n}"))
                .await
                .map(|b| view::blocks(&b, now)),
            _ if argument.is_empty() => api
                .typed::<Blocks>("/api/v1/blocks?limit=5")
                .await
                .map(|b| view::blocks(&b, now)),
            _ => Ok("Usage: /blocks N (1 to 50)".into()),
        },
        "results" => {
            async {
                let (blocks, minutes) = tokio::join!(
                    api.typed::<Blocks>("/api/v1/blocks?limit=1000"),
                    api.typed::<Minutes>("/api/v1/minutes")
                );
                Ok(view::results(&blocks?, &minutes?, now))
            }
            .await
        }
        "workers" => match user_argument(argument) {
            Some(user) => api
                .typed::<UserWorkers>(&format!("/api/v1/users/{user}/workers"))
                .await
                .map(|w| view::workers(user, &w, now, offline_secs)),
            None => Ok("Usage: /workers USER".into()),
        },
        other => Ok(format!("Unknown command /{other}. /help lists them.")),
    };
    reply.unwrap_or_else(|e: anyhow::Error| format!("Cannot answer /{command}: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn commands_are_parsed_with_their_argument_and_without_the_bot_name() {
        assert_eq!(parse("/pool"), Some(("pool".into(), String::new())));
        assert_eq!(
            parse(" /Workers@sluice_bot  alice "),
            Some(("workers".into(), "alice".into()))
        );
        assert_eq!(parse("/blocks 5"), Some(("blocks".into(), "5".into())));
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("/"), None);
    }
}
