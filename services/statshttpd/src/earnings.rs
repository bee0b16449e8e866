//! What the books say, for miners and operators: `/api/v1/users/{name}/earnings`
//! (a user's balances, each block's share of work with the window it was
//! split by, their payouts and entries: enough to redo their own split)
//! and `/api/v1/payouts` (the pool's owed, paid and in-flight satoshis and
//! its newest batches). Answered from the payer's tables; read only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use sluice_api::{Balances, Earnings};
use sluice_ledger::books::{Account, POOL};

use crate::Stats;
use crate::api::{error, find_user, reply};

/// Blocks, payouts and entries listed, the newest first.
const LISTED: u32 = 100;

fn unavailable(stats: &Stats, e: impl std::fmt::Display) -> Response {
    error(
        stats,
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read the books: {e}"),
    )
}

/// `/api/v1/users/{name}/earnings`.
pub(crate) async fn user_earnings(
    State(stats): State<Arc<Stats>>,
    Path(name): Path<String>,
) -> Response {
    let id = match find_user(&stats, &name).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let store = &stats.store;
    let answer = async {
        let balances = store.user_balances(id).await?;
        let payouts = store.user_payouts(id, LISTED).await?;
        let sum = |state: &str| -> u64 {
            payouts
                .iter()
                .filter(|p| p.state == state)
                .map(|p| p.amount)
                .sum()
        };
        let (address, min_payout) = store.payout_address(id).await?.unzip();
        Ok::<_, sluice_store::StoreError>(Earnings {
            user_id: id,
            name: name.clone(),
            address,
            min_payout: min_payout.flatten(),
            balances: Balances {
                immature: balances.get(&Account::Immature(id)).copied().unwrap_or(0),
                payable: balances.get(&Account::Balance(id)).copied().unwrap_or(0),
                in_flight: sum("signed") + sum("broadcast"),
                paid: sum("confirmed"),
            },
            blocks: store.earned_blocks(id, LISTED).await?,
            entries: store.user_entries(id, LISTED).await?,
            payouts,
        })
    };
    match answer.await {
        Ok(e) => reply(&stats, StatusCode::OK, &e),
        Err(e) => unavailable(&stats, e),
    }
}

/// `/api/v1/payouts`.
pub(crate) async fn payouts(State(stats): State<Arc<Stats>>) -> Response {
    let answer = async {
        let all = stats.store.ledger_balances().await?;
        let users = |f: fn(&Account) -> bool| -> i64 {
            all.iter().filter(|(a, _)| f(a)).map(|(_, v)| v).sum()
        };
        // The store lists batches as the API's type.
        let payouts = stats.store.payouts(LISTED).await?;
        Ok::<_, sluice_store::StoreError>(sluice_api::PoolBooks {
            owed: users(|a| matches!(a, Account::Balance(u) if *u != POOL)),
            immature: users(|a| matches!(a, Account::Immature(u) if *u != POOL)),
            in_flight: all.get(&Account::InFlight).copied().unwrap_or(0),
            paid: all.get(&Account::Paid).copied().unwrap_or(0),
            pool: all.get(&Account::Balance(POOL)).copied().unwrap_or(0),
            payouts,
        })
    };
    match answer.await {
        Ok(b) => reply(&stats, StatusCode::OK, &b),
        Err(e) => unavailable(&stats, e),
    }
}
