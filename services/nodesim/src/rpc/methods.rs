//! The RPC methods the pool uses, with Bitcoin Core's parameters, result
//! shapes and errors.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Address, Block, BlockHash, Network, Target, Transaction, Work};
use serde_json::{Value, json};

use super::{RpcError, code};
use crate::chain::{Chain, Stored, Submitted};
use crate::{Node, now};

type RpcResult = Result<Value, RpcError>;

pub(super) async fn dispatch(node: &Arc<Node>, method: &str, params: &[Value]) -> RpcResult {
    match method {
        "getblocktemplate" => get_block_template(node, params).await,
        "submitblock" => submit_block(node, params),
        "getbestblockhash" => Ok(json!(node.chain().tip().block.block_hash())),
        "getblockcount" => Ok(json!(node.chain().height())),
        "getblockhash" => get_block_hash(node, params),
        "getblockchaininfo" => Ok(blockchain_info(node, &node.chain())),
        "getnetworkinfo" => Ok(network_info()),
        "getblockheader" => get_block_header(node, params),
        "getblock" => get_block(node, params),
        "getblockstats" => get_block_stats(node, params),
        "generatetoaddress" => generate_to_address(node, params),
        "invalidateblock" => invalidate_block(node, params),
        _ => super::wallet::dispatch(node, method, params)
            .unwrap_or_else(|| Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found"))),
    }
}

fn param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a Value, RpcError> {
    params.get(i).filter(|v| !v.is_null()).ok_or_else(|| {
        RpcError::new(
            code::MISC_ERROR,
            format!("Missing required parameter {name}"),
        )
    })
}

fn str_param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a str, RpcError> {
    param(params, i, name)?.as_str().ok_or_else(|| {
        RpcError::new(
            code::TYPE_ERROR,
            format!("JSON value of {name} is not a string as expected"),
        )
    })
}

fn u64_param(params: &[Value], i: usize, name: &str) -> Result<u64, RpcError> {
    param(params, i, name)?.as_u64().ok_or_else(|| {
        RpcError::new(
            code::TYPE_ERROR,
            format!("JSON value of {name} is not an integer as expected"),
        )
    })
}

fn hash_param(params: &[Value], i: usize) -> Result<BlockHash, RpcError> {
    let s = str_param(params, i, "blockhash")?;
    BlockHash::from_str(s).map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!(
                "blockhash must be of length 64 (not {}, for '{s}')",
                s.len()
            ),
        )
    })
}

fn block_not_found() -> RpcError {
    RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
}

async fn get_block_template(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let request = params.first().cloned().unwrap_or(Value::Null);
    let mode = request
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("template");
    if mode != "template" {
        return Err(RpcError::new(code::INVALID_PARAMETER, "Invalid mode"));
    }
    let rules = request
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !rules.iter().any(|r| r.as_str() == Some("segwit")) {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})",
        ));
    }
    if let Some(longpoll) = request.get("longpollid").and_then(Value::as_str) {
        wait_for_change(node, longpoll).await;
    }
    let t = node.chain().template(now());
    let target = Target::from_compact(t.bits);
    let transactions: Vec<Value> = t
        .txs
        .iter()
        .map(|p| {
            json!({
                "data": hex::encode(serialize(&p.tx)),
                "txid": p.txid,
                "hash": p.tx.compute_wtxid(),
                "depends": [],
                "fee": p.fee.to_sat(),
                "sigops": 1,
                "weight": p.tx.weight().to_wu(),
            })
        })
        .collect();
    Ok(json!({
        "capabilities": ["proposal"],
        "version": 0x2000_0000,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": t.prev,
        "transactions": transactions,
        "coinbaseaux": {},
        "coinbasevalue": t.coinbase_value.to_sat(),
        "longpollid": t.longpoll_id,
        "target": hex::encode(target.to_be_bytes()),
        "mintime": t.min_time,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80_000,
        "sizelimit": 4_000_000,
        "weightlimit": 4_000_000,
        "curtime": t.cur_time,
        "bits": format!("{:08x}", t.bits.to_consensus()),
        "height": t.height,
        "default_witness_commitment": hex::encode(t.witness_commitment.as_bytes()),
    }))
}

/// A long poll returns when the tip changes (or the mempool did and the
/// timeout passed), like Core's.
async fn wait_for_change(node: &Arc<Node>, longpoll_id: &str) {
    // Subscribe first: a tip that changes right after the check still wakes us.
    let mut tip = node.tip.subscribe();
    if node.chain().longpoll_id() != longpoll_id {
        return;
    }
    let _ = tokio::time::timeout(node.longpoll_timeout, tip.changed()).await;
}

fn submit_block(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let raw = hex::decode(str_param(params, 0, "hexdata")?)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
    let block: Block = deserialize(&raw)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
    if block.txdata.first().is_none_or(|tx| !tx.is_coinbase()) {
        return Err(RpcError::new(
            code::DESERIALIZATION_ERROR,
            "Block does not start with a coinbase",
        ));
    }
    let hash = block.block_hash();
    let outcome = node.chain().submit(block, now(), true);
    tracing::info!(%hash, ?outcome, "submitblock");
    let (answer, value) = match outcome {
        Submitted::NewTip => {
            node.announce(hash);
            ("accepted", Value::Null)
        }
        Submitted::SideBranch => ("inconclusive", json!("inconclusive")),
        Submitted::Duplicate => ("duplicate", json!("duplicate")),
        Submitted::DuplicateInvalid => ("duplicate-invalid", json!("duplicate-invalid")),
        Submitted::Rejected(reason) => ("rejected", json!(reason)),
    };
    node.count_submit(answer);
    Ok(value)
}

fn get_block_hash(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let height = u64_param(params, 0, "height")?;
    let chain = node.chain();
    let hash = usize::try_from(height)
        .ok()
        .and_then(|h| chain.active.get(h));
    hash.map(|h| json!(h))
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "Block height out of range"))
}

/// `getblockstats hash_or_height ( stats )`, the statistics nodesim keeps
/// (a subset of Core's): `blockhash`, `height`, `subsidy`, `time`,
/// `totalfee`, `txs`. With `stats`, only those named, as Core answers.
fn get_block_stats(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let chain = node.chain();
    let at = param(params, 0, "hash_or_height")?;
    let stored = match at.as_i64() {
        Some(h) if h < 0 => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("Target block height {h} is negative"),
            ));
        }
        Some(h) => usize::try_from(h)
            .ok()
            .and_then(|h| chain.active.get(h))
            .and_then(|hash| chain.block_by_hash(hash))
            .ok_or_else(|| {
                RpcError::new(
                    code::INVALID_PARAMETER,
                    format!(
                        "Target block height {h} after current tip {}",
                        chain.height()
                    ),
                )
            })?,
        None => chain
            .block_by_hash(&hash_param(params, 0)?)
            .ok_or_else(block_not_found)?,
    };
    let all = json!({
        "blockhash": stored.block.block_hash(),
        "height": stored.height,
        "subsidy": crate::chain::subsidy(stored.height).to_sat(),
        "time": stored.block.header.time,
        "totalfee": stored.fees.to_sat(),
        "txs": stored.block.txdata.len(),
    });
    let Some(wanted) = params.get(1).filter(|v| !v.is_null()) else {
        return Ok(all);
    };
    let names = wanted.as_array().ok_or_else(|| {
        RpcError::new(
            code::TYPE_ERROR,
            "JSON value of stats is not an array as expected",
        )
    })?;
    let mut picked = serde_json::Map::new();
    for name in names {
        let name = name.as_str().unwrap_or_default();
        let value = all.get(name).ok_or_else(|| {
            RpcError::new(
                code::INVALID_PARAMETER,
                format!("Invalid selected statistic '{name}'"),
            )
        })?;
        picked.insert(name.to_owned(), value.clone());
    }
    Ok(Value::Object(picked))
}

/// The work of the chain ending with `hash` (Core's `chainwork`): the sum
/// over the block and its ancestors, side branches included.
fn chainwork(chain: &Chain, hash: BlockHash) -> String {
    let mut work: Option<Work> = None;
    let mut at = chain.blocks.get(&hash);
    while let Some(stored) = at {
        let w = stored.block.header.target().to_work();
        work = Some(work.map_or(w, |sum| sum + w));
        if stored.height == 0 {
            break;
        }
        at = chain.blocks.get(&stored.block.header.prev_blockhash);
    }
    hex::encode(work.expect("a stored block at least").to_be_bytes())
}

fn difficulty(stored: &Stored) -> f64 {
    // Core reports regtest difficulty against the mainnet pow limit too.
    stored.block.header.difficulty_float()
}

fn blockchain_info(node: &Node, chain: &Chain) -> Value {
    let tip = chain.tip();
    let hash = tip.block.block_hash();
    json!({
        "chain": "regtest",
        "blocks": tip.height,
        "headers": tip.height,
        "bestblockhash": hash,
        "difficulty": difficulty(tip),
        "time": tip.block.header.time,
        "mediantime": chain.median_time_past(&hash),
        "verificationprogress": 1.0,
        "initialblockdownload": node.initial_download(tip.block.header.time),
        "chainwork": chainwork(chain, hash),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": "",
    })
}

fn network_info() -> Value {
    json!({
        "version": 270_000,
        "subversion": "/Satoshi:27.0.0(nodesim)/",
        "protocolversion": 70016,
        "localservices": "0000000000000409",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED"],
        "localrelay": true,
        "timeoffset": 0,
        "networkactive": true,
        "connections": 0,
        "connections_in": 0,
        "connections_out": 0,
        "networks": [],
        "relayfee": 0.00001,
        "incrementalfee": 0.00001,
        "localaddresses": [],
        "warnings": "",
    })
}

fn header_json(chain: &Chain, stored: &Stored) -> Value {
    let h = &stored.block.header;
    let hash = h.block_hash();
    let active = chain.is_active(&hash);
    let mut v = json!({
        "hash": hash,
        "confirmations": if active { i64::from(chain.height() - stored.height) + 1 } else { -1 },
        "height": stored.height,
        "version": h.version.to_consensus(),
        "versionHex": format!("{:08x}", h.version.to_consensus()),
        "merkleroot": h.merkle_root,
        "time": h.time,
        "mediantime": chain.median_time_past(&hash),
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "difficulty": difficulty(stored),
        "chainwork": chainwork(chain, hash),
        "nTx": stored.block.txdata.len(),
    });
    if stored.height > 0 {
        v["previousblockhash"] = json!(h.prev_blockhash);
    }
    if active && let Some(next) = chain.active.get(stored.height as usize + 1) {
        v["nextblockhash"] = json!(next);
    }
    v
}

fn verbose_flag(params: &[Value], i: usize, default: bool) -> bool {
    match params.get(i) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64() != Some(0),
        _ => default,
    }
}

fn get_block_header(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let hash = hash_param(params, 0)?;
    let chain = node.chain();
    let stored = chain.block_by_hash(&hash).ok_or_else(block_not_found)?;
    if verbose_flag(params, 1, true) {
        Ok(header_json(&chain, stored))
    } else {
        Ok(json!(hex::encode(serialize(&stored.block.header))))
    }
}

fn get_block(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let hash = hash_param(params, 0)?;
    let verbosity = params
        .get(1)
        .and_then(|v| v.as_u64().or(v.as_bool().map(u64::from)))
        .unwrap_or(1);
    let chain = node.chain();
    let stored = chain.block_by_hash(&hash).ok_or_else(block_not_found)?;
    if verbosity == 0 {
        return Ok(json!(hex::encode(serialize(&stored.block))));
    }
    let mut v = header_json(&chain, stored);
    v["size"] = json!(stored.block.total_size());
    v["strippedsize"] = json!(
        stored
            .block
            .txdata
            .iter()
            .map(Transaction::base_size)
            .sum::<usize>()
            + 80
    );
    v["weight"] = json!(stored.block.weight().to_wu());
    v["tx"] = json!(
        stored
            .block
            .txdata
            .iter()
            .map(Transaction::compute_txid)
            .collect::<Vec<_>>()
    );
    Ok(v)
}

fn invalidate_block(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let hash = hash_param(params, 0)?;
    let tip = {
        let mut chain = node.chain();
        if !chain.invalidate(hash) {
            return Err(block_not_found());
        }
        chain.tip().block.block_hash()
    };
    node.announce(tip);
    Ok(Value::Null)
}

fn generate_to_address(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let n = u64_param(params, 0, "nblocks")?;
    let address = str_param(params, 1, "address")?;
    let script = Address::from_str(address)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .map(|a| a.script_pubkey())
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))?;
    let mut hashes = Vec::new();
    for _ in 0..n.min(1_000) {
        let mut chain = node.chain();
        let (block, pow_is_real) = crate::mine::mine(&chain, &script, now())
            .map_err(|e| RpcError::new(code::MISC_ERROR, e.to_string()))?;
        let hash = block.block_hash();
        match chain.submit(block, now(), pow_is_real) {
            Submitted::NewTip => {}
            other => {
                return Err(RpcError::new(
                    code::MISC_ERROR,
                    format!("generated block rejected: {other:?}"),
                ));
            }
        }
        drop(chain);
        node.announce(hash);
        hashes.push(json!(hash));
    }
    Ok(Value::Array(hashes))
}
