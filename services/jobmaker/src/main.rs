//! `jobmaker -c jobmaker.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<jobmaker::Config, _, _>("jobmaker", jobmaker::run)
}
