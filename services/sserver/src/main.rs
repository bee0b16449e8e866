//! `sserver -c sserver.toml`: see the library docs.

/// mimalloc instead of glibc's malloc: per-share allocations (request
/// parsing, replies, share records, producer deliveries) made glibc's
/// allocator about a fifth of sserver's CPU at saturation (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice_service::main::<sserver::Config, _, _>("sserver", sserver::run)
}
