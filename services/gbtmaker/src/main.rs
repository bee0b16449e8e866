//! `gbtmaker -c gbtmaker.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<gbtmaker::Config, _, _>("gbtmaker", gbtmaker::run)
}
