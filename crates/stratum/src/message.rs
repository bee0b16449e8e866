//! Lines to typed messages and back: one struct per Stratum method.
//!
//! Requests from miners ([`Request`], a [`Call`] per method) are parsed
//! strictly: a bad parameter yields a [`ParseError`] that still carries the
//! request's id, so the server can answer it with a precise
//! `[20, "…", null]`. Messages from the server ([`ServerMessage`]) are
//! responses or [`Notification`]s. Every type encodes to one JSON line and
//! parses back to itself (property-tested in `tests/round_trip.rs`).

use std::borrow::Cow;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::Id;

/// The common Stratum error codes, understood by miner software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 20: anything else (bad params, bad ntime, bans…); the message says what.
    Other = 20,
    /// 21: the job is unknown or stale.
    JobNotFound = 21,
    /// 22: this share was already submitted.
    Duplicate = 22,
    /// 23: the hash does not meet the share target.
    LowDifficulty = 23,
    /// 24: the worker is not authorized.
    Unauthorized = 24,
    /// 25: the connection has not subscribed.
    NotSubscribed = 25,
}

/// An error as it travels: `[code, "message", null]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StratumError {
    /// The numeric code (not necessarily one of [`ErrorCode`] when a peer sent it).
    pub code: i64,
    /// Human-readable reason.
    pub message: String,
}

impl StratumError {
    /// An error with one of the common codes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        StratumError {
            code: code as i64,
            message: message.into(),
        }
    }

    fn to_value(&self) -> Value {
        json!([self.code, self.message, null])
    }

    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Array(a) if a.len() >= 2 => Some(StratumError {
                code: a[0].as_i64()?,
                message: a[1].as_str()?.to_owned(),
            }),
            // Some pools send {"code":…, "message":…}.
            Value::Object(o) => Some(StratumError {
                code: o.get("code")?.as_i64()?,
                message: o.get("message")?.as_str()?.to_owned(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for StratumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

/// A line that is not a valid request. `id` is the request's id when it could
/// be read (`null` otherwise), so the answer still reaches the right caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ParseError {
    /// The request id to answer, or null.
    pub id: Id,
    /// What to answer.
    pub error: StratumError,
}

fn illegal(id: &Id, message: impl Into<String>) -> ParseError {
    ParseError {
        id: id.clone(),
        error: StratumError::new(ErrorCode::Other, message),
    }
}

/// `mining.subscribe [user_agent?, session_id?]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Miner software, e.g. `cpuminer/2.5.1`.
    pub user_agent: Option<String>,
    /// A session to resume (accepted and ignored).
    pub session_id: Option<String>,
}

/// `mining.authorize [login, password?]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorize {
    /// `user.worker`.
    pub login: String,
    /// May carry `d=<difficulty>` and `md=<minimum>` options.
    pub password: String,
}

/// `mining.configure [[extension…], {param: value}]` (BIP310).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Configure {
    /// `version-rolling`: the mask the miner would like to roll.
    pub version_rolling_mask: Option<u32>,
    /// `version-rolling.min-bit-count`.
    pub version_rolling_min_bit_count: Option<u32>,
    /// `minimum-difficulty.value`.
    pub minimum_difficulty: Option<f64>,
    /// Extensions this server does not know, answered `false`.
    pub unknown: Vec<String>,
}

/// `mining.submit [worker, job_id, extranonce2, ntime, nonce, version_bits?]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The worker name the miner sent (the session's authorized worker counts).
    pub worker: String,
    /// The job id from `mining.notify`.
    pub job_id: String,
    /// Extranonce2 bytes, in coinbase order.
    pub extranonce2: Vec<u8>,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// BIP310 rolled version bits.
    pub version_bits: Option<u32>,
}

/// A request's method and parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `mining.subscribe`.
    Subscribe(Subscribe),
    /// `mining.authorize`.
    Authorize(Authorize),
    /// `mining.configure`.
    Configure(Configure),
    /// `mining.suggest_difficulty [difficulty]`.
    SuggestDifficulty(f64),
    /// `mining.suggest_target [target hex]`.
    SuggestTarget(Target),
    /// `mining.extranonce.subscribe []`.
    ExtranonceSubscribe,
    /// `mining.submit`.
    Submit(Submit),
    /// `agent.get_capabilities [[name…]]`: a farm agent asks which of the
    /// BTCAgent capabilities the pool has ([`crate::agent::capability`]).
    /// BTCAgent and btcpool nest the names in one array; a flat list of
    /// names is read too. Written nested.
    AgentGetCapabilities(Vec<String>),
    /// A method this server does not implement.
    Unknown(String),
}

/// A request from a miner.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response, byte for byte.
    pub id: Id,
    /// What is asked.
    pub call: Call,
}

/// What a miner sends: requests only (Sluice sends miners no requests).
pub type ClientMessage = Request;

fn hex_u32(id: &Id, what: &str, v: Option<&Value>) -> Result<u32, ParseError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| illegal(id, format!("{what} must be a hex string")))?;
    if s.is_empty() || s.len() > 8 {
        return Err(illegal(id, format!("{what} must be 1 to 8 hex digits")));
    }
    u32::from_str_radix(s, 16).map_err(|_| illegal(id, format!("{what} {s:?} is not hex")))
}

/// The names `agent.get_capabilities` asks for: `[["verrol","subres"]]` as
/// BTCAgent sends them (its Go `SetParams(JSONRPCArray{…})` nests the list),
/// or `["verrol","subres"]`. Anything else in the params is ignored; at most
/// 16 names of at most 32 characters are kept.
fn capabilities(params: &[Value]) -> Vec<String> {
    params
        .iter()
        .flat_map(|p| match p {
            Value::Array(names) => names.as_slice(),
            name => std::slice::from_ref(name),
        })
        .filter_map(Value::as_str)
        .take(16)
        .map(|c| c.chars().take(32).collect())
        .collect()
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn positive_number(id: &Id, what: &str, v: Option<&Value>) -> Result<f64, ParseError> {
    // Numbers, or numbers in strings (some firmware quotes them).
    let n = match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(illegal(id, format!("{what} must be a positive number"))),
    }
}

/// The `i`th parameter as a string.
fn str_param<'a>(
    id: &Id,
    params: &'a [Value],
    i: usize,
    what: &str,
) -> Result<&'a str, ParseError> {
    params
        .get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| illegal(id, format!("{what} (parameter {}) must be a string", i + 1)))
}

/// Only a line's id, as written.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// A line's fields, read without building a JSON map (the method is
/// borrowed from the line): a request uses the first three, a server line
/// any. A line this does not take (not an object, a field of the wrong
/// type, a key twice) is read again as a [`Value`] for its precise error.
#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    params: Option<Vec<Value>>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

impl Request {
    /// Parses one line from a miner.
    pub fn parse(line: &str) -> Result<Request, ParseError> {
        let Some(wire) = read_object::<WireLine<'_>>(line) else {
            return Self::parse_value(line);
        };
        let id = wire
            .id
            .map_or_else(Id::null, |raw| Id::from_checked_json(raw.get()));
        let method = match &wire.method {
            Some(m) if !m.is_empty() => m,
            _ => return Err(illegal(&id, "method must be a non-empty string")),
        };
        let params = wire.params.unwrap_or_default();
        let call = Self::parse_call(&id, method, &params)?;
        Ok(Request { id, call })
    }

    /// [`Request::parse`] through a [`Value`]: slower, with an exact error
    /// for every malformed line.
    fn parse_value(line: &str) -> Result<Request, ParseError> {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| illegal(&Id::null(), format!("malformed JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(illegal(&Id::null(), "a request must be a JSON object"));
        };
        // The id's own text if the object gives it once, else as re-written.
        let id = read_object::<IdOnly<'_>>(line)
            .and_then(|o| o.id)
            .map(|raw| Id::from_checked_json(raw.get()))
            .or_else(|| obj.get("id").map(Id::from_value))
            .unwrap_or_default();
        let method = match obj.get("method") {
            Some(Value::String(m)) if !m.is_empty() => m.as_str(),
            _ => return Err(illegal(&id, "method must be a non-empty string")),
        };
        let empty = Vec::new();
        let params = match obj.get("params") {
            Some(Value::Array(p)) => p,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(illegal(&id, "params must be an array")),
        };
        let call = Self::parse_call(&id, method, params)?;
        Ok(Request { id, call })
    }

    fn parse_call(id: &Id, method: &str, params: &[Value]) -> Result<Call, ParseError> {
        Ok(match method {
            "mining.subscribe" => Call::Subscribe(Subscribe {
                user_agent: opt_string(params.first()),
                session_id: opt_string(params.get(1)),
            }),
            "mining.authorize" => Call::Authorize(Authorize {
                login: str_param(id, params, 0, "login")?.to_owned(),
                password: opt_string(params.get(1)).unwrap_or_default(),
            }),
            "mining.configure" => Call::Configure(parse_configure(id, params)?),
            "mining.suggest_difficulty" => {
                Call::SuggestDifficulty(positive_number(id, "difficulty", params.first())?)
            }
            "mining.suggest_target" => {
                let s = str_param(id, params, 0, "target")?;
                let bytes: [u8; 32] = hex::decode(format!("{s:0>64}"))
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| illegal(id, "target must be up to 64 hex digits"))?;
                Call::SuggestTarget(Target::from_be_bytes(bytes))
            }
            "mining.extranonce.subscribe" => Call::ExtranonceSubscribe,
            "mining.submit" => Call::Submit(parse_submit(id, params)?),
            "agent.get_capabilities" => Call::AgentGetCapabilities(capabilities(params)),
            other => Call::Unknown(other.to_owned()),
        })
    }

    /// The JSON line (without the newline).
    pub fn to_line(&self) -> String {
        if let Call::Submit(s) = &self.call {
            return self.submit_line(s);
        }
        let (method, params) = match &self.call {
            Call::Subscribe(s) => {
                let mut p = vec![];
                if let Some(a) = &s.user_agent {
                    p.push(json!(a));
                    if let Some(sid) = &s.session_id {
                        p.push(json!(sid));
                    }
                }
                ("mining.subscribe", Value::Array(p))
            }
            Call::Authorize(a) => ("mining.authorize", json!([a.login, a.password])),
            Call::Configure(c) => ("mining.configure", configure_params(c)),
            Call::SuggestDifficulty(d) => ("mining.suggest_difficulty", json!([number(*d)])),
            Call::SuggestTarget(t) => (
                "mining.suggest_target",
                json!([hex::encode(t.to_be_bytes())]),
            ),
            Call::ExtranonceSubscribe => ("mining.extranonce.subscribe", json!([])),
            Call::Submit(s) => {
                let mut p = vec![
                    json!(s.worker),
                    json!(s.job_id),
                    json!(hex::encode(&s.extranonce2)),
                    json!(format!("{:08x}", s.ntime)),
                    json!(format!("{:08x}", s.nonce)),
                ];
                if let Some(v) = s.version_bits {
                    p.push(json!(format!("{v:08x}")));
                }
                ("mining.submit", Value::Array(p))
            }
            Call::AgentGetCapabilities(c) => ("agent.get_capabilities", json!([c])),
            Call::Unknown(m) => (m.as_str(), json!([])),
        };
        format!(
            "{{\"id\":{},\"method\":{},\"params\":{}}}",
            self.id,
            Value::from(method),
            params
        )
    }
}

impl Request {
    /// A submit's line, written directly: a miner sends little else.
    fn submit_line(&self, s: &Submit) -> String {
        use std::fmt::Write as _;
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(self.id.as_json().as_bytes());
        out.extend_from_slice(b",\"method\":\"mining.submit\",\"params\":[");
        serde_json::to_writer(&mut out, &s.worker).expect("a string always serializes");
        out.push(b',');
        serde_json::to_writer(&mut out, &s.job_id).expect("a string always serializes");
        let mut rest = String::with_capacity(48);
        rest.push_str(",\"");
        rest.push_str(&hex::encode(&s.extranonce2));
        let _ = write!(rest, "\",\"{:08x}\",\"{:08x}\"", s.ntime, s.nonce);
        if let Some(v) = s.version_bits {
            let _ = write!(rest, ",\"{v:08x}\"");
        }
        rest.push_str("]}");
        out.extend_from_slice(rest.as_bytes());
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

fn parse_configure(id: &Id, params: &[Value]) -> Result<Configure, ParseError> {
    let names = params
        .first()
        .and_then(Value::as_array)
        .ok_or_else(|| illegal(id, "mining.configure needs a list of extensions"))?;
    let empty = Map::new();
    let opts = match params.get(1) {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(illegal(id, "mining.configure parameters must be an object")),
    };
    let mut c = Configure::default();
    for name in names {
        let name = name
            .as_str()
            .ok_or_else(|| illegal(id, "extension names must be strings"))?;
        match name {
            "version-rolling" => {
                c.version_rolling_mask = Some(match opts.get("version-rolling.mask") {
                    Some(v) => hex_u32(id, "version-rolling.mask", Some(v))?,
                    None => u32::MAX,
                });
                c.version_rolling_min_bit_count = opts
                    .get("version-rolling.min-bit-count")
                    .and_then(Value::as_u64)
                    .map(|n| n.min(32) as u32);
            }
            "minimum-difficulty" => {
                c.minimum_difficulty = Some(positive_number(
                    id,
                    "minimum-difficulty.value",
                    opts.get("minimum-difficulty.value"),
                )?);
            }
            other => c.unknown.push(other.to_owned()),
        }
    }
    Ok(c)
}

fn configure_params(c: &Configure) -> Value {
    let mut names = vec![];
    let mut opts = Map::new();
    if let Some(mask) = c.version_rolling_mask {
        names.push(json!("version-rolling"));
        opts.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
        if let Some(n) = c.version_rolling_min_bit_count {
            opts.insert("version-rolling.min-bit-count".into(), json!(n));
        }
    }
    if let Some(d) = c.minimum_difficulty {
        names.push(json!("minimum-difficulty"));
        opts.insert("minimum-difficulty.value".into(), number(d));
    }
    names.extend(c.unknown.iter().map(|u| json!(u)));
    json!([names, opts])
}

fn parse_submit(id: &Id, params: &[Value]) -> Result<Submit, ParseError> {
    if params.len() < 5 {
        return Err(illegal(
            id,
            format!(
                "mining.submit takes 5 or 6 parameters, got {}",
                params.len()
            ),
        ));
    }
    let en2 = str_param(id, params, 2, "extranonce2")?;
    let extranonce2 =
        unhex(en2).ok_or_else(|| illegal(id, format!("extranonce2 {en2:?} is not hex")))?;
    let version_bits = match params.get(5) {
        None | Some(Value::Null) => None,
        v => Some(hex_u32(id, "version bits", v)?),
    };
    Ok(Submit {
        worker: str_param(id, params, 0, "worker")?.to_owned(),
        job_id: match &params[1] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(illegal(id, "job id must be a string")),
        },
        extranonce2,
        ntime: hex_u32(id, "ntime", params.get(3))?,
        nonce: hex_u32(id, "nonce", params.get(4))?,
        version_bits,
    })
}

/// A difficulty as JSON: an integer when it is one (older firmware parses
/// only integers), else a float.
fn number(d: f64) -> Value {
    if d.fract() == 0.0 && (1.0..9.0e15).contains(&d) {
        json!(d as u64)
    } else {
        json!(d)
    }
}

/// `mining.notify`: one job.
///
/// Byte orders, as cpuminer and every ASIC expect them:
/// - `prevhash`: the hash's internal bytes with each 4-byte word reversed;
/// - `coinb1`, `coinb2`: raw transaction bytes in order;
/// - merkle branch: each hash in internal byte order (not the reversed display form);
/// - `version`, `nbits`, `ntime`: the 32-bit values as 8 big-endian hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Job id, echoed in `mining.submit`.
    pub job_id: String,
    /// The block this job builds on.
    pub prev_hash: BlockHash,
    /// Coinbase bytes before extranonce1.
    pub coinbase1: Vec<u8>,
    /// Coinbase bytes after extranonce2.
    pub coinbase2: Vec<u8>,
    /// The coinbase's merkle branch.
    pub merkle_branch: Vec<TxMerkleNode>,
    /// Block version before rolling.
    pub version: u32,
    /// Network target.
    pub bits: CompactTarget,
    /// Header time.
    pub time: u32,
    /// Whether earlier jobs must be dropped.
    pub clean: bool,
}

/// `prevhash` as Stratum writes it.
pub fn prev_hash_to_stratum(hash: &BlockHash) -> String {
    let mut b = hash.to_byte_array();
    for word in b.chunks_exact_mut(4) {
        word.reverse();
    }
    hex::encode(b)
}

/// The inverse of [`prev_hash_to_stratum`].
pub fn prev_hash_from_stratum(s: &str) -> Option<BlockHash> {
    let mut b = unhex32(s)?;
    for word in b.chunks_exact_mut(4) {
        word.reverse();
    }
    Some(BlockHash::from_byte_array(b))
}

impl Notify {
    fn params(&self) -> Value {
        let branch: Vec<String> = self
            .merkle_branch
            .iter()
            .map(|n| hex::encode(n.to_byte_array()))
            .collect();
        json!([
            self.job_id,
            prev_hash_to_stratum(&self.prev_hash),
            hex::encode(&self.coinbase1),
            hex::encode(&self.coinbase2),
            branch,
            format!("{:08x}", self.version),
            format!("{:08x}", self.bits.to_consensus()),
            format!("{:08x}", self.time),
            self.clean,
        ])
    }

    fn from_params(p: &[Value]) -> Option<Notify> {
        let hex_field = |i: usize| -> Option<Vec<u8>> { unhex(p.get(i)?.as_str()?) };
        let word = |i: usize| -> Option<u32> { u32::from_str_radix(p.get(i)?.as_str()?, 16).ok() };
        let merkle_branch = p
            .get(4)?
            .as_array()?
            .iter()
            .map(|h| Some(TxMerkleNode::from_byte_array(unhex32(h.as_str()?)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Notify {
            job_id: p.first()?.as_str()?.to_owned(),
            prev_hash: prev_hash_from_stratum(p.get(1)?.as_str()?)?,
            coinbase1: hex_field(2)?,
            coinbase2: hex_field(3)?,
            merkle_branch,
            version: word(5)?,
            bits: CompactTarget::from_consensus(word(6)?),
            time: word(7)?,
            clean: p.get(8)?.as_bool()?,
        })
    }
}

/// A message the server sends without being asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// `mining.set_difficulty [difficulty]`: for jobs sent after it.
    SetDifficulty(f64),
    /// `mining.notify`.
    Notify(Notify),
    /// `mining.set_version_mask [mask hex]`.
    SetVersionMask(u32),
    /// `client.reconnect [host?, port?, wait_secs?]`: come back (elsewhere).
    Reconnect {
        /// Where to reconnect; the same server when absent.
        host: Option<String>,
        /// Port, with `host`.
        port: Option<u16>,
        /// Seconds to wait first.
        wait_secs: Option<u32>,
    },
    /// `mining.set_extranonce [extranonce1, extranonce2_size]`.
    SetExtranonce {
        /// New extranonce1.
        extranonce1: Vec<u8>,
        /// New extranonce2 size.
        extranonce2_size: usize,
    },
}

impl Notification {
    fn method_params(&self) -> (&'static str, Value) {
        match self {
            Notification::SetDifficulty(d) => ("mining.set_difficulty", json!([number(*d)])),
            Notification::Notify(n) => ("mining.notify", n.params()),
            Notification::SetVersionMask(m) => {
                ("mining.set_version_mask", json!([format!("{m:08x}")]))
            }
            Notification::Reconnect {
                host,
                port,
                wait_secs,
            } => {
                let mut p = vec![];
                if let Some(h) = host {
                    p.push(json!(h));
                    p.push(json!(port.unwrap_or(3333)));
                    if let Some(w) = wait_secs {
                        p.push(json!(w));
                    }
                }
                ("client.reconnect", Value::Array(p))
            }
            Notification::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => (
                "mining.set_extranonce",
                json!([hex::encode(extranonce1), extranonce2_size]),
            ),
        }
    }

    fn parse(method: &str, p: &[Value]) -> Option<Notification> {
        Some(match method {
            "mining.set_difficulty" => Notification::SetDifficulty(p.first()?.as_f64()?),
            "mining.notify" => Notification::Notify(Notify::from_params(p)?),
            "mining.set_version_mask" => {
                Notification::SetVersionMask(u32::from_str_radix(p.first()?.as_str()?, 16).ok()?)
            }
            "client.reconnect" => Notification::Reconnect {
                host: opt_string(p.first()),
                port: p.get(1).and_then(|v| match v {
                    Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                }),
                wait_secs: p.get(2).and_then(Value::as_u64).map(|w| w as u32),
            },
            "mining.set_extranonce" => Notification::SetExtranonce {
                extranonce1: hex::decode(p.first()?.as_str()?).ok()?,
                extranonce2_size: p.get(1)?.as_u64()? as usize,
            },
            _ => return None,
        })
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id.
    pub id: Id,
    /// Its result, or why it failed.
    pub result: Result<Value, StratumError>,
}

impl Response {
    /// `result: true`.
    pub fn ok(id: Id) -> Self {
        Response {
            id,
            result: Ok(Value::Bool(true)),
        }
    }

    /// An error answer.
    pub fn error(id: Id, code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            id,
            result: Err(StratumError::new(code, message)),
        }
    }
}

/// The result of `mining.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// Subscription id (the extranonce1 in hex, as btcpool sends it).
    pub subscription_id: String,
    /// The session's extranonce1.
    pub extranonce1: Vec<u8>,
    /// Bytes of extranonce2 the miner must send.
    pub extranonce2_size: usize,
}

impl Subscribed {
    /// As the `result` value.
    pub fn to_value(&self) -> Value {
        json!([
            [
                ["mining.set_difficulty", self.subscription_id],
                ["mining.notify", self.subscription_id]
            ],
            hex::encode(&self.extranonce1),
            self.extranonce2_size
        ])
    }

    /// From a `result` value.
    pub fn from_value(v: &Value) -> Option<Self> {
        let a = v.as_array()?;
        let subscription_id = a
            .first()?
            .as_array()?
            .iter()
            .filter_map(|pair| pair.as_array()?.get(1)?.as_str())
            .next()
            .unwrap_or_default()
            .to_owned();
        Some(Subscribed {
            subscription_id,
            extranonce1: hex::decode(a.get(1)?.as_str()?).ok()?,
            extranonce2_size: a.get(2)?.as_u64()? as usize,
        })
    }
}

/// The result of `mining.configure`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configured {
    /// The granted version-rolling mask, if version rolling was asked.
    pub version_rolling: Option<u32>,
    /// Whether a minimum difficulty was accepted, if asked.
    pub minimum_difficulty: Option<bool>,
    /// Extensions refused.
    pub unknown: Vec<String>,
}

impl Configured {
    /// As the `result` value.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(mask) = self.version_rolling {
            m.insert("version-rolling".into(), json!(true));
            m.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
        }
        if let Some(ok) = self.minimum_difficulty {
            m.insert("minimum-difficulty".into(), json!(ok));
        }
        for u in &self.unknown {
            m.insert(u.clone(), json!(false));
        }
        Value::Object(m)
    }

    /// From a `result` value.
    pub fn from_value(v: &Value) -> Option<Self> {
        let m = v.as_object()?;
        let mut c = Configured::default();
        for (k, v) in m {
            match k.as_str() {
                "version-rolling" => {}
                "version-rolling.mask" => {
                    c.version_rolling = u32::from_str_radix(v.as_str()?, 16).ok();
                }
                "minimum-difficulty" => c.minimum_difficulty = v.as_bool(),
                other if !other.contains('.') => c.unknown.push(other.to_owned()),
                _ => {}
            }
        }
        if m.get("version-rolling").and_then(Value::as_bool) != Some(true) {
            c.version_rolling = None;
        }
        Some(c)
    }
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// An answer.
    Response(Response),
    /// A notification.
    Notification(Notification),
}

/// A server line the client could not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unintelligible server message: {0}")]
pub struct ServerParseError(pub String);

impl ServerMessage {
    /// The JSON line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            // Written field by field, in the order pools send them: no map
            // is built for the line every share is answered with.
            ServerMessage::Response(r) => {
                let mut out = Vec::with_capacity(48);
                out.extend_from_slice(b"{\"id\":");
                out.extend_from_slice(r.id.as_json().as_bytes());
                match &r.result {
                    Ok(v) => {
                        out.extend_from_slice(b",\"result\":");
                        write_json(&mut out, v);
                        out.extend_from_slice(b",\"error\":null}");
                    }
                    Err(e) => {
                        out.extend_from_slice(b",\"result\":null,\"error\":");
                        write_json(&mut out, &e.to_value());
                        out.push(b'}');
                    }
                }
                String::from_utf8(out).expect("serde_json writes UTF-8")
            }
            ServerMessage::Notification(n) => {
                let (method, params) = n.method_params();
                json!({"id": null, "method": method, "params": params}).to_string()
            }
        }
    }

    /// Parses one line from the server.
    pub fn parse(line: &str) -> Result<ServerMessage, ServerParseError> {
        let bad = || ServerParseError(line.chars().take(200).collect());
        let Some(wire) = read_object::<WireLine<'_>>(line) else {
            return Self::parse_value(line);
        };
        if let Some(method) = &wire.method {
            let params = wire.params.ok_or_else(bad)?;
            return Notification::parse(method, &params)
                .map(ServerMessage::Notification)
                .ok_or_else(bad);
        }
        let result = match wire.error {
            Some(e) => Err(StratumError::from_value(&e).ok_or_else(bad)?),
            None => Ok(wire.result.unwrap_or(Value::Null)),
        };
        Ok(ServerMessage::Response(Response {
            id: wire
                .id
                .map_or_else(Id::null, |raw| Id::from_checked_json(raw.get())),
            result,
        }))
    }

    /// [`ServerMessage::parse`] through a [`Value`], for lines the typed
    /// read does not take.
    fn parse_value(line: &str) -> Result<ServerMessage, ServerParseError> {
        let bad = || ServerParseError(line.chars().take(200).collect());
        let v: Value = serde_json::from_str(line).map_err(|_| bad())?;
        let o = v.as_object().ok_or_else(bad)?;
        if let Some(method) = o.get("method").and_then(Value::as_str) {
            let params = o.get("params").and_then(Value::as_array).ok_or_else(bad)?;
            return Notification::parse(method, params)
                .map(ServerMessage::Notification)
                .ok_or_else(bad);
        }
        let id = o.get("id").map(Id::from_value).unwrap_or_default();
        let result = match o.get("error") {
            Some(e) if !e.is_null() => Err(StratumError::from_value(e).ok_or_else(bad)?),
            _ => Ok(o.get("result").cloned().unwrap_or(Value::Null)),
        };
        Ok(ServerMessage::Response(Response { id, result }))
    }
}

/// Hex to bytes without the generic iterator `hex::decode` collects through
/// (notifies carry kilobytes of it; every submit some).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; s.len() / 2];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// 64 hex digits to 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// `line` read as the struct `T` if it is a JSON object (serde would also
/// fill a struct from an array, by position).
fn read_object<'a, T: Deserialize<'a>>(line: &'a str) -> Option<T> {
    if !line.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// Appends `v` as JSON.
fn write_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Null => out.extend_from_slice(b"null"),
        v => serde_json::to_writer(out, v).expect("a Value always serializes"),
    }
}

impl From<Response> for ServerMessage {
    fn from(r: Response) -> Self {
        ServerMessage::Response(r)
    }
}

impl From<Notification> for ServerMessage {
    fn from(n: Notification) -> Self {
        ServerMessage::Notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(line: &str) -> Call {
        Request::parse(line).expect("parses").call
    }

    fn error(line: &str) -> ParseError {
        Request::parse(line).expect_err("refused")
    }

    /// The lines btccom's BTCAgent writes: Go's `json.Marshal` of its
    /// request struct (`id`, `method`, `params`) whose params were set with
    /// `SetParams(JSONRPCArray{CapVersionRolling, CapSubmitResponse})`, so the
    /// list is nested; "conn_test" probes, "caps" and "caps_again" (after
    /// authorize) follow, with or without subres as configured.
    #[test]
    fn btcagent_capability_requests_read_every_name() {
        let both = vec!["verrol".to_owned(), "subres".to_owned()];
        for id in ["conn_test", "caps", "caps_again"] {
            let line = format!(
                r#"{{"id":"{id}","method":"agent.get_capabilities","params":[["verrol","subres"]]}}"#
            );
            assert_eq!(call(&line), Call::AgentGetCapabilities(both.clone()));
        }
        assert_eq!(
            call(r#"{"id":"caps","method":"agent.get_capabilities","params":[["verrol"]]}"#),
            Call::AgentGetCapabilities(vec!["verrol".into()])
        );
        // A flat list, as Sluice's agent wrote it before, still reads.
        assert_eq!(
            call(r#"{"id":1,"method":"agent.get_capabilities","params":["verrol","subres"]}"#),
            Call::AgentGetCapabilities(both.clone())
        );
        assert_eq!(
            call(r#"{"id":1,"method":"agent.get_capabilities","params":[[1,{"a":"b"}],"verrol"]}"#),
            Call::AgentGetCapabilities(vec!["verrol".into()])
        );
        // Written as BTCAgent writes it, so btcpool's sserver reads it too.
        let asked = Request {
            id: Id::from_value(&json!("caps")),
            call: Call::AgentGetCapabilities(both),
        };
        assert_eq!(
            asked.to_line(),
            r#"{"id":"caps","method":"agent.get_capabilities","params":[["verrol","subres"]]}"#
        );
    }

    #[test]
    fn cpuminer_requests_parse() {
        assert_eq!(
            call(r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}"#),
            Call::Subscribe(Subscribe {
                user_agent: Some("cpuminer/2.5.1".into()),
                session_id: None
            })
        );
        assert_eq!(
            call(r#"{"id":2,"method":"mining.authorize","params":["alice.rig1","d=64"]}"#),
            Call::Authorize(Authorize {
                login: "alice.rig1".into(),
                password: "d=64".into()
            })
        );
        let Call::Submit(s) = call(
            r#"{"id":4,"method":"mining.submit","params":["alice.rig1","1a","0000000000000001","5f5e1000","deadbeef","00002000"]}"#,
        ) else {
            panic!("not a submit")
        };
        assert_eq!(s.extranonce2, vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((s.ntime, s.nonce), (0x5f5e_1000, 0xdead_beef));
        assert_eq!(s.version_bits, Some(0x2000));
    }

    #[test]
    fn bip310_configure_parses() {
        let c = call(
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty","subscribe-extranonce"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2,"minimum-difficulty.value":2048}]}"#,
        );
        assert_eq!(
            c,
            Call::Configure(Configure {
                version_rolling_mask: Some(0x1fff_e000),
                version_rolling_min_bit_count: Some(2),
                minimum_difficulty: Some(2048.0),
                unknown: vec!["subscribe-extranonce".into()],
            })
        );
    }

    #[test]
    fn bad_requests_keep_their_id_and_say_why() {
        let e = error(r#"{"id":7,"method":"mining.submit","params":["w","1","00","x","0"]}"#);
        assert_eq!(e.id, Id::number(7));
        assert_eq!(e.error.code, 20);
        assert!(e.error.message.contains("ntime"), "{}", e.error.message);
        let e = error(r#"{"id":"a","method":"mining.submit","params":["w"]}"#);
        assert_eq!(e.id.as_json(), r#""a""#);
        assert!(e.error.message.contains("5 or 6"), "{}", e.error.message);
        assert!(
            error("not json")
                .error
                .message
                .starts_with("malformed JSON")
        );
        assert_eq!(error("[1,2]").id, Id::null());
        assert!(
            error(r#"{"id":1,"params":[]}"#)
                .error
                .message
                .contains("method")
        );
        assert!(
            error(r#"{"id":1,"method":"mining.suggest_difficulty","params":[-1]}"#)
                .error
                .message
                .contains("positive")
        );
        assert_eq!(
            call(r#"{"id":1,"method":"mining.get_transactions","params":[]}"#),
            Call::Unknown("mining.get_transactions".into())
        );
    }

    #[test]
    fn any_id_is_echoed_byte_for_byte() {
        for id in [
            "123456789012345678901234567890123",
            "-1.50e+300",
            r#""caf\u00e9 \"x\"""#,
            "null",
            r#"[1, {"a": [true]}]"#,
            "18446744073709551616",
        ] {
            for line in [
                format!(r#"{{"id": {id}, "method": "mining.subscribe", "params": []}}"#),
                // A bad request keeps its id too, on the fast and the slow path.
                format!(r#"{{"id": {id}, "method": "mining.submit", "params": ["w"]}}"#),
                format!(r#"{{"method": 5, "id": {id}}}"#),
            ] {
                let id_back = match Request::parse(&line) {
                    Ok(r) => r.id,
                    Err(e) => e.id,
                };
                let answer = ServerMessage::from(Response::ok(id_back)).to_line();
                assert_eq!(
                    answer,
                    format!(r#"{{"id":{id},"result":true,"error":null}}"#),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn errors_have_the_common_shape() {
        let line = ServerMessage::from(Response::error(
            Id::number(3),
            ErrorCode::Duplicate,
            "Duplicate share",
        ))
        .to_line();
        assert_eq!(
            line,
            r#"{"id":3,"result":null,"error":[22,"Duplicate share",null]}"#
        );
        let ok = ServerMessage::from(Response::ok(Id::from_value(&json!("a\"b")))).to_line();
        assert_eq!(ok, r#"{"id":"a\"b","result":true,"error":null}"#);
    }

    #[test]
    fn unusual_requests_get_the_exact_error_the_slow_path_gives() {
        // Each of these fails the borrowed fast read and is parsed again.
        let e = error(r#"[1, "mining.subscribe"]"#);
        assert_eq!(e.error.message, "a request must be a JSON object");
        let e = error(r#"{"id":7,"method":5,"params":[]}"#);
        assert_eq!(
            (e.id, e.error.message.as_str()),
            (Id::number(7), "method must be a non-empty string")
        );
        let e = error(r#"{"id":7,"method":"mining.subscribe","params":{}}"#);
        assert_eq!(e.error.message, "params must be an array");
        // A key twice: the last one counts, as with any JSON object.
        assert_eq!(
            call(r#"{"id":1,"method":"x","method":"mining.extranonce.subscribe","params":[]}"#),
            Call::ExtranonceSubscribe
        );
        // Escapes in the method name are read like any string.
        assert_eq!(
            call(r#"{"id":1,"method":"mining.extranonce\u002esubscribe"}"#),
            Call::ExtranonceSubscribe
        );
    }

    #[test]
    fn prevhash_words_are_reversed() {
        let display = "000000000000000000076b3fa5fc8b0dcbd8b1b31e4d5cb09eb7ab8b1ba51c9c";
        let hash: BlockHash = display.parse().expect("hash");
        let s = prev_hash_to_stratum(&hash);
        // The internal bytes are the display reversed; each word is then flipped back.
        assert_eq!(&s[56..], "00000000");
        assert_eq!(prev_hash_from_stratum(&s), Some(hash));
    }
}
