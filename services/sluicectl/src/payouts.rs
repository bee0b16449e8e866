//! `sluicectl payouts …`: where users are paid, what the books owe them,
//! and the payout batches.

use std::str::FromStr;

use bitcoin::Address;
use clap::Subcommand;
use sluice_ledger::books::Account;
use sluice_store::Store;

use crate::Config;

/// What `sluicectl payouts` does.
#[derive(Debug, Subcommand)]
pub(crate) enum PayoutsCommand {
    /// Sets where a user is paid: an address of the pool's network, checked
    /// before it is written.
    Address {
        /// The account name.
        user: String,
        /// Their address.
        address: String,
        /// Their own threshold in satoshis (default: the payer's
        /// `min_payout_sat`).
        #[arg(long)]
        min_sat: Option<u64>,
        /// The pool's network: mainnet, testnet, testnet4, signet, regtest.
        #[arg(long, env = "SLUICE_NETWORK", default_value = "regtest")]
        network: String,
    },
    /// A user's account in the books, satoshis.
    Balance {
        /// The account name.
        user: String,
    },
    /// Redoes every credited block's split and every PPS credit from
    /// statshttpd's share log and compares them with the books, to the
    /// satoshi (exit 69 on any difference).
    Verify {
        /// statshttpd's data_dir.
        #[arg(long, default_value_t = state("sharelog"))]
        share_log: String,
        /// The payer's config (its network, scheme and fee).
        #[arg(long, default_value_t = state("config/payer.toml"))]
        payer_config: String,
    },
    /// The newest payout batches.
    List {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: u32,
    },
}

/// `$SLUICE_STATE/<path>` (`/var/lib/sluice` by default).
fn state(path: &str) -> String {
    let dir = std::env::var("SLUICE_STATE").unwrap_or_else(|_| "/var/lib/sluice".into());
    format!("{}/{path}", dir.trim_end_matches('/'))
}

pub(crate) async fn run(config: &Config, command: PayoutsCommand) -> anyhow::Result<()> {
    let store = Store::new(&config.mysql.url)?;
    let result = match command {
        PayoutsCommand::Address {
            user,
            address,
            min_sat,
            network,
        } => set_address(&store, &user, &address, min_sat, &network).await,
        PayoutsCommand::Balance { user } => balance(&store, &user).await,
        PayoutsCommand::List { count } => list(&store, count).await,
        PayoutsCommand::Verify {
            share_log,
            payer_config,
        } => verify(&store, share_log.as_ref(), payer_config.as_ref()).await,
    };
    store.close().await;
    result
}

async fn user_id(store: &Store, name: &str) -> anyhow::Result<u32> {
    store
        .user_by_name(name)
        .await?
        .map(|u| u.id)
        .ok_or_else(|| anyhow::anyhow!("no user {name:?} (users are made when they first mine)"))
}

async fn set_address(
    store: &Store,
    user: &str,
    address: &str,
    min_sat: Option<u64>,
    network: &str,
) -> anyhow::Result<()> {
    let network = sluice_core::network::parse_network(network).map_err(anyhow::Error::msg)?;
    let parsed = Address::from_str(address)
        .map_err(|e| anyhow::anyhow!("{address:?} is not a Bitcoin address: {e}"))?;
    let checked = parsed.require_network(network).map_err(|_| {
        anyhow::anyhow!("{address:?} is not an address of the pool's network ({network})")
    })?;
    let id = user_id(store, user).await?;
    store
        .set_payout_address(id, &checked.to_string(), min_sat)
        .await?;
    out!("user {user} (id {id}) is paid to {checked}");
    Ok(())
}

async fn balance(store: &Store, user: &str) -> anyhow::Result<()> {
    let id = user_id(store, user).await?;
    let b = store.user_balances(id).await?;
    let get = |a: Account| b.get(&a).copied().unwrap_or(0);
    let address = store.payout_address(id).await?;
    out!(
        "user {user} (id {id}): immature {} sat, payable {} sat, paid to {}",
        get(Account::Immature(id)),
        get(Account::Balance(id)),
        address.map_or("(no address set)".into(), |(a, _)| a)
    );
    Ok(())
}

async fn list(store: &Store, count: u32) -> anyhow::Result<()> {
    for p in store.payouts(count).await? {
        out!(
            "payout {} {} {}: {} sat to {} users, fee {} sat, {}{}",
            p.id,
            p.created_at,
            p.state,
            p.total,
            p.users,
            p.network_fee,
            p.txid,
            p.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    Ok(())
}

/// What verify needs of the payer's config (the rest is not read).
#[derive(Debug, serde::Deserialize)]
struct PayerFile {
    network: String,
    scheme: String,
    fee_bps: u32,
}

async fn verify(
    store: &Store,
    share_log: &std::path::Path,
    payer_config: &std::path::Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(payer_config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", payer_config.display()))?;
    let payer: PayerFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", payer_config.display()))?;
    let network =
        sluice_core::network::parse_network(&payer.network).map_err(anyhow::Error::msg)?;
    let fees = match payer.scheme.as_str() {
        "fpps" => Some(store.fpps_fees().await?),
        _ => None,
    };
    let pps = matches!(payer.scheme.as_str(), "pps" | "fpps").then_some(sluice_ledger::PpsTerms {
        network,
        fee_bps: payer.fee_bps,
        fees,
    });
    let report = payer::verify::verify(store, share_log, pps).await?;
    out!(
        "read {} shares from {} share log files; {} blocks and {} PPS credits redone",
        report.shares,
        report.files,
        report.blocks,
        report.pps_credits
    );
    if report.differences.is_empty() {
        out!("the books agree with the shares to the satoshi");
        return Ok(());
    }
    for d in &report.differences {
        out!("DIFFERS: {d}");
    }
    anyhow::bail!(
        "{} differences between the books and the shares",
        report.differences.len()
    )
}
