//! The wallet RPCs the payer uses, with Bitcoin Core's parameters, result
//! shapes and errors: `getnewaddress`, `getbalances`, `getbalance`,
//! `send` (with `add_to_wallet` false it signs without broadcasting and
//! answers the PSBT and the hex), `sendrawtransaction`, `gettransaction`,
//! `walletpassphrase` and `walletlock`.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Denomination, Network, Transaction, TxOut, Txid, Witness};
use serde_json::{Value, json};

use super::{RpcError, code};
use crate::coins::View;
use crate::wallet::WalletError;
use crate::{Node, now};

type RpcResult = Result<Value, RpcError>;

/// The wallet method `method`, if it is one.
pub(super) fn dispatch(node: &Arc<Node>, method: &str, params: &[Value]) -> Option<RpcResult> {
    Some(match method {
        "getnewaddress" => Ok(json!(node.wallet().new_address().to_string())),
        "getbalances" => Ok(balances(node)),
        "getbalance" => Ok(balances(node)["mine"]["trusted"].clone()),
        "send" => send(node, params),
        "sendrawtransaction" => send_raw(node, params),
        "gettransaction" => get_transaction(node, params),
        "walletpassphrase" => unlock(node, params),
        "walletlock" => node
            .wallet()
            .lock()
            .map(|()| Value::Null)
            .map_err(wallet_error),
        _ => return None,
    })
}

fn wallet_error(e: WalletError) -> RpcError {
    match e {
        WalletError::Locked => RpcError::new(
            code::WALLET_UNLOCK_NEEDED,
            "Error: Please enter the wallet passphrase with walletpassphrase first.",
        ),
        WalletError::WrongPassphrase => RpcError::new(
            code::WALLET_PASSPHRASE_INCORRECT,
            "Error: The wallet passphrase entered was incorrect.",
        ),
        WalletError::Unencrypted(call) => RpcError::new(
            code::WALLET_WRONG_ENC_STATE,
            format!("Error: running with an unencrypted wallet, but {call} was called."),
        ),
        WalletError::InsufficientFunds => {
            RpcError::new(code::WALLET_INSUFFICIENT_FUNDS, "Insufficient funds")
        }
    }
}

fn btc(a: Amount) -> Value {
    json!(a.to_btc())
}

/// `getbalances`: trusted (spendable), untrusted_pending (unconfirmed
/// receipts), immature (coinbases under 101 confirmations).
fn balances(node: &Arc<Node>) -> Value {
    let chain = node.chain();
    let view = View::of(&chain);
    let wallet = node.wallet();
    let (mut trusted, mut pending, mut immature) = (Amount::ZERO, Amount::ZERO, Amount::ZERO);
    for coin in wallet.coins(&view) {
        if view.spent_in_mempool(&coin.outpoint) {
            continue;
        }
        match coin.height {
            None if wallet.known.contains_key(&coin.outpoint.txid) => trusted += coin.txout.value,
            None => pending += coin.txout.value,
            Some(_) if coin.spendable_by_wallet(view.tip) => trusted += coin.txout.value,
            Some(_) => immature += coin.txout.value,
        }
    }
    json!({"mine": {"trusted": btc(trusted), "untrusted_pending": btc(pending), "immature": btc(immature)}})
}

fn amount(v: &Value) -> Result<Amount, RpcError> {
    let parsed = match v {
        Value::Number(n) => n.as_f64().and_then(|f| Amount::from_btc(f).ok()),
        Value::String(s) => Amount::from_str_in(s, Denomination::Bitcoin).ok(),
        _ => None,
    };
    parsed
        .filter(|a| *a > Amount::ZERO)
        .ok_or_else(|| RpcError::new(code::TYPE_ERROR, "Invalid amount"))
}

/// `send`'s outputs: `[{"address": amount}, …]` or `{"address": amount, …}`.
fn outputs(v: &Value) -> Result<Vec<TxOut>, RpcError> {
    let pairs: Vec<(&String, &Value)> = match v {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_object)
            .flatten()
            .collect(),
        Value::Object(map) => map.iter().collect(),
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Invalid parameter, outputs are missing",
        ));
    }
    pairs
        .into_iter()
        .map(|(address, value)| {
            let script = Address::from_str(address)
                .ok()
                .and_then(|a| a.require_network(Network::Regtest).ok())
                .map(|a| a.script_pubkey())
                .ok_or_else(|| {
                    RpcError::new(
                        code::INVALID_ADDRESS_OR_KEY,
                        format!("Invalid Bitcoin address: {address}"),
                    )
                })?;
            Ok(TxOut {
                value: amount(value)?,
                script_pubkey: script,
            })
        })
        .collect()
}

/// `send outputs ( conf_target "estimate_mode" fee_rate options )`.
fn send(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let outputs = outputs(params.first().unwrap_or(&Value::Null))?;
    let options = params.get(4).cloned().unwrap_or(Value::Null);
    let rate = params
        .get(3)
        .filter(|v| !v.is_null())
        .or_else(|| options.get("fee_rate"))
        .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .filter(|r| *r >= 1.0)
        .ok_or_else(|| {
            RpcError::new(
                code::WALLET_ERROR,
                "Fee estimation failed. Fallbackfee is disabled. Wait a few blocks or enable -fallbackfee.",
            )
        })?;
    let add_to_wallet = options
        .get("add_to_wallet")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut chain = node.chain();
    let view = View::of(&chain);
    let mut wallet = node.wallet();
    let (tx, prevouts) = wallet
        .build(
            &view,
            view.tip,
            outputs,
            rate.ceil() as u64,
            u64::from(now()),
        )
        .map_err(wallet_error)?;
    if add_to_wallet {
        let txid = crate::accept::accept(&mut chain, &mut wallet, tx)?;
        return Ok(json!({"txid": txid, "complete": true}));
    }
    Ok(json!({
        "psbt": psbt(&tx, prevouts).to_string(),
        "hex": hex::encode(serialize(&tx)),
        "complete": true,
    }))
}

/// The signed `tx` as a finalized PSBT with each input's coin.
fn psbt(tx: &Transaction, prevouts: Vec<TxOut>) -> Psbt {
    let mut unsigned = tx.clone();
    for input in &mut unsigned.input {
        input.witness = Witness::new();
    }
    let mut psbt = Psbt::from_unsigned_tx(unsigned).expect("witnesses and script sigs are empty");
    for ((input, prevout), signed) in psbt.inputs.iter_mut().zip(prevouts).zip(&tx.input) {
        input.witness_utxo = Some(prevout);
        input.final_script_witness = Some(signed.witness.clone());
    }
    psbt
}

/// `sendrawtransaction "hexstring"`.
fn send_raw(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let hex = params.first().and_then(Value::as_str).unwrap_or("");
    let tx: Transaction = hex::decode(hex)
        .ok()
        .and_then(|raw| deserialize(&raw).ok())
        .ok_or_else(|| {
            RpcError::new(
                code::DESERIALIZATION_ERROR,
                "TX decode failed. Make sure the tx has at least one input.",
            )
        })?;
    let mut chain = node.chain();
    let mut wallet = node.wallet();
    crate::accept::accept(&mut chain, &mut wallet, tx).map(|txid| json!(txid))
}

/// `gettransaction "txid"`: a wallet transaction's confirmations (0 in the
/// mempool, negative when a confirmed transaction spends its inputs).
fn get_transaction(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let not_ours = || {
        RpcError::new(
            code::INVALID_ADDRESS_OR_KEY,
            "Invalid or non-wallet transaction id",
        )
    };
    let txid = params
        .first()
        .and_then(Value::as_str)
        .and_then(|s| Txid::from_str(s).ok())
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "txid must be of length 64"))?;
    let chain = node.chain();
    let view = View::of(&chain);
    let wallet = node.wallet();
    let (tx, confirmations, block) = if let Some(&height) = view.heights.get(&txid) {
        let hash = chain.active[height as usize];
        let tx = chain.blocks[&hash]
            .block
            .txdata
            .iter()
            .find(|t| t.compute_txid() == txid)
            .cloned()
            .ok_or_else(not_ours)?;
        (tx, i64::from(view.tip - height + 1), Some((hash, height)))
    } else if let Some(p) = chain.mempool.get(&txid) {
        (p.tx.clone(), 0, None)
    } else if let Some(tx) = wallet.known.get(&txid) {
        let conflicted = tx
            .input
            .iter()
            .any(|i| view.spent_in_chain(&i.previous_output));
        (tx.clone(), if conflicted { -1 } else { 0 }, None)
    } else {
        return Err(not_ours());
    };
    let mine = tx.output.iter().any(|o| wallet.is_mine(&o.script_pubkey))
        || wallet.known.contains_key(&txid);
    if !mine {
        return Err(not_ours());
    }
    let received: Amount = tx
        .output
        .iter()
        .filter(|o| wallet.is_mine(&o.script_pubkey))
        .map(|o| o.value)
        .sum();
    let mut answer = json!({
        "amount": received.to_btc(),
        "confirmations": confirmations,
        "txid": txid,
        "wtxid": tx.compute_wtxid(),
        "walletconflicts": [],
        "details": [],
        "hex": hex::encode(serialize(&tx)),
    });
    if let Some((hash, height)) = block {
        answer["blockhash"] = json!(hash);
        answer["blockheight"] = json!(height);
    }
    Ok(answer)
}

/// `walletpassphrase "passphrase" timeout`.
fn unlock(node: &Arc<Node>, params: &[Value]) -> RpcResult {
    let passphrase = params.first().and_then(Value::as_str).unwrap_or("");
    let secs = params
        .get(1)
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(100_000_000);
    node.wallet()
        .unlock(passphrase, secs, u64::from(now()))
        .map(|()| Value::Null)
        .map_err(wallet_error)
}
