//! `submitblock` to one node: retried while the node cannot be reached,
//! within a window, and read as Core's answer once it can.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_node::{NodeConfig, NodeRpc, SubmitAnswer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What became of a block at one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not answered yet.
    Pending,
    /// The node answered.
    Answer(SubmitAnswer),
    /// The node could not be reached within the retry window.
    Unreachable(String),
}

impl Outcome {
    /// Whether the node holds the block as valid.
    pub(crate) fn is_valid(&self) -> bool {
        matches!(self, Outcome::Answer(a) if a.is_valid())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("pending"),
            Outcome::Answer(a) => a.fmt(f),
            Outcome::Unreachable(e) => write!(f, "unreachable: {e}"),
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Submits `hex` to `node` until it answers or `window` has passed since
/// the first attempt. `None` when `token` is cancelled first: the share
/// stays unacknowledged and is submitted again after a restart. The client
/// is made per attempt, so a cookie rewritten by a restarted node is read.
pub(crate) async fn submit(
    node: &NodeConfig,
    timeout: Duration,
    hex: Arc<String>,
    window: Duration,
    token: CancellationToken,
) -> Option<Outcome> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let call = async {
            NodeRpc::new(node, timeout)?
                .submit_block(hex.as_ref().clone())
                .await
        };
        let attempt = tokio::select! {
            () = token.cancelled() => return None,
            a = call => a,
        };
        match attempt {
            Ok(answer) => {
                if attempts > 1 {
                    tracing::info!(node = node.name, attempts, %answer, "node answered on a retry");
                }
                return Some(Outcome::Answer(answer));
            }
            Err(error) => {
                if started.elapsed() + backoff > window {
                    tracing::error!(node = node.name, attempts, %error,
                        "node unreachable for the whole retry window; giving up on it");
                    return Some(Outcome::Unreachable(error.to_string()));
                }
                tracing::warn!(node = node.name, attempts, %error, retry_in = ?backoff,
                    "submitblock failed; retrying");
                tokio::select! {
                    () = token.cancelled() => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
