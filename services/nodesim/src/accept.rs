//! Mempool acceptance of a transaction (`sendrawtransaction`, the wallet's
//! `send`): Bitcoin Core's checks in Core's order, with its reject reasons
//! and RPC codes (`validation.cpp` PreChecks and PolicyScriptChecks,
//! `node/transaction.cpp` BroadcastTransaction). Scripts are checked for
//! P2WPKH spends, the only kind nodesim's wallet makes; a spend of any other
//! kind is refused, which Core would not do.

use std::collections::HashSet;

use bitcoin::{Amount, Transaction, Txid};

use crate::chain::Chain;
use crate::coins::View;
use crate::mempool::PoolTx;
use crate::rpc::{RpcError, code};
use crate::wallet::{COINBASE_MATURITY, Wallet, verify_p2wpkh};

/// Core's default minimum relay fee: 1 sat/vB.
const MIN_RELAY_SAT_PER_VB: u64 = 1;
const MAX_MONEY: Amount = Amount::from_sat(21_000_000 * 100_000_000);

fn rejected(reason: impl Into<String>) -> RpcError {
    RpcError::new(code::VERIFY_REJECTED, reason)
}

/// Puts `tx` into the mempool, ahead of the synthetic transactions, or says
/// why not. A transaction already there is accepted again, as Core does.
pub(crate) fn accept(
    chain: &mut Chain,
    wallet: &mut Wallet,
    tx: Transaction,
) -> Result<Txid, RpcError> {
    let txid = tx.compute_txid();
    if chain.mempool.get(&txid).is_some() {
        return Ok(txid);
    }
    let view = View::of(chain);
    if (0..tx.output.len() as u32).any(|vout| {
        view.confirmed(&bitcoin::OutPoint::new(txid, vout))
            .is_some()
    }) {
        return Err(RpcError::new(
            code::VERIFY_ALREADY_IN_CHAIN,
            "Transaction outputs already in utxo set",
        ));
    }
    check_shape(&tx)?;
    let fee = check_inputs(&view, wallet, &tx)?;
    let min = Amount::from_sat(tx.vsize() as u64 * MIN_RELAY_SAT_PER_VB);
    if fee < min {
        return Err(rejected(format!(
            "min relay fee not met, {} < {}",
            fee.to_sat(),
            min.to_sat()
        )));
    }
    let ours = tx.output.iter().any(|o| wallet.is_mine(&o.script_pubkey))
        || tx.input.iter().any(|i| {
            view.confirmed(&i.previous_output)
                .is_some_and(|c| wallet.is_mine(&c.txout.script_pubkey))
        });
    if ours {
        wallet.known.insert(txid, tx.clone());
    }
    chain.mempool.insert_first(PoolTx { tx, txid, fee });
    tracing::info!(%txid, fee = fee.to_sat(), ours, "transaction accepted to the mempool");
    Ok(txid)
}

/// CheckTransaction and IsStandard's output checks.
fn check_shape(tx: &Transaction) -> Result<(), RpcError> {
    if tx.input.is_empty() {
        return Err(rejected("bad-txns-vin-empty"));
    }
    if tx.output.is_empty() {
        return Err(rejected("bad-txns-vout-empty"));
    }
    if tx.is_coinbase() {
        return Err(rejected("coinbase"));
    }
    let mut seen = HashSet::new();
    if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
        return Err(rejected("bad-txns-inputs-duplicate"));
    }
    let total: Option<Amount> = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |s, o| s.checked_add(o.value));
    if tx.output.iter().any(|o| o.value > MAX_MONEY) || total.is_none_or(|t| t > MAX_MONEY) {
        return Err(rejected("bad-txns-vout-toolarge"));
    }
    if tx
        .output
        .iter()
        .any(|o| !o.script_pubkey.is_op_return() && o.value < o.script_pubkey.minimal_non_dust())
    {
        return Err(rejected("dust"));
    }
    Ok(())
}

/// The inputs exist, are unspent and mature, and are signed; the fee.
fn check_inputs(view: &View, wallet: &Wallet, tx: &Transaction) -> Result<Amount, RpcError> {
    let mut prevouts = Vec::with_capacity(tx.input.len());
    for input in &tx.input {
        if view.spent_in_mempool(&input.previous_output) {
            return Err(rejected("txn-mempool-conflict"));
        }
        let Some(coin) = view.confirmed(&input.previous_output) else {
            return Err(RpcError::new(
                code::VERIFY_ERROR,
                "bad-txns-inputs-missingorspent",
            ));
        };
        let depth = view.tip + 1 - coin.height.expect("confirmed coins have a height");
        if coin.coinbase && depth < COINBASE_MATURITY {
            return Err(rejected(format!(
                "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {depth}"
            )));
        }
        prevouts.push(coin.txout.clone());
    }
    let value_in: Amount = prevouts.iter().map(|o| o.value).sum();
    let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
    if value_in < value_out {
        return Err(rejected(format!(
            "bad-txns-in-belowout, {} < {}",
            value_in.to_sat(),
            value_out.to_sat()
        )));
    }
    for (i, prevout) in prevouts.iter().enumerate() {
        if !prevout.script_pubkey.is_p2wpkh() {
            return Err(rejected(
                "non-mandatory-script-verify-flag (nodesim verifies P2WPKH spends only)",
            ));
        }
        verify_p2wpkh(wallet.secp(), tx, i, prevout).map_err(rejected)?;
    }
    Ok(value_in - value_out)
}
