//! One shutdown pattern: a cancellation token every task watches, a tracker
//! that knows which tasks are still running, and a drain bounded by a grace
//! period.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The token and tracker of one service. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, uncancelled shutdown.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Cancelled when the service must stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawn long-running tasks here so the drain waits for them.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn wait_for_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL only");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
        () = token.cancelled() => return,
    }
    token.cancel();
}

/// Cancels, then waits for every tracked task, at most `grace`. True if all
/// finished in time.
pub async fn drain(shutdown: &Shutdown, grace: Duration) -> bool {
    shutdown.token.cancel();
    shutdown.tracker.close();
    tokio::time::timeout(grace, shutdown.tracker.wait())
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_that_stop_on_cancel() {
        let s = Shutdown::new();
        let token = s.token().clone();
        s.tracker().spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(200)).await; // flushing
        });
        assert!(drain(&s, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let s = Shutdown::new();
        s.tracker().spawn(std::future::pending::<()>());
        let start = tokio::time::Instant::now();
        assert!(!drain(&s, Duration::from_secs(5)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
