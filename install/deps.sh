#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh Debian 12 machine, as root.
# Idempotent: what is already there is skipped, so a second run takes seconds.
#
#   Debian packages: ZooKeeper, MariaDB, supervisor, OpenJDK 17 and Maven (for
#                    the Kafka broker), and the C toolchain that rdkafka's
#                    vendored librdkafka build needs.
#   Apache Kafka:    the broker's jars from Maven Central, resolved once by
#                    install/kafka/pom.xml into $SLUICE_TOOLS/kafka/libs.
#                    Operators with their own Kafka cluster can skip it
#                    (SLUICE_SKIP_KAFKA=1) and set SLUICE_KAFKA_BROKERS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (apt-get and /opt need it)"

PACKAGES=(zookeeper mariadb-server mariadb-client supervisor cmake build-essential pkg-config
          python3 curl netcat-openbsd procps openjdk-17-jre-headless maven)

debian_packages "${PACKAGES[@]}"

# The Kafka runtime is resolved again only when install/kafka/pom.xml changes:
# its hash is kept beside the jars. Maven's download cache lives in
# $SLUICE_TOOLS/m2 so that a re-resolve after a version bump is quick.
kafka_stamp() { sha256sum "$SLUICE_HOME/install/kafka/pom.xml" | cut -d' ' -f1; }
if [ "${SLUICE_SKIP_KAFKA:-0}" = 1 ]; then
    log "SLUICE_SKIP_KAFKA=1: not installing Apache Kafka; using the broker at $SLUICE_KAFKA_BROKERS"
elif [ "$(cat "$KAFKA_HOME/pom.sha256" 2>/dev/null)" = "$(kafka_stamp)" ]; then
    log "Apache Kafka present ($KAFKA_HOME)"
else
    log "resolving Apache Kafka from Maven Central into $KAFKA_HOME"
    mkdir -p "$SLUICE_TOOLS"
    staging=$(mktemp -d "$SLUICE_TOOLS/kafka.XXXXXX")
    trap 'rm -rf "$staging"' EXIT
    mvn -B -q -f "$SLUICE_HOME/install/kafka/pom.xml" -Dmaven.repo.local="$SLUICE_TOOLS/m2" \
        -Dlibs.dir="$staging/libs" dependency:copy-dependencies >"$staging/mvn.log" 2>&1 \
        || { cat "$staging/mvn.log" >&2; die "Maven could not resolve Apache Kafka (install/kafka/pom.xml)"; }
    # Exactly one SLF4J binding, or the broker runs without a single log line.
    bindings=$(ls "$staging/libs" | grep -cE '^(log4j-slf4j2?-impl|logback-classic|slf4j-(simple|reload4j))-' || true)
    [ "$bindings" = 1 ] || die "expected one SLF4J binding among the Kafka jars, found $bindings"
    java -cp "$staging/libs/*" kafka.tools.StorageTool random-uuid >/dev/null 2>&1 \
        || die "the resolved Kafka jars do not run (java -cp ... kafka.tools.StorageTool random-uuid)"
    kafka_stamp > "$staging/pom.sha256"
    rm -rf "$KAFKA_HOME"
    mv "$staging" "$KAFKA_HOME"
    rm -f "$KAFKA_HOME/mvn.log"
    trap - EXIT
    log "Apache Kafka installed: $(ls "$KAFKA_HOME/libs" | grep -c '\.jar$') jars"
fi

# The dashboard's chart library (and, with SLUICE_WEB_DEV=1, the browser
# test's playwright-core) from npm at the versions install/web/package.json
# pins, into $SLUICE_TOOLS/web; again only when that file changes.
web_install() {
    local dir=$SLUICE_TOOLS/web want stamp
    want=$(sha256sum "$SLUICE_HOME/install/web/package.json" | cut -d' ' -f1)-${SLUICE_WEB_DEV:-0}
    stamp=$(cat "$dir/installed.stamp" 2>/dev/null || true)
    if [ "$stamp" = "$want" ] || { [ "${SLUICE_WEB_DEV:-0}" = 0 ] && [ "${stamp%-1}" = "${want%-0}" ]; }; then
        log "web tools present in $dir"
        return
    fi
    log "installing the web tools from npm into $dir"
    mkdir -p "$dir"
    cp "$SLUICE_HOME/install/web/package.json" "$dir/package.json"
    local omit=(--omit=dev)
    [ "${SLUICE_WEB_DEV:-0}" = 1 ] && omit=()
    (cd "$dir" && npm install --no-audit --no-fund --silent "${omit[@]}") \
        || die "npm could not install install/web/package.json into $dir"
    echo "$want" >"$dir/installed.stamp"
}
web_install
