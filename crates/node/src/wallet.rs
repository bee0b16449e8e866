//! The node's wallet as the payer uses it, by Bitcoin Core's RPCs:
//! - `send [{address: amount}…] null "unset" fee_rate {"add_to_wallet": false}`
//!   builds and signs a payout without broadcasting it (the hex, and the
//!   PSBT whose inputs give the fee);
//! - `sendrawtransaction hex` broadcasts it (a transaction already in the
//!   mempool is answered with its txid; one already confirmed with -27);
//! - `gettransaction txid` says how deep it is (negative: conflicted, never
//!   to confirm; -5: the wallet does not know it);
//! - `getbalances`, and `walletpassphrase` for an encrypted wallet.
//!
//! A wallet named in the config is reached at `<rpc_url>/wallet/<name>`,
//! as Core serves several wallets.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Denomination, Transaction, Txid};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{NodeConfig, NodeError, NodeRpc};

/// Core's "transaction outputs already in utxo set" (RPC_VERIFY_ALREADY_IN_CHAIN).
const ALREADY_IN_CHAIN: i32 = -27;
/// Core's "invalid or non-wallet transaction id".
const NOT_A_WALLET_TX: i32 = -5;

/// One wallet of one node.
#[derive(Clone)]
pub struct Wallet {
    rpc: NodeRpc,
}

/// A signed transaction not yet broadcast, and the fee it pays.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The transaction.
    pub tx: Transaction,
    /// Its inputs less its outputs.
    pub fee: Amount,
}

/// What the wallet holds (`getbalances`' `mine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    /// Spendable.
    pub trusted: Amount,
    /// Unconfirmed receipts.
    pub pending: Amount,
    /// Coinbases not yet 101 deep.
    pub immature: Amount,
}

/// What the node did with a transaction it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    /// In its mempool (now or already).
    Accepted(Txid),
    /// Already confirmed.
    AlreadyInChain,
    /// Refused: Core's code and reason (a conflict, missing inputs…).
    Refused(i32, String),
}

impl Wallet {
    /// The wallet `name` (or the node's default wallet) of `node`.
    pub fn new(
        node: &NodeConfig,
        name: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, NodeError> {
        let mut node = node.clone();
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            node.rpc_url = format!("{}/wallet/{name}", node.rpc_url.trim_end_matches('/'));
        }
        Ok(Wallet {
            rpc: NodeRpc::new(&node, timeout)?,
        })
    }

    /// Builds and signs a transaction paying `outputs` at `fee_rate` sat/vB
    /// without broadcasting it.
    pub async fn build(
        &self,
        outputs: &[(Address, Amount)],
        fee_rate: u64,
    ) -> Result<Built, NodeError> {
        #[derive(Deserialize)]
        struct Sent {
            complete: bool,
            hex: Option<String>,
            psbt: Option<String>,
        }
        let outputs: Vec<Value> = outputs
            .iter()
            .map(|(address, amount)| json!({ address.to_string(): amount.to_string_in(Denomination::Bitcoin) }))
            .collect();
        let sent: Sent = self
            .rpc
            .call(
                "send",
                vec![
                    json!(outputs),
                    Value::Null,
                    json!("unset"),
                    json!(fee_rate),
                    json!({"add_to_wallet": false}),
                ],
            )
            .await?;
        let invalid = |reason: &str| NodeError::Invalid {
            node: self.rpc.name.clone(),
            reason: format!("send: {reason}"),
        };
        if !sent.complete {
            return Err(invalid("the wallet could not sign every input"));
        }
        let tx: Transaction = sent
            .hex
            .and_then(|h| hex::decode(h).ok())
            .and_then(|raw| deserialize(&raw).ok())
            .ok_or_else(|| invalid("no transaction hex"))?;
        let fee = sent
            .psbt
            .and_then(|p| Psbt::from_str(&p).ok())
            .and_then(|p| p.fee().ok())
            .ok_or_else(|| invalid("no PSBT with its inputs' amounts"))?;
        Ok(Built { tx, fee })
    }

    /// `sendrawtransaction`: the node's verdict, or an error if it did not
    /// answer.
    pub async fn broadcast(&self, tx: &Transaction) -> Result<Broadcast, NodeError> {
        match self
            .rpc
            .call::<Txid>(
                "sendrawtransaction",
                vec![json!(hex::encode(serialize(tx)))],
            )
            .await
        {
            Ok(txid) => Ok(Broadcast::Accepted(txid)),
            Err(e) => match e.rpc_error() {
                Some((ALREADY_IN_CHAIN, _)) => Ok(Broadcast::AlreadyInChain),
                Some((code, message)) => Ok(Broadcast::Refused(code, message.to_owned())),
                None => Err(e),
            },
        }
    }

    /// Whether the node is still in initial block download
    /// (`getblockchaininfo`): a coin it calls missing may be one it has not
    /// seen yet.
    pub async fn catching_up(&self) -> Result<bool, NodeError> {
        Ok(self.rpc.tip().await?.initial_download)
    }

    /// `gettransaction`'s confirmations (0 in the mempool, negative when
    /// conflicted); `None` if the wallet does not know the transaction.
    pub async fn confirmations(&self, txid: Txid) -> Result<Option<i64>, NodeError> {
        #[derive(Deserialize)]
        struct WalletTx {
            confirmations: i64,
        }
        match self
            .rpc
            .call::<WalletTx>("gettransaction", vec![json!(txid)])
            .await
        {
            Ok(t) => Ok(Some(t.confirmations)),
            Err(e)
                if e.rpc_error()
                    .is_some_and(|(code, _)| code == NOT_A_WALLET_TX) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `getbalances`.
    pub async fn balances(&self) -> Result<Balances, NodeError> {
        #[derive(Deserialize)]
        struct Mine {
            trusted: f64,
            untrusted_pending: f64,
            immature: f64,
        }
        #[derive(Deserialize)]
        struct All {
            mine: Mine,
        }
        let all: All = self.rpc.call("getbalances", vec![]).await?;
        let sat = |btc: f64| Amount::from_btc(btc).unwrap_or(Amount::ZERO);
        Ok(Balances {
            trusted: sat(all.mine.trusted),
            pending: sat(all.mine.untrusted_pending),
            immature: sat(all.mine.immature),
        })
    }

    /// `walletpassphrase`: unlocked for `secs`.
    pub async fn unlock(&self, passphrase: &str, secs: u64) -> Result<(), NodeError> {
        self.rpc
            .call::<Value>("walletpassphrase", vec![json!(passphrase), json!(secs)])
            .await
            .map(|_| ())
    }
}
