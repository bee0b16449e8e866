//! `sserver -c sserver.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<sserver::Config, _, _>("sserver", sserver::run)
}
