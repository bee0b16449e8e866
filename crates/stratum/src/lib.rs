//! Stratum V1 as Sluice speaks it, without I/O.
//!
//! The layers, each its own module, follow the wire inwards:
//! bytes → lines ([`framing`]) → typed messages ([`message`]) → the server's
//! session state machine ([`session`]) or the miner's ([`client`]). The
//! sserver drives [`session::ServerSession`] from its socket task; the
//! simulator and the tests drive [`client::ClientSession`] from theirs.
//!
//! Wire conventions (the ones cpuminer, cgminer and ASIC firmware expect):
//! one JSON-RPC object per `\n`-terminated line; requests carry an `id` that
//! the reply echoes; notifications have `"id": null`; errors are
//! `[code, "message", null]` with the common codes 20–25 ([`ErrorCode`]).
//! Byte orders in `mining.notify` are described on [`message::Notify`].
#![warn(missing_docs)]

pub mod agent;
pub mod client;
pub mod framing;
pub mod id;
pub mod message;
pub mod session;

pub use framing::{Frame, FrameError, LineFramer};
pub use id::Id;
pub use message::{
    Call, ClientMessage, ErrorCode, Notification, Notify, Request, Response, ServerMessage,
    StratumError,
};
