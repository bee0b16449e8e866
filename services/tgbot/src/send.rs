//! The one way out to Telegram: within its rate limits (a message a second
//! per chat, 30 a second overall by default), split at 4,096 characters, and
//! retried until it is taken: `RetryAfter` waits what Telegram asks, a
//! network or server failure is retried with backoff (the message is kept,
//! `/health` says Telegram is away), a chat that moved is followed. Only what
//! Telegram refuses for good (a chat that blocked the bot, a bad request) is
//! dropped, with an error in the log and a metric.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sluice_service::{Backoff, Health, Metrics};
use teloxide::RequestError;
use teloxide::prelude::Requester;
use teloxide::types::ChatId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::TelegramConfig;

/// Telegram's longest message.
const MAX_CHARS: usize = 4096;

/// A message to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) chat: ChatId,
    pub(crate) text: String,
}

impl Outgoing {
    pub(crate) fn new(chat: ChatId, text: String) -> Self {
        Outgoing { chat, text }
    }
}

/// The spacing the limits impose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    per_chat: Duration,
    overall: Duration,
}

impl Limits {
    pub(crate) fn of(config: &TelegramConfig) -> Self {
        Limits {
            per_chat: Duration::from_secs_f64(1.0 / config.per_chat_per_sec),
            overall: Duration::from_secs_f64(1.0 / config.overall_per_sec),
        }
    }
}

/// Splits `text` into messages Telegram takes, at line ends where it can.
pub(crate) fn split(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line;
        while !line.is_empty() {
            let room = MAX_CHARS - current.chars().count();
            let take = line.chars().count().min(room);
            if take < line.chars().count() && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            let end = line.char_indices().nth(take).map_or(line.len(), |(i, _)| i);
            current.push_str(&line[..end]);
            line = &line[end..];
            if current.chars().count() == MAX_CHARS {
                parts.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

#[derive(Clone, Default)]
struct SendMetrics {
    sent: Counter,
    retries: Counter,
    dropped: Counter,
}

/// Sends what arrives on `queue` until `token` is cancelled.
pub(crate) async fn run(
    bot: teloxide::Bot,
    mut queue: mpsc::Receiver<Outgoing>,
    limits: Limits,
    health: Health,
    metrics: Metrics,
    token: CancellationToken,
) {
    let m = SendMetrics::default();
    metrics.register(|r| {
        r.register(
            "tgbot_messages_sent",
            "Messages Telegram took",
            m.sent.clone(),
        );
        r.register(
            "tgbot_send_retries",
            "Sends tried again (rate limited, Telegram away)",
            m.retries.clone(),
        );
        r.register(
            "tgbot_messages_dropped",
            "Messages Telegram refused for good (blocked bot, bad request)",
            m.dropped.clone(),
        );
    });
    let mut next_for_chat: HashMap<ChatId, Instant> = HashMap::new();
    let mut next_any = Instant::now();
    loop {
        let message = tokio::select! {
            () = token.cancelled() => return,
            m = queue.recv() => match m { Some(m) => m, None => return },
        };
        for text in split(&message.text) {
            let mut chat = message.chat;
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
            loop {
                let at = next_for_chat
                    .get(&chat)
                    .copied()
                    .unwrap_or(next_any)
                    .max(next_any);
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep_until(at) => {}
                }
                let now = Instant::now();
                next_any = now + limits.overall;
                next_for_chat.insert(chat, now + limits.per_chat);
                let sent = tokio::select! {
                    () = token.cancelled() => return,
                    r = bot.send_message(chat, text.clone()) => r,
                };
                match sent {
                    Ok(_) => {
                        m.sent.inc();
                        health.set("telegram_send", true, "ok");
                        break;
                    }
                    Err(RequestError::RetryAfter(wait)) => {
                        m.retries.inc();
                        tracing::warn!(chat = chat.0, wait = ?wait.duration(), "Telegram rate-limits us; waiting");
                        next_for_chat.insert(chat, Instant::now() + wait.duration());
                    }
                    Err(RequestError::MigrateToChatId(to)) => {
                        tracing::warn!(from = chat.0, to = to.0, "chat moved; following it");
                        chat = to;
                    }
                    Err(RequestError::Api(error)) => {
                        m.dropped.inc();
                        tracing::error!(chat = chat.0, %error, "Telegram refused the message; dropped");
                        break;
                    }
                    Err(error) => {
                        m.retries.inc();
                        health.set("telegram_send", false, format!("sendMessage: {error}"));
                        tracing::warn!(chat = chat.0, %error, retry_in = ?backoff.delay(), "message not sent yet; retrying");
                        if !backoff.wait(&token).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_CHARS, split};

    #[test]
    fn long_texts_split_at_line_ends_and_within_the_limit() {
        assert_eq!(split("short"), vec!["short".to_owned()]);
        let line = format!("{}\n", "x".repeat(1000));
        let text = line.repeat(9);
        let parts = split(&text);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_CHARS));
        assert!(
            parts.iter().all(|p| p.ends_with('\n')),
            "split at line ends"
        );
        assert_eq!(parts.concat(), text);
        // One line longer than a message is cut (multi-byte safe).
        let long = "é".repeat(MAX_CHARS + 10);
        let parts = split(&long);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), MAX_CHARS);
        assert_eq!(parts.concat(), long);
    }
}
