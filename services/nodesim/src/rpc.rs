//! JSON-RPC over HTTP as Bitcoin Core serves it (`httprpc.cpp`): POST /,
//! basic auth (a configured user or the cookie), single or batch requests,
//! `{"result", "error", "id"}` replies. Legacy (1.0) requests get Core's HTTP
//! status for errors (404 method not found, 500 otherwise); JSON-RPC 2.0
//! requests get 200 with the error in the body, as Core 28+ does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use sluice_service::Context;

use crate::Node;

mod methods;
mod wallet;

/// Core's error codes (`rpc/protocol.h`).
pub(crate) mod code {
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const MISC_ERROR: i64 = -1;
    pub(crate) const TYPE_ERROR: i64 = -3;
    pub(crate) const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub(crate) const INVALID_PARAMETER: i64 = -8;
    pub(crate) const DESERIALIZATION_ERROR: i64 = -22;
    pub(crate) const WALLET_ERROR: i64 = -4;
    pub(crate) const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    pub(crate) const WALLET_UNLOCK_NEEDED: i64 = -13;
    pub(crate) const WALLET_PASSPHRASE_INCORRECT: i64 = -14;
    pub(crate) const WALLET_WRONG_ENC_STATE: i64 = -15;
    pub(crate) const VERIFY_ERROR: i64 = -25;
    pub(crate) const VERIFY_REJECTED: i64 = -26;
    pub(crate) const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
}

/// An RPC error: Core's code and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// The accepted `Authorization: Basic …` values.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    accepted: Vec<String>,
}

impl Auth {
    /// From a configured user and/or a cookie file to write (like Core's
    /// `<datadir>/regtest/.cookie`, `__cookie__:<64 hex>`).
    pub(crate) fn new(user: &str, password: &str, cookie_file: &Path) -> anyhow::Result<Self> {
        let encode = |creds: &str| base64::engine::general_purpose::STANDARD.encode(creds);
        let mut accepted = Vec::new();
        if !user.is_empty() {
            accepted.push(encode(&format!("{user}:{password}")));
        }
        if !cookie_file.as_os_str().is_empty() {
            let secret: [u8; 32] = rand::random();
            let cookie = format!("__cookie__:{}", hex::encode(secret));
            if let Some(dir) = cookie_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(cookie_file, &cookie)
                .map_err(|e| anyhow::anyhow!("writing cookie {}: {e}", cookie_file.display()))?;
            accepted.push(encode(&cookie));
        }
        Ok(Auth { accepted })
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        value
            .strip_prefix("Basic ")
            .is_some_and(|token| self.accepted.iter().any(|a| a == token.trim()))
    }
}

#[derive(Clone)]
struct RpcState {
    node: Arc<Node>,
    auth: Arc<Auth>,
}

/// Binds `addr` and serves JSON-RPC until shutdown; returns the bound address.
pub(crate) async fn start(
    addr: SocketAddr,
    node: Arc<Node>,
    auth: Auth,
    ctx: &Context,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding RPC {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/", axum::routing::post(serve))
        .route("/wallet/{name}", axum::routing::post(serve))
        .with_state(RpcState {
            node,
            auth: Arc::new(auth),
        });
    let token = ctx.shutdown.token().clone();
    ctx.shutdown.tracker().spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "RPC server failed");
        }
    });
    Ok(bound)
}

async fn serve(State(state): State<RpcState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.auth.allows(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"jsonrpc\"")],
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let reply = reply(
                Value::Null,
                Err(RpcError::new(code::PARSE_ERROR, "Parse error")),
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(reply)).into_response();
        }
    };
    match request {
        Value::Array(batch) => {
            let mut replies = Vec::with_capacity(batch.len());
            for call in batch {
                replies.push(one(&state.node, call).await.1);
            }
            (StatusCode::OK, axum::Json(Value::Array(replies))).into_response()
        }
        call => {
            let (status, reply) = one(&state.node, call).await;
            (status, axum::Json(reply)).into_response()
        }
    }
}

/// Handles one call; the HTTP status Core would give it alone.
async fn one(node: &Arc<Node>, call: Value) -> (StatusCode, Value) {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let v2 = call.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        let e = RpcError::new(code::INVALID_REQUEST, "Method must be a string");
        return (StatusCode::BAD_REQUEST, reply(id, Err(e)));
    };
    let params = match call.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            let e = RpcError::new(code::INVALID_REQUEST, "Params must be an array");
            return (StatusCode::BAD_REQUEST, reply(id, Err(e)));
        }
    };
    let result = methods::dispatch(node, method, &params).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(_) if v2 => StatusCode::OK,
        Err(e) if e.code == code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        Err(e) if e.code == code::INVALID_REQUEST => StatusCode::BAD_REQUEST,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, reply(id, result))
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "result": result, "error": null, "id": id }),
        Err(e) => {
            json!({ "result": null, "error": { "code": e.code, "message": e.message }, "id": id })
        }
    }
}
