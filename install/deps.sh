#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh Debian 12 machine, as root.
# Idempotent: what is already there is skipped, so a second run takes seconds.
#
#   Debian packages: ZooKeeper, MariaDB, supervisor, and the C toolchain that
#                    rdkafka's vendored librdkafka build needs.
#   tansu:           an Apache-Kafka-compatible broker (crates.io), built once
#                    into $SLUICE_TOOLS. Operators with a real Kafka cluster can
#                    skip it (SLUICE_SKIP_TANSU=1) and set SLUICE_KAFKA_BROKERS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (apt-get and /opt need it)"

PACKAGES=(zookeeper mariadb-server mariadb-client supervisor cmake build-essential pkg-config
          python3 curl netcat-openbsd procps)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

if [ "${SLUICE_SKIP_TANSU:-0}" = 1 ]; then
    log "SLUICE_SKIP_TANSU=1: not building tansu; using the broker at $SLUICE_KAFKA_BROKERS"
elif "$SLUICE_TOOLS/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "tansu $TANSU_VERSION present"
else
    command -v cargo >/dev/null || die "cargo not found: tansu is built from crates.io"
    log "building tansu $TANSU_VERSION into $SLUICE_TOOLS (about 13 minutes on 2 cores, once)"
    build_dir=$(mktemp -d /var/tmp/tansu-build.XXXXXX)
    trap 'rm -rf "$build_dir"' EXIT
    CARGO_TARGET_DIR="$build_dir" cargo install tansu --version "$TANSU_VERSION" --locked \
        --features libsql --root "$SLUICE_TOOLS" --quiet
    "$SLUICE_TOOLS/bin/tansu" --version >/dev/null || die "tansu built but does not run"
    log "tansu installed"
fi
