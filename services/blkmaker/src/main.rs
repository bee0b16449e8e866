//! `blkmaker -c blkmaker.toml`: see the library docs.

fn main() -> std::process::ExitCode {
    sluice_service::main::<blkmaker::Config, _, _>("blkmaker", blkmaker::run)
}
