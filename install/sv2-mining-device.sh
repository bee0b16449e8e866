#!/usr/bin/env bash
# SRI's mining_device (a CPU miner on a Stratum V2 standard channel, real
# hashing; the `mining_device` binary of integration_tests_sv2 on the crates
# registry): the SV2 device nobody here wrote that command 2's interop test
# mines through sserver with (integration-tests/tests/sv2.rs). It checks the
# merkle roots sserver computes for standard channels with SRI's own code.
#
#   install/sv2-mining-device.sh    # into $SLUICE_TOOLS/mining-device/bin (skipped when there)
#
# Only that binary is built (the crate's test framework, which downloads
# Bitcoin Core and cpuminer at run time, is not run): minutes on 2 cores, once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VERSION=0.6.0
ROOT=$SLUICE_TOOLS/mining-device
if [ "$("$ROOT/bin/mining_device" --version 2>/dev/null)" = "integration_tests_sv2 $VERSION" ]; then
    log "SRI's mining_device $VERSION present ($ROOT/bin)"
    exit 0
fi
# Its dependencies compile Bitcoin Core's Cap'n Proto schemas: capnp.
debian_packages capnproto libcapnp-dev
log "installing SRI's mining_device (integration_tests_sv2 $VERSION) from crates.io into $ROOT (minutes, once)"
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/cargo-install cargo install --quiet --locked integration_tests_sv2 \
    --version "$VERSION" --bin mining_device --root "$ROOT" \
    || die "cargo could not build integration_tests_sv2 $VERSION's mining_device"
log "mining_device: $("$ROOT/bin/mining_device" --version)"
