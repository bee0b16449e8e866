//! The node side: `getblocktemplate` through bitcoincore-rpc (blocking, run on
//! the blocking pool) and its conversion to the typed template.
//!
//! Written against Bitcoin Core's documented behaviour (BIP 22/23): the
//! segwit rule is requested, `longpollid` is passed for long polls, and the
//! response is checked rather than trusted (bits and hashes must parse).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::block::Version;
use bitcoin::{CompactTarget, ScriptBuf, Weight};
use bitcoincore_rpc::json::GetBlockTemplateResult;
use bitcoincore_rpc::jsonrpc;
use bitcoincore_rpc::{Client, RpcApi};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::{BlockTemplate, TemplateId, TemplateTx};

/// One bitcoind (or nodesim) to take templates from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Name in logs, /health and RawGbt (`node_id`); never a credential.
    pub name: String,
    /// `http://host:port`.
    pub rpc_url: String,
    /// rpcuser (leave empty with `cookie_file`).
    #[serde(default)]
    pub rpc_user: String,
    /// rpcpassword.
    #[serde(default)]
    pub rpc_password: String,
    /// Core's `.cookie` file, read at every (re)connect.
    #[serde(default)]
    pub cookie_file: Option<PathBuf>,
    /// `tcp://host:port` of `-zmqpubhashblock`; without it gbtmaker long-polls.
    #[serde(default)]
    pub zmq_hashblock: Option<String>,
}

/// Why a template could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GbtError {
    /// Transport or RPC error.
    #[error("node {node}: {source}")]
    Rpc {
        /// Node name.
        node: String,
        /// The client's error.
        source: bitcoincore_rpc::Error,
    },
    /// The answer is not a usable template.
    #[error("node {node}: unusable template: {reason}")]
    Invalid {
        /// Node name.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

/// A blocking RPC client for one node.
#[derive(Clone)]
pub(crate) struct NodeRpc {
    name: String,
    client: Arc<Client>,
}

impl NodeRpc {
    /// A client with `timeout` per call (a long poll needs a long one).
    pub(crate) fn new(node: &NodeConfig, timeout: Duration) -> Result<Self, GbtError> {
        let err = |e: jsonrpc::simple_http::Error| GbtError::Rpc {
            node: node.name.clone(),
            source: bitcoincore_rpc::Error::JsonRpc(e.into()),
        };
        let mut builder = jsonrpc::simple_http::SimpleHttpTransport::builder()
            .url(&node.rpc_url)
            .map_err(err)?
            .timeout(timeout);
        builder = match &node.cookie_file {
            Some(path) => {
                let cookie = std::fs::read_to_string(path).map_err(|e| GbtError::Rpc {
                    node: node.name.clone(),
                    source: bitcoincore_rpc::Error::Io(e),
                })?;
                builder.cookie_auth(cookie.trim())
            }
            None => builder.auth(node.rpc_user.as_str(), Some(node.rpc_password.as_str())),
        };
        let client = Client::from_jsonrpc(jsonrpc::Client::with_transport(builder.build()));
        Ok(NodeRpc {
            name: node.name.clone(),
            client: Arc::new(client),
        })
    }

    /// `getblocktemplate {"rules":["segwit"]}`, or a long poll when
    /// `longpoll_id` is given. Runs on the blocking pool.
    pub(crate) async fn template(
        &self,
        longpoll_id: Option<String>,
    ) -> Result<GetBlockTemplateResult, GbtError> {
        let (client, name) = (self.client.clone(), self.name.clone());
        let mut request = json!({ "rules": ["segwit"] });
        if let Some(id) = longpoll_id {
            request["longpollid"] = Value::String(id);
        }
        tokio::task::spawn_blocking(move || {
            client.call::<GetBlockTemplateResult>("getblocktemplate", &[request])
        })
        .await
        .map_err(|e| GbtError::Invalid {
            node: name.clone(),
            reason: format!("RPC task failed: {e}"),
        })?
        .map_err(|source| GbtError::Rpc { node: name, source })
    }
}

/// Converts Core's answer to the typed template published as RawGbt.
pub(crate) fn to_template(
    node: &str,
    gbt: GetBlockTemplateResult,
    now_ms: u64,
) -> Result<BlockTemplate, GbtError> {
    let invalid = |reason: String| GbtError::Invalid {
        node: node.to_owned(),
        reason,
    };
    let bits: [u8; 4] = gbt
        .bits
        .as_slice()
        .try_into()
        .map_err(|_| invalid(format!("bits is {} bytes", gbt.bits.len())))?;
    let height =
        u32::try_from(gbt.height).map_err(|_| invalid(format!("height {}", gbt.height)))?;
    let transactions = gbt
        .transactions
        .into_iter()
        .map(|t| TemplateTx {
            txid: t.txid,
            wtxid: t.wtxid,
            fee: t.fee,
            weight: Weight::from_wu(t.weight as u64),
            raw: t.raw_tx,
        })
        .collect();
    let commitment: ScriptBuf = gbt.default_witness_commitment;
    let mut template = BlockTemplate {
        id: TemplateId([0; 32]),
        node_id: node.to_owned(),
        created_at_ms: now_ms,
        height,
        prev_blockhash: gbt.previous_block_hash,
        version: Version::from_consensus(gbt.version as i32),
        bits: CompactTarget::from_consensus(u32::from_be_bytes(bits)),
        cur_time: u32::try_from(gbt.current_time).map_err(|_| invalid("curtime".into()))?,
        min_time: u32::try_from(gbt.min_time).map_err(|_| invalid("mintime".into()))?,
        coinbase_value: gbt.coinbase_value,
        default_witness_commitment: (!commitment.is_empty()).then_some(commitment),
        transactions,
    };
    template.id = template.compute_id();
    Ok(template)
}
