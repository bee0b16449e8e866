#!/usr/bin/env bash
# Runs Sluice locally, end to end: installs what is missing, starts the real
# stack under supervisord (ZooKeeper, MariaDB, the Kafka broker), applies the
# schema, creates the topics, and shows that every part answers.
# nodesim stands in for bitcoind; the pool services join the same supervisord
# as they are built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
supervisorctl_ start nodesim >/dev/null
wait_until 30 "nodesim RPC on 127.0.0.1:18443" tcp_open 127.0.0.1 18443
log "nodesim (regtest Bitcoin Core stand-in) answers on 127.0.0.1:18443, ZMQ hashblock on 28332"
echo
supervisorctl_ status
echo
log "the local stack is running; logs in $SLUICE_STATE/log, stop it with: install/stack.sh down"
