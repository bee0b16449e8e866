//! A local fake of Telegram's Bot API over HTTP, for the bot's tests: the
//! `/bot<token>/<method>` routes teloxide calls (`getMe`, `getUpdates`,
//! `sendMessage`), updates the test queues, every message the bot sends
//! kept, and `sendMessage` answered 429 ("retry after 1") on demand.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    token: String,
    updates: VecDeque<Value>,
    next_update: i64,
    sent: Vec<(i64, String)>,
    rate_limit_next: u32,
    calls: Vec<String>,
}

/// The fake; cheap to clone.
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    port: u16,
}

impl FakeTelegram {
    /// Serves the bot `token` on 127.0.0.1:`port` from now on.
    pub async fn start(token: &str, port: u16) -> FakeTelegram {
        let fake = FakeTelegram {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_owned(),
                ..Inner::default()
            })),
            port,
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the fake Telegram's port is free");
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .with_state(fake.inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// A fake that is not serving yet (Telegram away): `serve` starts it.
    pub fn unstarted(token: &str, port: u16) -> FakeTelegram {
        FakeTelegram {
            inner: Arc::new(Mutex::new(Inner {
                token: token.to_owned(),
                ..Inner::default()
            })),
            port,
        }
    }

    /// Starts serving an `unstarted` fake.
    pub async fn serve(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the fake Telegram's port is free");
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .with_state(self.inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    /// The Bot API's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A user in `chat` writes `text`.
    pub fn say(&self, chat: i64, text: &str) {
        let mut t = self.lock();
        t.next_update += 1;
        let id = t.next_update;
        t.updates.push_back(json!({
            "update_id": id,
            "message": {
                "message_id": id, "date": 1_800_000_000,
                "chat": {"id": chat, "type": "private", "first_name": "op"},
                "from": {"id": chat, "is_bot": false, "first_name": "op"},
                "text": text,
            }
        }));
    }

    /// The next `n` sendMessage calls are answered 429.
    pub fn rate_limit_next(&self, n: u32) {
        self.lock().rate_limit_next = n;
    }

    /// Every (chat, text) the bot sent, in order.
    pub fn sent(&self) -> Vec<(i64, String)> {
        self.lock().sent.clone()
    }

    /// The first message to satisfy `pred`, if sent.
    pub fn find(&self, pred: impl Fn(i64, &str) -> bool) -> Option<(i64, String)> {
        self.lock().sent.iter().find(|(c, t)| pred(*c, t)).cloned()
    }

    /// How many messages to `chat` start with `prefix`.
    pub fn count(&self, chat: i64, prefix: &str) -> usize {
        self.lock()
            .sent
            .iter()
            .filter(|(c, t)| *c == chat && t.starts_with(prefix))
            .count()
    }

    /// The Bot API methods called (lower case), in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

async fn method(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, name)): Path<(String, String)>,
    body: String,
) -> axum::Json<Value> {
    let args: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut t = inner.lock().unwrap_or_else(PoisonError::into_inner);
    if bot != format!("bot{}", t.token) {
        return axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
    }
    // Method names are case-insensitive; teloxide capitalises them.
    let name = name.to_ascii_lowercase();
    t.calls.push(name.clone());
    let result = match name.as_str() {
        "getme" => {
            json!({"id": 1, "is_bot": true, "first_name": "sluice", "username": "sluice_bot"})
        }
        "getupdates" => {
            let offset = args["offset"].as_i64().unwrap_or(0);
            t.updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            json!(t.updates.iter().cloned().collect::<Vec<_>>())
        }
        "sendmessage" => {
            if t.rate_limit_next > 0 {
                t.rate_limit_next -= 1;
                return axum::Json(json!({
                    "ok": false, "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                }));
            }
            let chat = args["chat_id"].as_i64().unwrap_or(0);
            let text = args["text"].as_str().unwrap_or("").to_owned();
            t.sent.push((chat, text.clone()));
            json!({
                "message_id": t.sent.len(), "date": 1_800_000_000,
                "chat": {"id": chat, "type": "private", "first_name": "op"},
                "text": text,
            })
        }
        _ => {
            return axum::Json(json!({
                "ok": false, "error_code": 404, "description": "Not Found: method not faked",
            }));
        }
    };
    axum::Json(json!({"ok": true, "result": result}))
}
