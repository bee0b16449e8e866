//! The smallest service built on the scaffolding: it reports itself healthy,
//! waits for a signal, and takes `drain_ms` to drain. tests/lifecycle.rs runs
//! it as a real process to check what every Sluice service inherits.

use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use sluice_service::{CommonConfig, Context, Validate};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    service: CommonConfig,
    /// How long the pretend flush after SIGTERM takes.
    drain_ms: u64,
}

impl AsRef<CommonConfig> for Config {
    fn as_ref(&self) -> &CommonConfig {
        &self.service
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        if self.drain_ms > 60_000 {
            return Err("drain_ms must be at most 60000".to_owned());
        }
        Ok(())
    }
}

async fn run(config: Config, ctx: Context) -> anyhow::Result<()> {
    ctx.health.set("idle", true, "waiting for a signal");
    let token = ctx.shutdown.token().clone();
    let drain = Duration::from_millis(config.drain_ms);
    ctx.shutdown.tracker().spawn(async move {
        token.cancelled().await;
        tokio::time::sleep(drain).await;
        tracing::info!("flushed");
    });
    ctx.shutdown.token().cancelled().await;
    Ok(())
}

fn main() -> ExitCode {
    sluice_service::main::<Config, _, _>("idle_service", run)
}
