#!/usr/bin/env bash
# The whole test suite: formatting, lints, then unit, property and adapter
# tests, the adapter tests against the real ZooKeeper, MariaDB and Kafka
# broker that install/stack.sh starts. Leaves the stack running for the next
# run (install/stack.sh down stops it); .ci/run stops it afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
log "cargo test"
cargo test --workspace --locked --no-fail-fast
