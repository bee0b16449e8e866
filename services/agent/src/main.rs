//! `agent -c agent.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<agent::Config, _, _>("agent", agent::run)
}
