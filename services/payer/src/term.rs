//! Standing for election, and keeping the books while elected.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sluice_bus::Producer;
use sluice_coord::{Candidate, Coord};
use sluice_node::Wallet;
use sluice_service::Context;
use sluice_store::Store;

use crate::Config;
use crate::blocks::Keeper;
use crate::ingest::Reader;
use crate::metrics::PayerMetrics;
use crate::payouts::Paymaster;

/// Campaigns on `coord` and keeps the books whenever elected, until
/// shutdown (Ok) or until the session is unusable (Err: reconnect).
pub(crate) async fn campaign(
    config: &Config,
    ctx: &Context,
    metrics: &PayerMetrics,
    coord: &Coord,
    info: &[u8],
) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let candidate = Arc::new(coord.candidate("payer", info).await?);
    ctx.health.set(
        "zookeeper",
        true,
        format!("standby (candidate epoch {})", candidate.epoch()),
    );
    let leadership = tokio::select! {
        () = token.cancelled() => {
            let _ = Arc::try_unwrap(candidate).map(Candidate::resign);
            return Ok(());
        }
        state = coord.session_ended() => anyhow::bail!("zookeeper session ended ({state:?}) while standing by"),
        lead = candidate.leadership() => lead?,
    };
    let epoch = leadership.epoch;
    ctx.health
        .set("zookeeper", true, format!("leader, epoch {epoch}"));
    tracing::info!(epoch, "keeping the books");
    let term = token.child_token();
    let watcher = {
        let (candidate, term) = (candidate.clone(), term.clone());
        tokio::spawn(async move {
            candidate.lost().await;
            term.cancel();
        })
    };
    metrics.leader.set(1);
    let store = Store::new(&config.mysql.url)?;
    let reader = Reader {
        config,
        store: &store,
        health: &ctx.health,
        metrics,
    };
    let keeper = Keeper {
        config,
        store: &store,
        health: &ctx.health,
        metrics,
        pps_at: AtomicU64::new(0),
        gauges_at: AtomicU64::new(0),
        pruned_at: AtomicU64::new(0),
    };
    let paymaster = match &config.payouts {
        Some(p) => Some(Paymaster {
            config,
            payouts: p,
            store: &store,
            health: &ctx.health,
            metrics,
            wallet: Wallet::new(
                &p.node,
                Some(&p.wallet),
                Duration::from_secs(p.rpc_timeout_secs),
            )?,
            events: Producer::new(&config.kafka, 0)?,
        }),
        None => None,
    };
    let paying = async {
        match &paymaster {
            Some(p) => p.run(&term).await,
            None => {
                term.cancelled().await;
                Ok(())
            }
        }
    };
    // Any one ending ends the term: the others are stopped with it.
    let result = tokio::select! {
        r = reader.run(&term) => r,
        r = keeper.run(&term) => r,
        r = paying => r,
    };
    term.cancel();
    metrics.leader.set(0);
    watcher.abort();
    store.close().await;
    if token.is_cancelled() {
        if let Ok(candidate) = Arc::try_unwrap(candidate) {
            candidate.resign().await?;
        }
        return result;
    }
    result?;
    anyhow::bail!("leadership (epoch {epoch}) lost")
}
