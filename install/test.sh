#!/usr/bin/env bash
# The whole test suite: formatting, lints, then unit, property and adapter
# tests, the adapter tests against the real ZooKeeper, MariaDB and Kafka
# broker that install/stack.sh starts, and last README command 1 itself
# (install/run.sh: the whole pool under supervisord, mining for a minute; it
# fails unless blocks are found, recorded and credited). Leaves the stack
# running for the next run (install/stack.sh down stops it); .ci/run stops it
# afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
# The local pool's services (from an earlier install/run.sh) would share the
# two cores with the tests; run.sh starts them again at the end.
supervisorctl_ stop nodesim gbtmaker jobmaker jobmaker-standby sserver blkmaker statshttpd >/dev/null || true
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
log "cargo test"
cargo test --workspace --locked --no-fail-fast
log "README command 1: install/run.sh"
bash install/run.sh
