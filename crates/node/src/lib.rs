//! Talking to a node (bitcoind, or nodesim in tests) over JSON-RPC through
//! bitcoincore-rpc, whose blocking client runs on tokio's blocking pool.
//!
//! gbtmaker takes templates with [`NodeRpc::template`] and converts them with
//! [`to_template`]; blkmaker submits blocks with [`NodeRpc::submit_block`] and
//! reads Core's answer as a [`SubmitAnswer`]. Written against Bitcoin Core's
//! documented behaviour (BIP 22/23): the segwit rule is requested,
//! `longpollid` is passed for long polls, and responses are checked rather
//! than trusted (bits and hashes must parse).

pub mod chain_work;
mod empty;
mod wallet;
pub mod zmq;

pub use empty::{
    HeaderInfo, empty_template, empty_template_after, network_of_chain, retarget_period_start,
};
pub use wallet::{Balances, Broadcast, Built, Wallet};

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

/// What a node says of its best chain (`getblockchaininfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChainTip {
    /// Core's name of the chain: `main`, `test`, `testnet4`, `signet`,
    /// `regtest`.
    pub chain: String,
    /// The best block (the most work the node has validated).
    #[serde(rename = "bestblockhash")]
    pub best: bitcoin::BlockHash,
    /// Its height.
    pub blocks: u32,
    /// The work of the chain ending with it.
    #[serde(rename = "chainwork", with = "chain_work")]
    pub chain_work: bitcoin::pow::Work,
    /// Whether the node is still catching up (Core's
    /// `initialblockdownload`): what it says of spent coins is not final.
    #[serde(rename = "initialblockdownload", default)]
    pub initial_download: bool,
}

/// One bitcoind (or nodesim): the same `[[nodes]]` block serves gbtmaker and
/// blkmaker.
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
    /// gbtmaker listens to it, and jobmaker where `zmq_rawblock` is not set.
    #[serde(default)]
    pub zmq_hashblock: Option<String>,
    /// `tcp://host:port` of `-zmqpubrawblock` (may be the hashblock one):
    /// jobmaker reads a new block's header from it for its empty-block job
    /// without asking the node (`empty_jobs`); unused elsewhere.
    #[serde(default)]
    pub zmq_rawblock: Option<String>,
}

/// Checks a service's `[[nodes]]`: at least one, each named (uniquely) and
/// reached over http(s).
pub fn validate_nodes(nodes: &[NodeConfig]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("no [[nodes]]: at least one node is needed".into());
    }
    let mut names = std::collections::HashSet::new();
    for n in nodes {
        if n.name.is_empty() {
            return Err("a [[nodes]] entry has an empty name".into());
        }
        if !names.insert(n.name.as_str()) {
            return Err(format!(
                "two [[nodes]] are called {:?}: node names must be unique",
                n.name
            ));
        }
        if !n.rpc_url.starts_with("http://") && !n.rpc_url.starts_with("https://") {
            return Err(format!(
                "node {:?}: rpc_url {:?} is not http://host:port",
                n.name, n.rpc_url
            ));
        }
    }
    Ok(())
}

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Transport or RPC error.
    #[error("node {node}: {source}")]
    Rpc {
        /// Node name.
        node: String,
        /// The client's error.
        source: bitcoincore_rpc::Error,
    },
    /// The answer is not usable (a template that does not parse, a
    /// failed RPC task).
    #[error("node {node}: unusable answer: {reason}")]
    Invalid {
        /// Node name.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

impl NodeError {
    /// The node's own error (Core's RPC code and message), if it answered
    /// with one rather than not answering.
    pub fn rpc_error(&self) -> Option<(i32, &str)> {
        match self {
            NodeError::Rpc {
                source:
                    bitcoincore_rpc::Error::JsonRpc(jsonrpc::error::Error::Rpc(
                        jsonrpc::error::RpcError { code, message, .. },
                    )),
                ..
            } => Some((*code, message.as_str())),
            _ => None,
        }
    }
}

/// A blocking RPC client for one node.
#[derive(Clone)]
pub struct NodeRpc {
    name: String,
    client: Arc<Client>,
}

impl NodeRpc {
    /// A client with `timeout` per call (a long poll needs a long one).
    pub fn new(node: &NodeConfig, timeout: Duration) -> Result<Self, NodeError> {
        let err = |e: jsonrpc::simple_http::Error| NodeError::Rpc {
            node: node.name.clone(),
            source: bitcoincore_rpc::Error::JsonRpc(e.into()),
        };
        let mut builder = jsonrpc::simple_http::SimpleHttpTransport::builder()
            .url(&node.rpc_url)
            .map_err(err)?
            .timeout(timeout);
        builder = match &node.cookie_file {
            Some(path) => {
                let cookie = std::fs::read_to_string(path).map_err(|e| NodeError::Rpc {
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
    pub async fn template(
        &self,
        longpoll_id: Option<String>,
    ) -> Result<GetBlockTemplateResult, NodeError> {
        let mut request = json!({ "rules": ["segwit"] });
        if let Some(id) = longpoll_id {
            request["longpollid"] = Value::String(id);
        }
        self.call("getblocktemplate", vec![request]).await
    }

    /// One RPC call on the blocking pool, its answer decoded as `T`.
    pub(crate) async fn call<T>(
        &self,
        method: &'static str,
        params: Vec<Value>,
    ) -> Result<T, NodeError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let (client, name) = (self.client.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || client.call::<T>(method, &params))
            .await
            .map_err(|e| NodeError::Invalid {
                node: name.clone(),
                reason: format!("RPC task failed: {e}"),
            })?
            .map_err(|source| NodeError::Rpc { node: name, source })
    }

    /// `getblockheader <hash> true`.
    pub async fn header(&self, hash: bitcoin::BlockHash) -> Result<HeaderInfo, NodeError> {
        self.call("getblockheader", vec![json!(hash), json!(true)])
            .await
    }

    /// The header of the best chain's block at `height` (`getblockhash`,
    /// then `getblockheader`).
    pub async fn header_at(&self, height: u32) -> Result<HeaderInfo, NodeError> {
        let hash: bitcoin::BlockHash = self.call("getblockhash", vec![json!(height)]).await?;
        self.header(hash).await
    }

    /// The template of an empty block on `hash` ([`empty_template`]): its
    /// header asked, and at a retarget height the period's first block's
    /// too. The header, and the template unless the next bits are unknown.
    pub async fn empty_template_on(
        &self,
        network: bitcoin::Network,
        hash: bitcoin::BlockHash,
        version: Version,
    ) -> Result<(HeaderInfo, Option<BlockTemplate>), NodeError> {
        let tip = self.header(hash).await?;
        let period_start = match retarget_period_start(network, &tip) {
            Some(height) => Some(self.header_at(height).await?.time),
            None => None,
        };
        let template = empty_template(
            &self.name,
            network,
            &tip,
            period_start,
            version,
            sluice_service::now_ms(),
        );
        Ok((tip, template))
    }

    /// `getblockheader <hash>`'s confirmations: 1 or more on the node's best
    /// chain, -1 off it; `None` if the node does not know the block (Core's
    /// RPC error -5).
    pub async fn confirmations(&self, hash: bitcoin::BlockHash) -> Result<Option<i64>, NodeError> {
        #[derive(Deserialize)]
        struct Header {
            confirmations: i64,
        }
        match self
            .call::<Header>("getblockheader", vec![json!(hash), json!(true)])
            .await
        {
            Ok(header) => Ok(Some(header.confirmations)),
            Err(NodeError::Rpc {
                source:
                    bitcoincore_rpc::Error::JsonRpc(jsonrpc::error::Error::Rpc(
                        jsonrpc::error::RpcError { code: -5, .. },
                    )),
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `getblockchaininfo`'s `chain`: `main`, `test`, `testnet4`, `signet`
    /// or `regtest`.
    pub async fn chain(&self) -> Result<String, NodeError> {
        Ok(self.tip().await?.chain)
    }

    /// `getblockchaininfo`: the node's chain, best block and its work.
    pub async fn tip(&self) -> Result<ChainTip, NodeError> {
        self.call("getblockchaininfo", vec![]).await
    }

    /// `getblockstats <height> ["totalfee"]`: the fees the transactions of
    /// the best chain's block at `height` pay, satoshis (Core needs the
    /// block's undo data: a pruned node cannot answer for pruned blocks).
    pub async fn block_fees(&self, height: u32) -> Result<u64, NodeError> {
        #[derive(Deserialize)]
        struct Stats {
            totalfee: u64,
        }
        let stats: Stats = self
            .call("getblockstats", vec![json!(height), json!(["totalfee"])])
            .await?;
        Ok(stats.totalfee)
    }

    /// `getblockcount`: the height of the node's best chain.
    pub async fn block_count(&self) -> Result<u64, NodeError> {
        self.call("getblockcount", vec![]).await
    }

    /// `generatetoaddress n address` (regtest and nodesim): the new blocks'
    /// hashes.
    pub async fn generate_to_address(
        &self,
        blocks: u64,
        address: &str,
    ) -> Result<Vec<bitcoin::BlockHash>, NodeError> {
        self.call("generatetoaddress", vec![json!(blocks), json!(address)])
            .await
    }

    /// `submitblock <hex>`. A node's answer, including an RPC error (Core
    /// answers -22 "Block decode failed" that way), is a [`SubmitAnswer`];
    /// only a failure to get an answer (connection refused, timeout) is an
    /// error, and worth retrying.
    pub async fn submit_block(&self, block_hex: String) -> Result<SubmitAnswer, NodeError> {
        let (client, name) = (self.client.clone(), self.name.clone());
        let result = tokio::task::spawn_blocking(move || {
            client.call::<Option<String>>("submitblock", &[Value::String(block_hex)])
        })
        .await
        .map_err(|e| NodeError::Invalid {
            node: name.clone(),
            reason: format!("RPC task failed: {e}"),
        })?;
        match result {
            Ok(answer) => Ok(SubmitAnswer::from_result(answer.as_deref())),
            Err(bitcoincore_rpc::Error::JsonRpc(jsonrpc::Error::Rpc(e))) => Ok(
                SubmitAnswer::Rejected(format!("rpc error {}: {}", e.code, e.message)),
            ),
            Err(source) => Err(NodeError::Rpc { node: name, source }),
        }
    }
}

/// What a node said to `submitblock` (BIP22: null, or a reason string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitAnswer {
    /// `null`: valid, and now the node's tip (or on its best chain).
    Accepted,
    /// `duplicate`: the node already has this block, valid.
    Duplicate,
    /// `inconclusive` or `duplicate-inconclusive`: valid as far as checked,
    /// but not on the best chain (a competing block came first).
    Inconclusive,
    /// Anything else: the node refuses the block (`high-hash`,
    /// `bad-txnmrklroot`, `duplicate-invalid`, a decode error...).
    Rejected(String),
}

impl SubmitAnswer {
    /// Reads `submitblock`'s result value.
    pub fn from_result(result: Option<&str>) -> Self {
        match result {
            None => SubmitAnswer::Accepted,
            Some("duplicate") => SubmitAnswer::Duplicate,
            Some("inconclusive" | "duplicate-inconclusive") => SubmitAnswer::Inconclusive,
            Some(reason) => SubmitAnswer::Rejected(reason.to_owned()),
        }
    }

    /// Whether the node holds the block as valid.
    pub fn is_valid(&self) -> bool {
        !matches!(self, SubmitAnswer::Rejected(_))
    }
}

impl std::fmt::Display for SubmitAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitAnswer::Accepted => f.write_str("accepted"),
            SubmitAnswer::Duplicate => f.write_str("duplicate"),
            SubmitAnswer::Inconclusive => f.write_str("inconclusive"),
            SubmitAnswer::Rejected(reason) => write!(f, "rejected: {reason}"),
        }
    }
}

/// Converts Core's answer to the typed template published as RawGbt.
pub fn to_template(
    node: &str,
    gbt: GetBlockTemplateResult,
    now_ms: u64,
) -> Result<BlockTemplate, NodeError> {
    let invalid = |reason: String| NodeError::Invalid {
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
        network: None,
        chain_work: None,
    };
    template.id = template.compute_id();
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::{ChainTip, SubmitAnswer, chain_work};

    #[test]
    fn core_s_chainwork_reads_as_a_256_bit_number() {
        let w =
            chain_work::parse("0000000000000000000000000000000000000000000000000000000000000102")
                .expect("hex");
        let mut be = [0u8; 32];
        be[30..].copy_from_slice(&[1, 2]);
        assert_eq!(w, bitcoin::pow::Work::from_be_bytes(be));
        assert_eq!(chain_work::parse("102"), Some(w), "short hex is padded");
        for bad in ["", "xyz", &"1".repeat(65)] {
            assert_eq!(chain_work::parse(bad), None, "{bad:?}");
        }
        // getblockchaininfo as Bitcoin Core 27 answers it on regtest.
        let info: ChainTip = serde_json::from_str(
            r#"{"chain":"regtest","blocks":110,"headers":110,
            "bestblockhash":"1b5a6a5a2c1f5f3bcb0b4e2b3e6e0a9d0d0c7ad8e06d8c1a5b37e3bd1f2e4a10",
            "difficulty":4.656542373906925e-10,"time":1733500000,"mediantime":1733499000,
            "verificationprogress":1,"initialblockdownload":false,
            "chainwork":"00000000000000000000000000000000000000000000000000000000000000de",
            "size_on_disk":33000,"pruned":false,"warnings":[]}"#,
        )
        .expect("Core's answer reads");
        assert_eq!((info.chain.as_str(), info.blocks), ("regtest", 110));
        assert_eq!(Some(info.chain_work), chain_work::parse("de"));
    }

    #[test]
    fn submitblock_answers_read_as_bip22_says() {
        assert_eq!(SubmitAnswer::from_result(None), SubmitAnswer::Accepted);
        assert_eq!(
            SubmitAnswer::from_result(Some("duplicate")),
            SubmitAnswer::Duplicate
        );
        for s in ["inconclusive", "duplicate-inconclusive"] {
            assert_eq!(
                SubmitAnswer::from_result(Some(s)),
                SubmitAnswer::Inconclusive
            );
        }
        for s in [
            "high-hash",
            "duplicate-invalid",
            "bad-txnmrklroot",
            "rejected",
        ] {
            let answer = SubmitAnswer::from_result(Some(s));
            assert_eq!(answer, SubmitAnswer::Rejected(s.to_owned()));
            assert!(!answer.is_valid());
            assert_eq!(answer.to_string(), format!("rejected: {s}"));
        }
        assert!(SubmitAnswer::Inconclusive.is_valid());
    }
}
