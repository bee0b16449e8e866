//! Standing for election, and leading while elected (`term.rs`).

use std::sync::Arc;

use sluice_coord::{Candidate, Coord};
use sluice_service::Context;

use crate::Config;
use crate::Payout;
use crate::metrics::JobMetrics;
use crate::term::lead;

/// Campaigns on `coord` and leads whenever elected, until shutdown (Ok) or
/// until the session is unusable (Err: the caller reconnects).
pub(crate) async fn campaign(
    config: &Config,
    ctx: &Context,
    metrics: &JobMetrics,
    coord: &Coord,
    payout: &Payout,
    info: &[u8],
) -> anyhow::Result<()> {
    let token = ctx.shutdown.token().clone();
    let candidate = Arc::new(coord.candidate("jobmaker", info).await?);
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
    // The term ends when shutdown is asked or our election node is gone.
    let term = token.child_token();
    let watcher = {
        let (candidate, term) = (candidate.clone(), term.clone());
        tokio::spawn(async move {
            candidate.lost().await;
            term.cancel();
        })
    };
    metrics.leader.set(1);
    let result = lead(config, ctx, metrics, payout, epoch, &term).await;
    metrics.leader.set(0);
    watcher.abort();
    if token.is_cancelled() {
        if let Ok(candidate) = Arc::try_unwrap(candidate) {
            candidate.resign().await?;
        }
        return result;
    }
    result?;
    anyhow::bail!("leadership (epoch {epoch}) lost")
}
