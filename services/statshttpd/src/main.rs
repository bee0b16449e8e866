//! `statshttpd -c statshttpd.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<statshttpd::Config, _, _>("statshttpd", statshttpd::run)
}
