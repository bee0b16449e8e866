//! `sharelog`: the share log files of statshttpd, offline.
//!
//! - `sharelog -c statshttpd.toml replay 2026-11-21` rewrites that day's
//!   hourly and daily `stats_*` rows from its file.
//! - `sharelog -c statshttpd.toml dump 2026-11-21 [--user ID]` prints its
//!   shares, one JSON object per line.
//! - `sharelog -c statshttpd.toml verify 2026-11-21` rebuilds every share's
//!   header from its job (the Job topic) and checks the hash.
//!
//! Exit codes: 0 done (verify: every share checked out), 1 verify found bad
//! shares, 64 bad arguments or config, 70 failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_service::{EXIT_CONFIG, EXIT_FAILURE, LogFormat, init_tracing, load_config};
use statshttpd::{Config, parse_day, replay};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Replay, dump or verify statshttpd's daily share log files"
)]
struct Cli {
    /// statshttpd's configuration (data_dir, mysql, kafka, network).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rewrite the day's stats_* rows from its share log.
    Replay {
        /// The UTC day, YYYY-MM-DD.
        day: String,
    },
    /// Print the day's shares as JSON lines.
    Dump {
        /// The UTC day, YYYY-MM-DD.
        day: String,
        /// Only this user id's shares.
        #[arg(long)]
        user: Option<u32>,
    },
    /// Check every share of the day against its job from the Job topic.
    Verify {
        /// The UTC day, YYYY-MM-DD.
        day: String,
        /// The sserver's version_mask.
        #[arg(long, default_value = "1fffe000")]
        version_mask: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: Config = match load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sharelog: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(LogFormat::Human);
    let day_arg = match &cli.command {
        Command::Replay { day } | Command::Dump { day, .. } | Command::Verify { day, .. } => day,
    };
    let Some(day) = parse_day(day_arg) else {
        eprintln!("sharelog: {day_arg:?} is not a day (YYYY-MM-DD)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sharelog: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Replay { .. } => {
                let r = replay::replay(&config, day).await?;
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
                Ok(true)
            }
            Command::Dump { user, .. } => {
                replay::dump(&config, day, user, &mut out)?;
                Ok(true)
            }
            Command::Verify { version_mask, .. } => {
                let mask = u32::from_str_radix(version_mask.trim_start_matches("0x"), 16)
                    .map_err(|e| anyhow::anyhow!("--version-mask {version_mask:?}: {e}"))?;
                let v = replay::verify(&config, day, mask).await?;
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
                Ok(v.bad_count == 0)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let e: anyhow::Error = e;
            eprintln!("sharelog: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
