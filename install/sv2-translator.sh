#!/usr/bin/env bash
# SRI's translator_sv2 (a Stratum V1 -> V2 proxy from the crates registry),
# the SV2 peer nobody here wrote that command 2's interop test puts in front
# of the simulator's V1 miners (integration-tests/tests/sv2.rs). Operators
# with V1 farms can run it too: README, "Stratum V2".
#
#   install/sv2-translator.sh    # into $SLUICE_TOOLS/translator/bin (skipped when there)
#
# Built without its default `monitoring` feature (HTTP monitoring, ASIC
# telemetry): about 2 minutes on 2 cores, once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VERSION=0.6.0
ROOT=$SLUICE_TOOLS/translator
if [ "$("$ROOT/bin/translator_sv2" --version 2>/dev/null)" = "translator_sv2 $VERSION" ]; then
    log "translator_sv2 $VERSION present ($ROOT/bin)"
    exit 0
fi
log "installing SRI's translator_sv2 $VERSION from crates.io into $ROOT (about 2 minutes, once)"
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/cargo-install cargo install --quiet --locked translator_sv2 \
    --version "$VERSION" --no-default-features --root "$ROOT" \
    || die "cargo could not build translator_sv2 $VERSION"
log "translator_sv2: $("$ROOT/bin/translator_sv2" --version)"
