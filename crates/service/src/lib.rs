//! Shared scaffolding for every Sluice binary: `-c config.toml` loading with
//! unknown keys rejected (exit 64), tracing (human or JSON), SIGTERM/SIGINT
//! drain bounded by a grace period, and the admin HTTP server with
//! `/metrics` (Prometheus) and `/health`.
//!
//! A service is a library function `run(config, ctx)`; its `main` is
//! [`main`]`::<Config, _>("name", run)`.

mod admin;
mod backoff;
mod config;
mod health;
mod shutdown;

pub use admin::{AdminServer, Metrics};
pub use backoff::Backoff;
pub use config::{
    Cli, CommonConfig, ConfigError, LogFormat, Validate, default_true, init_tracing, load_config,
};
pub use health::{ComponentHealth, Health};
pub use shutdown::{Shutdown, drain, wait_for_signal};

use std::future::Future;
use std::process::ExitCode;

use clap::Parser;

/// This machine's host name (`/etc/hostname`, else `$HOSTNAME`, else
/// `localhost`): the default instance name and the host in heartbeats.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Unix time in milliseconds, as message timestamps carry it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Exit code for a configuration error (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure (BSD `EX_SOFTWARE`).
pub const EXIT_FAILURE: u8 = 70;

/// What a running service is handed besides its configuration.
#[derive(Clone, Debug)]
pub struct Context {
    /// Cancelled on SIGTERM/SIGINT; tasks are tracked for the drain.
    pub shutdown: Shutdown,
    /// Components report here; `/health` serves it.
    pub health: Health,
    /// Register metrics here; `/metrics` serves it.
    pub metrics: Metrics,
}

/// The whole `main` of a service: parse the CLI, load and validate the
/// config (exit 64 with one line on error), start tracing, serve the admin
/// endpoints, run until a signal, drain within the grace period.
pub fn main<C, F, Fut>(name: &'static str, run: F) -> ExitCode
where
    C: serde::de::DeserializeOwned + Validate + AsRef<CommonConfig>,
    F: FnOnce(C, Context) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::parse();
    let config: C = match load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    config::init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let common = config.as_ref().clone();
        let ctx = Context { shutdown: Shutdown::new(), health: Health::default(), metrics: Metrics::default() };
        let admin = match AdminServer::bind(common.admin_listen, ctx.health.clone(), ctx.metrics.clone()).await {
            Ok(a) => a,
            Err(error) => {
                tracing::error!(%error, listen = %common.admin_listen, "cannot serve the admin endpoints");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        ctx.shutdown.tracker().spawn(admin.serve(ctx.shutdown.token().clone()));
        ctx.shutdown.tracker().spawn(wait_for_signal(ctx.shutdown.token().clone()));
        tracing::info!(service = name, version = env!("CARGO_PKG_VERSION"), "starting");
        let result = run(config, ctx.clone()).await;
        ctx.shutdown.token().cancel();
        let drained = drain(&ctx.shutdown, common.shutdown_grace()).await;
        match (result, drained) {
            (Ok(()), true) => {
                tracing::info!(service = name, "stopped");
                ExitCode::SUCCESS
            }
            (Ok(()), false) => {
                tracing::error!(service = name, grace = ?common.shutdown_grace(), "drain exceeded the grace period");
                ExitCode::from(EXIT_FAILURE)
            }
            (Err(error), _) => {
                tracing::error!(service = name, error = format!("{error:#}"), "failed");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}
