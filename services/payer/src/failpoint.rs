//! Where the payout drill kills the payer: with `SLUICE_PAYER_FAILPOINT`
//! set to a step's name (`before_build`, `after_sign`, `after_record`,
//! `after_broadcast`), the payer logs that it reached the step and waits
//! there, for the drill's `kill -9`. Unset (always, in production) a step
//! is passed without a pause.

use std::sync::OnceLock;

/// The environment variable naming the step to stop at.
pub(crate) const VAR: &str = "SLUICE_PAYER_FAILPOINT";

/// Stops here for good if the drill asked for `step`.
pub(crate) async fn reach(step: &'static str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(VAR).ok());
    if chosen.as_deref() == Some(step) {
        tracing::warn!(step, "failpoint reached: waiting to be killed");
        std::future::pending::<()>().await;
    }
}
