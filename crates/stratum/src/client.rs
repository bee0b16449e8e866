//! The miner's view of a connection, for the simulator and the tests.
//!
//! [`ClientSession`] numbers requests, remembers what each outstanding id was
//! for, and turns server lines into [`ClientEvent`]s. [`header`] builds the
//! 80-byte header from a `mining.notify` exactly as cpuminer does, so a test
//! that mines through it proves the server's byte orders against the way real
//! miners read them.

use std::collections::HashMap;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, HashEngine, sha256d};
use bitcoin::{TxMerkleNode, Txid};
use serde_json::Value;

use crate::Id;
use crate::message::{
    Authorize, Call, Configure, Configured, Notification, Notify, Request, Response, ServerMessage,
    StratumError, Submit, Subscribe, Subscribed,
};

/// What an answer or notification meant to the miner.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `mining.subscribe` answered.
    Subscribed(Subscribed),
    /// `mining.authorize` answered.
    Authorized(Result<(), StratumError>),
    /// `mining.configure` answered.
    Configured(Configured),
    /// A share's verdict; `tag` is what the caller gave [`ClientSession::submit`].
    ShareResult {
        /// The caller's tag for the share.
        tag: u64,
        /// Accepted, or why not.
        result: Result<(), StratumError>,
    },
    /// Any other answer.
    Answer(Response),
    /// A new job (already stored as [`ClientSession::job`]).
    Job(Notify),
    /// A new difficulty for the next jobs.
    Difficulty(f64),
    /// A notification other than a job or a difficulty.
    Notification(Notification),
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Subscribe,
    Authorize,
    Configure,
    Submit(u64),
    Other,
}

/// A miner's protocol state.
#[derive(Debug, Default)]
pub struct ClientSession {
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// From the subscribe answer.
    pub subscribed: Option<Subscribed>,
    /// Whether authorize succeeded.
    pub authorized: bool,
    /// The latest difficulty.
    pub difficulty: Option<f64>,
    /// The granted version-rolling mask.
    pub version_mask: Option<u32>,
    /// The latest job.
    pub job: Option<Notify>,
}

impl ClientSession {
    /// A fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    fn request(&mut self, call: Call, pending: Pending) -> Request {
        self.next_id += 1;
        self.pending.insert(self.next_id, pending);
        Request {
            id: Id::number(self.next_id),
            call,
        }
    }

    /// `mining.subscribe`.
    pub fn subscribe(&mut self, user_agent: &str) -> Request {
        let call = Call::Subscribe(Subscribe {
            user_agent: Some(user_agent.to_owned()),
            session_id: None,
        });
        self.request(call, Pending::Subscribe)
    }

    /// `mining.subscribe` with all its parameters (a session to resume).
    pub fn subscribe_with(&mut self, subscribe: Subscribe) -> Request {
        self.request(Call::Subscribe(subscribe), Pending::Subscribe)
    }

    /// `mining.authorize`.
    pub fn authorize(&mut self, login: &str, password: &str) -> Request {
        let call = Call::Authorize(Authorize {
            login: login.to_owned(),
            password: password.to_owned(),
        });
        self.request(call, Pending::Authorize)
    }

    /// `mining.configure`.
    pub fn configure(&mut self, configure: Configure) -> Request {
        self.request(Call::Configure(configure), Pending::Configure)
    }

    /// `mining.submit`; its verdict comes back as [`ClientEvent::ShareResult`] with `tag`.
    pub fn submit(&mut self, submit: Submit, tag: u64) -> Request {
        self.request(Call::Submit(submit), Pending::Submit(tag))
    }

    /// Any other request.
    pub fn other(&mut self, call: Call) -> Request {
        self.request(call, Pending::Other)
    }

    /// Requests not answered yet.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Digests one message from the server.
    pub fn on_message(&mut self, message: ServerMessage) -> ClientEvent {
        match message {
            ServerMessage::Notification(n) => self.on_notification(n),
            ServerMessage::Response(r) => self.on_response(r),
        }
    }

    fn on_notification(&mut self, n: Notification) -> ClientEvent {
        match n {
            Notification::Notify(job) => {
                self.job = Some(job.clone());
                ClientEvent::Job(job)
            }
            Notification::SetDifficulty(d) => {
                self.difficulty = Some(d);
                ClientEvent::Difficulty(d)
            }
            Notification::SetVersionMask(m) => {
                self.version_mask = Some(m);
                ClientEvent::Notification(n)
            }
            other => ClientEvent::Notification(other),
        }
    }

    fn on_response(&mut self, r: Response) -> ClientEvent {
        let pending =
            r.id.as_u64()
                .and_then(|id| self.pending.remove(&id))
                .unwrap_or(Pending::Other);
        let ok = |r: &Response| r.result.clone().map(|_| ());
        match pending {
            Pending::Subscribe => match r.result.as_ref().ok().and_then(Subscribed::from_value) {
                Some(s) => {
                    self.subscribed = Some(s.clone());
                    ClientEvent::Subscribed(s)
                }
                None => ClientEvent::Answer(r),
            },
            Pending::Authorize => {
                self.authorized = r.result == Ok(Value::Bool(true));
                ClientEvent::Authorized(ok(&r))
            }
            Pending::Configure => match r.result.as_ref().ok().and_then(Configured::from_value) {
                Some(c) => {
                    if c.version_rolling.is_some() {
                        self.version_mask = c.version_rolling;
                    }
                    ClientEvent::Configured(c)
                }
                None => ClientEvent::Answer(r),
            },
            Pending::Submit(tag) => ClientEvent::ShareResult {
                tag,
                result: match r.result {
                    Ok(Value::Bool(true)) => Ok(()),
                    Ok(other) => Err(StratumError {
                        code: 20,
                        message: format!("unexpected submit result {other}"),
                    }),
                    Err(e) => Err(e),
                },
            },
            Pending::Other => ClientEvent::Answer(r),
        }
    }
}

/// The header a miner hashes for `job` with these extranonces, ntime, nonce
/// and rolled version bits, built the way cpuminer builds it: coinbase =
/// coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2, its double SHA-256 folded
/// through the branch, version bits merged under `mask`.
pub fn header(
    job: &Notify,
    extranonce1: &[u8],
    extranonce2: &[u8],
    ntime: u32,
    nonce: u32,
    version_bits: Option<u32>,
    mask: u32,
) -> Header {
    let root = merkle_root(job, extranonce1, extranonce2);
    header_with_root(job, root, ntime, nonce, version_bits, mask)
}

/// The merkle root of `job` with these extranonces: the part of the header
/// a miner computes once per extranonce2 and keeps while it rolls nonces.
pub fn merkle_root(job: &Notify, extranonce1: &[u8], extranonce2: &[u8]) -> TxMerkleNode {
    let mut engine = sha256d::Hash::engine();
    engine.input(&job.coinbase1);
    engine.input(extranonce1);
    engine.input(extranonce2);
    engine.input(&job.coinbase2);
    let mut root = Txid::from_engine(engine).to_raw_hash();
    for node in &job.merkle_branch {
        let mut e = sha256d::Hash::engine();
        e.input(root.as_byte_array());
        e.input(node.as_byte_array());
        root = sha256d::Hash::from_engine(e);
    }
    TxMerkleNode::from_raw_hash(root)
}

/// [`header`] with the merkle root already computed.
pub fn header_with_root(
    job: &Notify,
    merkle_root: TxMerkleNode,
    ntime: u32,
    nonce: u32,
    version_bits: Option<u32>,
    mask: u32,
) -> Header {
    let version = match version_bits {
        Some(bits) => (job.version & !mask) | (bits & mask),
        None => job.version,
    };
    Header {
        version: Version::from_consensus(version as i32),
        prev_blockhash: job.prev_hash,
        merkle_root,
        time: ntime,
        bits: job.bits,
        nonce,
    }
}
