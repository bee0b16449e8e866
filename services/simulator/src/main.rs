//! `simulator -n 1000 --rate 5000 --duration 60 [--json]`: see the library docs.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use simulator::{Counters, Options};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(version, about = "Many Stratum miners from one process")]
struct Cli {
    #[command(flatten)]
    options: Options,
    /// Print the final report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// No live progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.options.validate() {
        eprintln!("simulator: {e}");
        return ExitCode::from(64);
    }
    sluice_service_free_tracing();
    match simulator::raise_file_limit() {
        Ok(limit) if (limit as usize) < cli.options.connections + 64 => {
            eprintln!(
                "simulator: the open-file limit is {limit}, too low for {} connections",
                cli.options.connections
            );
            return ExitCode::from(64);
        }
        Ok(_) => {}
        Err(e) => eprintln!("simulator: cannot raise the open-file limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("simulator: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async move {
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let ctrl_c = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            ctrl_c.cancel();
        });
        if !cli.quiet {
            tokio::spawn(progress(
                counters.clone(),
                cli.options.connections,
                stop.clone(),
            ));
        }
        let report = simulator::run(cli.options, counters, stop.clone()).await;
        stop.cancel();
        match report {
            Ok(r) if cli.json => {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(r) => {
                eprintln!();
                print!("{}", r.table());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("simulator: {e:#}");
                ExitCode::from(70)
            }
        }
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default warnings only).
fn sluice_service_free_tracing() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .finish(),
    );
}

/// One line on stderr every second: connected, shares/s, accepted, rejected.
async fn progress(c: Arc<Counters>, target: usize, stop: CancellationToken) {
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let answered = c.accepted.load(Ordering::Relaxed) + c.rejected.load(Ordering::Relaxed);
        let rate = (answered - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (Instant::now(), answered);
        eprint!(
            "\r[{:>5.0} s] connected {}/{}  shares/s {:>8.0}  accepted {}  rejected {}  reconnects {}   ",
            started.elapsed().as_secs_f64(),
            c.connected.load(Ordering::Relaxed),
            target,
            rate,
            c.accepted.load(Ordering::Relaxed),
            c.rejected.load(Ordering::Relaxed),
            c.reconnects.load(Ordering::Relaxed),
        );
    }
}
