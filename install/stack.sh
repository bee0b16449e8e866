#!/usr/bin/env bash
# The local Sluice stack under supervisord: ZooKeeper, MariaDB and Apache
# Kafka on loopback, then the database, user, schema and topics.
#
#   install/stack.sh up       install what is missing, start, wait until healthy, bootstrap
#   install/stack.sh down     stop everything and supervisord itself (data is kept)
#   install/stack.sh status   what runs, and whether each server answers
#
# Data and logs live under $SLUICE_STATE (default /var/lib/sluice).
# SLUICE_EXTERNAL_INFRA=1 skips starting the three servers: the pool then uses
# SLUICE_KAFKA_BROKERS, SLUICE_ZK and SLUICE_MYSQL_URL as given.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

zk_ready() { tcp_ask 127.0.0.1 2181 srvr | grep -q 'Mode: standalone'; }
mariadb_ready() { mariadb-admin --socket="$SLUICE_STATE/mariadb/mysqld.sock" -uroot ping; }
kafka_ready() { tcp_open 127.0.0.1 9092; }
kafka_log="$SLUICE_STATE/log/kafka.log"
# The broker's "started" line, written after this byte offset of its log.
kafka_started_since() { tail -c +"$(($1 + 1))" "$kafka_log" 2>/dev/null | grep -q 'Kafka Server started'; }
supervisord_running() { supervisorctl_ pid >/dev/null 2>&1; }

prepare_dirs() {
    mkdir -p "$SLUICE_STATE"/{log,zookeeper/data,mariadb,kafka/data,kafka/tmp}
    cat > "$SLUICE_STATE/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$SLUICE_STATE/zookeeper/data
clientPortAddress=127.0.0.1
clientPort=2181
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
CFG
    if [ ! -d "$SLUICE_STATE/mariadb/data/mysql" ]; then
        log "initialising the MariaDB data directory"
        mariadb-install-db --no-defaults --datadir="$SLUICE_STATE/mariadb/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db >"$SLUICE_STATE/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed: see $SLUICE_STATE/log/mariadb-install.log"
    fi
    prepare_kafka
}

# Kafka's settings are deploy/kafka/server.properties plus where this host
# keeps its data; KRaft storage is formatted once, with a new cluster id.
prepare_kafka() {
    local dir="$SLUICE_STATE/kafka"
    { cat "$SLUICE_HOME/deploy/kafka/server.properties"; echo "log.dirs=$dir/data"; } > "$dir/server.properties"
    [ -f "$dir/data/meta.properties" ] && return 0
    local tool=(java -Xmx256m "-Dlog4j2.configurationFile=$SLUICE_HOME/deploy/kafka/tools-log4j2.xml"
                -Djava.io.tmpdir="$dir/tmp" -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool)
    local cluster_id
    cluster_id=$("${tool[@]}" random-uuid) || die "kafka.tools.StorageTool random-uuid failed"
    log "formatting Kafka's KRaft storage in $dir/data (cluster $cluster_id)"
    "${tool[@]}" format -t "$cluster_id" -c "$dir/server.properties" >"$SLUICE_STATE/log/kafka-format.log" 2>&1 \
        || die "formatting Kafka's storage failed: see $SLUICE_STATE/log/kafka-format.log"
}

start_supervisord() {
    if supervisord_running; then
        supervisorctl_ reread >/dev/null && supervisorctl_ update >/dev/null
    else
        log "starting supervisord ($SLUICE_STATE/log/supervisord.log)"
        supervisord -c "$SUPERVISOR_CONF"
        wait_until 10 supervisord supervisord_running
    fi
}

bootstrap_database() {
    # user:password@host:port/db from SLUICE_MYSQL_URL.
    local rest=${SLUICE_MYSQL_URL#mysql://}
    local creds=${rest%%@*} hostpart=${rest#*@}
    local user=${creds%%:*} password=${creds#*:} db=${hostpart#*/}
    db=${db%%\?*}
    mariadb --socket="$SLUICE_STATE/mariadb/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'127.0.0.1';
-- Tests create throwaway databases named ${db}_test_<random>.
GRANT ALL PRIVILEGES ON \`${db}\_test\_%\`.* TO '$user'@'127.0.0.1';
SQL
}


sluicectl() { "$SLUICE_BIN/sluicectl" "$@"; }

up() {
    bash "$SLUICE_HOME/install/deps.sh"
    if [ "${SLUICE_EXTERNAL_INFRA:-0}" != 1 ]; then
        prepare_dirs
        start_supervisord
        local kafka_was_up=0 kafka_log_at
        supervisorctl_ status kafka 2>/dev/null | grep -q RUNNING && kafka_was_up=1
        kafka_log_at=$(stat -c %s "$kafka_log" 2>/dev/null || echo 0)
        supervisorctl_ start zookeeper mariadb kafka >/dev/null || true
        wait_until 60 "ZooKeeper on 127.0.0.1:2181" zk_ready
        wait_until 60 "MariaDB on 127.0.0.1:3306" mariadb_ready
        if [ "$kafka_was_up" = 0 ]; then
            wait_until 90 "Kafka to start (Kafka Server started in $kafka_log)" kafka_started_since "$kafka_log_at"
        fi
        wait_until 60 "Kafka on 127.0.0.1:9092" kafka_ready
        log "ZooKeeper, MariaDB and Kafka are up"
        bootstrap_database
    fi
    log "building the pool's release binaries into $SLUICE_BIN (the first time: minutes)"
    build_release
    # The configs the services run with: deploy/config/ and the operator's
    # settings from the environment (install/render-config.py lists them).
    python3 "$SLUICE_HOME/install/render-config.py"
    sluicectl migrate
    sluicectl create-topics
    sluicectl check
    # sserver's Stratum V2 authority key (kept once made: miners trust it).
    log "Stratum V2 authority public key: $(sluicectl sv2-keygen --out "$SLUICE_STATE/sv2-authority.toml" 2>/dev/null)"
}

down() {
    if supervisord_running; then
        log "stopping all programs and supervisord"
        supervisorctl_ stop all >/dev/null || true
        supervisorctl_ shutdown >/dev/null || true
    else
        log "supervisord is not running"
    fi
}

status() {
    supervisord_running && supervisorctl_ status || log "supervisord is not running"
    zk_ready && log "ZooKeeper: serving" || log "ZooKeeper: not answering"
    mariadb_ready >/dev/null 2>&1 && log "MariaDB: serving" || log "MariaDB: not answering"
    kafka_ready && log "Kafka: port open" || log "Kafka: not answering"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 64 ;;
esac
