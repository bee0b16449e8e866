# Shared settings for the install/ scripts. Sourced, never run.
#
# Everything the local stack writes lives under one state directory, SLUICE_STATE
# (default /var/lib/sluice); tools built from source live under SLUICE_TOOLS
# (default /opt/sluice-tools) so they survive a fresh checkout.

SLUICE_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE_STATE=${SLUICE_STATE:-/var/lib/sluice}
SLUICE_TOOLS=${SLUICE_TOOLS:-/opt/sluice-tools}
# Apache Kafka's jars (install/deps.sh, from install/kafka/pom.xml).
KAFKA_HOME=$SLUICE_TOOLS/kafka

# Connection settings of the local stack. The services and the tests read the
# same variables, so an operator can point everything at their own servers.
SLUICE_KAFKA_BROKERS=${SLUICE_KAFKA_BROKERS:-127.0.0.1:9092}
SLUICE_ZK=${SLUICE_ZK:-127.0.0.1:2181}
SLUICE_MYSQL_URL=${SLUICE_MYSQL_URL:-mysql://sluice:sluice@127.0.0.1:3306/sluice}
# The address this host's MariaDB listens on (install/cluster.sh gives each
# test host its own).
SLUICE_BIND=${SLUICE_BIND:-127.0.0.1}
export SLUICE_HOME SLUICE_STATE SLUICE_TOOLS KAFKA_HOME SLUICE_KAFKA_BROKERS SLUICE_ZK SLUICE_MYSQL_URL SLUICE_BIND

log() { printf '[sluice %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages named that are missing (apt-get update first).
debian_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "Debian packages present: $*"
    fi
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it
# succeeds or the deadline passes.
wait_until() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${secs}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# The build cache is shared between checkouts (CI clones afresh every run).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/sluice-target}
# Where supervisord finds the pool's binaries: release builds (install/stack.sh
# builds them; the tests build their own debug ones).
export SLUICE_BIN=${SLUICE_BIN:-$CARGO_TARGET_DIR/release}

# The pool's binaries, optimised, for supervisord, sluicectl and the load
# tests. One package list everywhere, so that cargo resolves the same
# features and never rebuilds a dependency for another script.
build_release() {
    (cd "$SLUICE_HOME" && cargo build --release --locked --quiet -p sluicectl -p nodesim -p gbtmaker \
        -p jobmaker -p sserver -p blkmaker -p statshttpd -p simulator -p tgbot -p agent -p payer)
}

# The shared cache grows by one copy of every test binary each time a crate
# changes (tens of GB in a few days filled this machine's disk once, and the
# linker died with SIGBUS). Keep the newest build of each executable and drop
# incremental state once the cache passes $SLUICE_TARGET_CAP_GB (default 30).
prune_target() {
    local cap=${SLUICE_TARGET_CAP_GB:-30} used dir
    [ -d "$CARGO_TARGET_DIR" ] || return 0
    used=$(du -s --block-size=1G "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1)
    ((used > cap)) || return 0
    log "build cache at ${used} GB (cap ${cap}): dropping superseded test binaries and incremental state"
    for dir in "$CARGO_TARGET_DIR"/debug/deps "$CARGO_TARGET_DIR"/release/deps; do
        [ -d "$dir" ] || continue
        # Executables are named NAME-<16 hex>; all but the newest of each NAME go.
        find "$dir" -maxdepth 1 -type f -perm -u+x -regextype posix-extended -regex '.*-[0-9a-f]{16}' -printf '%T@ %f\n' |
            sort -rn | {
                declare -A seen=()
                while read -r _ name; do
                    base=${name%-*}
                    if [ -n "${seen[$base]:-}" ]; then rm -f "$dir/$name" "$dir/$name.d"; fi
                    seen[$base]=1
                done
            }
    done
    rm -rf "$CARGO_TARGET_DIR"/debug/incremental "$CARGO_TARGET_DIR"/release/incremental
    log "build cache now $(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1) GB"
}

SUPERVISOR_CONF="$SLUICE_HOME/deploy/supervisor/supervisord.conf"
# supervisord refuses to start if minfds exceeds the hard limit: ask for
# 65536 descriptors (sserver holds one per miner) or whatever the host allows.
hard_nofile=$(ulimit -Hn)
if [ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -gt 65536 ]; then hard_nofile=65536; fi
export SLUICE_MINFDS=$hard_nofile
supervisorctl_() { supervisorctl -c "$SUPERVISOR_CONF" "$@"; }

# tcp_ask HOST PORT WORD: send WORD to a TCP port and print the answer (for
# ZooKeeper's four-letter words), without needing nc.
tcp_ask() {
    local host=$1 port=$2 word=$3
    timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port && printf '%s' '$word' >&3 && cat <&3" 2>/dev/null
}
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
