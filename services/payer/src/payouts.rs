//! Paying due balances through the node's wallet, two-phase:
//! 1. build and sign one transaction for every due user (`send` with
//!    `add_to_wallet` false: nothing is broadcast);
//! 2. write it to the books (state `signed`: its hex, its items and the
//!    debit of each balance) in one database transaction;
//! 3. broadcast it, then mark it `broadcast`; `confirmed` once it is
//!    `confirmations` deep.
//!
//! A kill between any two steps pays nobody twice: before 2 nothing was
//! broadcast (the signed transaction is simply forgotten); after 2 the next
//! round finds the batch open and broadcasts the same transaction again (a
//! node answers a transaction it already has with its txid), and no new
//! batch is built while one is open. A batch is taken back (balances
//! restored) only when it can never confirm: the wallet sees it conflicted,
//! or its inputs are spent by another confirmed transaction.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Address, Amount, Transaction};
use sluice_bus::{Producer, Topic};
use sluice_core::record::{Event, EventKind, PayoutNews, PayoutState};
use sluice_ledger::books;
use sluice_node::{Broadcast, Wallet};
use sluice_service::Health;
use sluice_store::{Due, OpenPayout, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::failpoint;
use crate::metrics::{PayerMetrics, StepLabel};
use crate::{Config, PayoutConfig};

/// Core's RPC_VERIFY_ERROR: the inputs are missing or spent.
const MISSING_INPUTS: i32 = -25;
/// Core's RPC_WALLET_INSUFFICIENT_FUNDS.
const INSUFFICIENT_FUNDS: i32 = -6;

/// A batch's line: user, address, satoshis.
type Item = (u32, String, u64);

/// What paying needs.
pub(crate) struct Paymaster<'a> {
    pub(crate) config: &'a Config,
    pub(crate) payouts: &'a PayoutConfig,
    pub(crate) store: &'a Store,
    pub(crate) health: &'a Health,
    pub(crate) metrics: &'a PayerMetrics,
    pub(crate) wallet: Wallet,
    /// Where the news of each batch goes (the Event topic).
    pub(crate) events: Producer,
}

impl Paymaster<'_> {
    /// Pays every `interval_secs` until `term` ends.
    pub(crate) async fn run(&self, term: &CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(self.payouts.interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = term.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            match self.round().await {
                Ok(summary) => self.health.set("payouts", true, summary),
                Err(error) => {
                    self.health.set("payouts", false, format!("{error:#}"));
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "payout round failed; nothing was marked paid"
                    );
                }
            }
        }
    }

    async fn round(&self) -> anyhow::Result<String> {
        for open in self.store.open_payouts().await? {
            if let Some(waiting) = self.reconcile(&open).await? {
                return Ok(waiting);
            }
        }
        self.pay().await
    }

    /// Moves an open batch on; `Some(why)` while it stays open.
    async fn reconcile(&self, open: &OpenPayout) -> anyhow::Result<Option<String>> {
        let tx: Transaction = hex::decode(&open.tx_hex)
            .ok()
            .and_then(|raw| deserialize(&raw).ok())
            .ok_or_else(|| {
                anyhow::anyhow!("payout {}: its stored transaction does not decode", open.id)
            })?;
        let txid = tx.compute_txid();
        let depth = self.wallet.confirmations(txid).await?;
        if let Some(c) = depth {
            if c < 0 {
                return self
                    .fail(open, "conflicted: another transaction spent its inputs")
                    .await;
            }
            if open.state == "signed" {
                self.mark_broadcast(open).await?;
            }
            if c >= i64::from(self.payouts.confirmations) {
                self.confirm(open).await?;
                return Ok(None);
            }
            return Ok(Some(format!(
                "payout {} ({txid}) at {c} confirmations",
                open.id
            )));
        }
        // The wallet does not know it: never broadcast, or forgotten.
        match self.wallet.broadcast(&tx).await? {
            Broadcast::Accepted(_) | Broadcast::AlreadyInChain => {
                self.mark_broadcast(open).await?;
                Ok(Some(format!("payout {} ({txid}) broadcast", open.id)))
            }
            Broadcast::Refused(MISSING_INPUTS, why) => {
                // A node still catching up may not have seen the coins yet:
                // only a synced node's word that they are gone takes it back.
                if self.wallet.catching_up().await? {
                    return Ok(Some(format!(
                        "payout {} ({txid}) refused for missing inputs by a node in initial block download; kept open until it is synced",
                        open.id
                    )));
                }
                self.fail(open, &why).await
            }
            Broadcast::Refused(code, why) => Ok(Some(format!(
                "payout {} ({txid}) refused by the node ({code}: {why}); kept open, not rebuilt",
                open.id
            ))),
        }
    }

    async fn mark_broadcast(&self, open: &OpenPayout) -> anyhow::Result<()> {
        if self
            .store
            .settle_payout(open.id, "signed", "broadcast", None, None)
            .await?
        {
            tracing::info!(id = open.id, txid = open.txid, "payout broadcast");
            self.tell(open.id, PayoutState::Broadcast).await;
        }
        Ok(())
    }

    /// Publishes batch `id`'s news (best effort: the books are the record).
    async fn tell(&self, id: u64, state: PayoutState) {
        let Ok(Some(row)) = self.store.payout(id).await else {
            return;
        };
        let Ok(txid) = bitcoin::Txid::from_str(&row.txid) else {
            return;
        };
        let event = Event {
            timestamp_ms: sluice_service::now_ms(),
            kind: EventKind::Payout(PayoutNews {
                id,
                txid,
                state,
                total_sat: row.total,
                network_fee_sat: row.network_fee,
                users: row.users,
                error: row.error.unwrap_or_default(),
            }),
        };
        let topic = Topic::<Event>::new(self.config.kafka.topics.event.clone());
        if let Err(error) = self.events.send(&topic, b"payer", &event).await {
            tracing::warn!(%error, id, "payout news not published");
        }
    }

    async fn confirm(&self, open: &OpenPayout) -> anyhow::Result<()> {
        let signed = self
            .store
            .payout_txn(open.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payout {} has no ledger transaction", open.id))?;
        let txn = books::payout_confirmed(&signed);
        if self
            .store
            .settle_payout(open.id, "broadcast", "confirmed", None, Some(&txn))
            .await?
        {
            self.metrics
                .payouts
                .get_or_create(&StepLabel { step: "confirmed" })
                .inc();
            tracing::info!(id = open.id, txid = open.txid, "payout confirmed");
            self.tell(open.id, PayoutState::Confirmed).await;
        }
        Ok(())
    }

    /// Takes a batch that can never confirm back: its users' balances
    /// return. `None`: the next round may pay again.
    async fn fail(&self, open: &OpenPayout, why: &str) -> anyhow::Result<Option<String>> {
        let signed = self
            .store
            .payout_txn(open.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payout {} has no ledger transaction", open.id))?;
        let txn = books::payout_failed(&signed);
        if self
            .store
            .settle_payout(open.id, &open.state, "failed", Some(why), Some(&txn))
            .await?
        {
            self.metrics
                .payouts
                .get_or_create(&StepLabel { step: "failed" })
                .inc();
            tracing::error!(
                id = open.id,
                txid = open.txid,
                why,
                "payout failed; its users' balances are back"
            );
            self.tell(open.id, PayoutState::Failed).await;
        }
        Ok(None)
    }

    /// Reports in /health whether the wallet covers what is due.
    fn wallet_short(&self, spendable: u64, short: u64) {
        if short == 0 {
            self.health
                .set("wallet", true, format!("{spendable} sat spendable"));
        } else {
            tracing::warn!(
                spendable,
                short,
                "the wallet cannot pay every due balance; paying what it can"
            );
            self.health.set(
                "wallet",
                false,
                format!("{spendable} sat spendable, {short} sat due that it cannot pay now"),
            );
        }
    }

    /// The users of `due` paid from `available` satoshis, the largest
    /// balances first: the items, what stays owed, and the outputs.
    fn batch(&self, due: &[Due], mut available: u64) -> (Vec<Item>, u64, Vec<(Address, Amount)>) {
        let network = self.config.network();
        let (mut items, mut short) = (Vec::new(), 0u64);
        let mut outputs: BTreeMap<String, (Address, Amount)> = BTreeMap::new();
        for d in due {
            let Some(address) = Address::from_str(&d.address)
                .ok()
                .and_then(|a| a.require_network(network).ok())
            else {
                tracing::warn!(user = d.user_id, address = d.address, %network, "payout address is not one of this network's; not paid");
                continue;
            };
            let amount = d.balance.min(available);
            short += d.balance - amount;
            if amount < d.balance.min(self.payouts.min_payout_sat) || amount == 0 {
                continue;
            }
            available -= amount;
            outputs
                .entry(address.to_string())
                .or_insert((address, Amount::ZERO))
                .1 += Amount::from_sat(amount);
            items.push((d.user_id, d.address.clone(), amount));
        }
        (items, short, outputs.into_values().collect())
    }

    /// Builds, records and broadcasts a batch for every due user.
    async fn pay(&self) -> anyhow::Result<String> {
        let due = self
            .store
            .due_payouts(self.payouts.min_payout_sat, self.payouts.max_users)
            .await?;
        if due.is_empty() {
            return Ok("nothing due".into());
        }
        // What the wallet can spend, less room for the fee: a wallet short of
        // what the books owe pays what it can, the largest balances first,
        // and says so; the rest stays owed. The room is for the batch's
        // outputs and a few inputs; a wallet whose balance is many coins
        // needs more, so when Core answers "Insufficient funds" (-6) to a
        // batch that spends nearly all of it, the room grows fourfold.
        let spendable = self.wallet.balances().await?.trusted.to_sat();
        let mut reserve = self.payouts.fee_rate_sat_vb * (1_000 + 50 * due.len() as u64);
        let (items, built) = loop {
            let (items, short, outputs) = self.batch(&due, spendable.saturating_sub(reserve));
            self.wallet_short(spendable, short);
            if items.is_empty() {
                anyhow::bail!(
                    "Insufficient funds: the wallet can spend {spendable} sat, the books owe {short} sat due"
                );
            }
            failpoint::reach("before_build").await;
            if !self.payouts.wallet_passphrase.is_empty() {
                self.wallet
                    .unlock(&self.payouts.wallet_passphrase, 60)
                    .await?;
            }
            match self
                .wallet
                .build(&outputs, self.payouts.fee_rate_sat_vb)
                .await
            {
                Ok(built) => break (items, built),
                Err(e)
                    if short > 0
                        && reserve < spendable
                        && e.rpc_error()
                            .is_some_and(|(code, _)| code == INSUFFICIENT_FUNDS) =>
                {
                    reserve = reserve.saturating_mul(4);
                    tracing::info!(
                        reserve,
                        "the wallet's coins need more fee than the room left; paying less"
                    );
                }
                Err(e) => anyhow::bail!("building the payout: {e}"),
            }
        };
        failpoint::reach("after_sign").await;
        let txid = built.tx.compute_txid();
        let fee = built.fee.to_sat();
        let amounts: BTreeMap<u32, u64> = items.iter().map(|(u, _, a)| (*u, *a)).collect();
        let hex = hex::encode(serialize(&built.tx));
        let id = match self
            .store
            .record_payout(&txid.to_string(), &hex, fee, &items, |id| {
                books::payout(id, &amounts, fee)
            })
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(why)) => return Ok(format!("not paid: {why}")),
            Err(e) => return Err(e.into()),
        };
        let total: u64 = amounts.values().sum();
        self.metrics
            .payouts
            .get_or_create(&StepLabel { step: "signed" })
            .inc();
        self.metrics.paid.inc_by(total);
        tracing::info!(id, %txid, users = items.len(), total, fee, "payout signed and recorded; broadcasting");
        failpoint::reach("after_record").await;
        let open = OpenPayout {
            id,
            state: "signed".into(),
            txid: txid.to_string(),
            tx_hex: hex,
        };
        let sent = self.wallet.broadcast(&built.tx).await;
        failpoint::reach("after_broadcast").await;
        match sent {
            Ok(Broadcast::Accepted(_) | Broadcast::AlreadyInChain) => {
                self.mark_broadcast(&open).await?
            }
            Ok(Broadcast::Refused(code, why)) => {
                tracing::warn!(
                    id,
                    code,
                    why,
                    "payout refused by the node; the next round looks again"
                )
            }
            Err(error) => {
                tracing::warn!(id, %error, "broadcasting failed; the next round sends it again")
            }
        }
        Ok(format!(
            "payout {id}: {total} sat to {} users, fee {fee}",
            items.len()
        ))
    }
}
