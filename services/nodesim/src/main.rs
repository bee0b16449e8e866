//! `nodesim -c nodesim.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<nodesim::Config, _, _>("nodesim", nodesim::run)
}
