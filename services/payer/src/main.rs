//! `payer -c payer.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<payer::Config, _, _>("payer", payer::run)
}
