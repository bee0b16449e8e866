//! blkmaker's `main`, built into this package so the end-to-end drills can
//! run it as a process (cargo hands a package's tests only its own binaries).

fn main() -> std::process::ExitCode {
    sluice_service::main::<blkmaker::Config, _, _>("blkmaker", blkmaker::run)
}
