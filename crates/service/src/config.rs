//! Command line and TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The command line every service shares. Runtime knobs are flags; what the
/// service does is in the config file.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct Cli {
    /// Path of the TOML configuration.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Log output: `human` for terminals, `json` for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// A configuration's own consistency checks, run after parsing.
pub trait Validate {
    /// A one-line reason if the configuration cannot work.
    fn validate(&self) -> Result<(), String>;
}

/// Settings every service has: its `[service]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommonConfig {
    /// Instance name, unique per service (defaults to the host name).
    pub instance: String,
    /// Address of `/metrics` and `/health`.
    pub admin_listen: SocketAddr,
    /// How long SIGTERM may take to drain; supervisor's `stopwaitsecs` must be longer.
    pub shutdown_grace_secs: u64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig {
            instance: crate::host_name(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            shutdown_grace_secs: 10,
        }
    }
}

impl CommonConfig {
    /// The defaults with the admin endpoints on 127.0.0.1:`PORT`: a
    /// service's `[service]` default, as
    /// `#[serde(default = "CommonConfig::on_port::<9104>")]`.
    pub fn on_port<const PORT: u16>() -> Self {
        CommonConfig {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], PORT)),
            ..CommonConfig::default()
        }
    }

    /// The drain grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

impl AsRef<CommonConfig> for CommonConfig {
    fn as_ref(&self) -> &CommonConfig {
        self
    }
}

/// Why a configuration file cannot be used. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// toml's message, flattened to one line.
        message: String,
    },
    /// Parsed, but inconsistent.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// The service's reason.
        message: String,
    },
}

/// Reads, parses (unknown keys are errors when the type says
/// `deny_unknown_fields`) and validates a TOML configuration.
pub fn load_config<C: serde::de::DeserializeOwned + Validate>(
    path: &Path,
) -> Result<C, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: C = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: one_line(&e),
    })?;
    config.validate().map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    Ok(config)
}

/// toml's errors span several lines (with a source excerpt); keep the line
/// number and the reason.
fn one_line(e: &toml::de::Error) -> String {
    let reason = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => format!("{reason} (at byte {})", span.start),
        None => reason,
    }
}

/// Installs the global tracing subscriber; `RUST_LOG` filters (default info).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: supervisord writes stderr to a file,
    // where escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Serde's default for a switch that is on unless a config turns it off:
/// `#[serde(default = "sluice_service::default_true")]`.
pub fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default = "CommonConfig::on_port::<9109>")]
        service: CommonConfig,
        port: u16,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            if self.port == 0 {
                Err("port must not be 0".into())
            } else {
                Ok(())
            }
        }
    }

    fn load(text: &str) -> Result<Sample, ConfigError> {
        let dir = std::env::temp_dir().join(format!("sluice-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.toml",
            text.len() * 7919 + text.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&path, text).unwrap();
        load_config(&path)
    }

    #[test]
    fn a_good_config_loads_with_defaults() {
        let c = load("port = 3333\n").unwrap();
        assert_eq!(c.port, 3333);
        assert_eq!(c.service.admin_listen, "127.0.0.1:9109".parse().unwrap());
        assert_eq!(
            (c.service.instance, c.service.shutdown_grace_secs),
            (CommonConfig::default().instance, 10)
        );
        let c = load(
            "port = 1\n[service]\nadmin_listen = \"127.0.0.1:9103\"\nshutdown_grace_secs = 3\n",
        )
        .unwrap();
        assert_eq!(c.service.admin_listen.port(), 9103);
        assert_eq!(c.service.shutdown_grace(), Duration::from_secs(3));
    }

    #[test]
    fn unknown_keys_are_one_line_errors_naming_the_key() {
        let e = load("port = 1\nprot = 2\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `prot`"), "{e}");
        assert!(!e.contains('\n'), "{e:?}");
        let e = load("port = 1\n[service]\nadmin = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `admin`"), "{e}");
    }

    #[test]
    fn wrong_types_and_failed_validation_are_errors() {
        let e = load("port = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = load("port = 0\n").unwrap_err().to_string();
        assert!(e.ends_with("port must not be 0"), "{e}");
        let e = load_config::<Sample>(Path::new("/nonexistent/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config /nonexistent/x.toml"),
            "{e}"
        );
    }
}
