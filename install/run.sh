#!/usr/bin/env bash
# Runs Sluice locally, end to end: installs what is missing, starts the real
# stack under supervisord (ZooKeeper, MariaDB, the Kafka broker), applies the
# schema, creates the topics, and shows that every part answers.
# nodesim stands in for bitcoind; gbtmaker and jobmaker turn its templates
# into Stratum jobs on Kafka; sserver serves them to miners on port 3333;
# blkmaker submits the blocks they find to the node and records them;
# statshttpd keeps the share log, the statistics and the HTTP API on :8080.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
# restart, not start: pick up binaries the stack step just rebuilt.
supervisorctl_ start nodesim >/dev/null || true  # keeps its chain when already running
wait_until 30 "nodesim RPC on 127.0.0.1:18443" tcp_open 127.0.0.1 18443
log "nodesim (regtest Bitcoin Core stand-in) answers on 127.0.0.1:18443, ZMQ hashblock on 28332"
supervisorctl_ restart gbtmaker >/dev/null
gbtmaker_healthy() { curl -sf http://127.0.0.1:9101/health >/dev/null; }
wait_until 30 "gbtmaker to publish templates (127.0.0.1:9101/health)" gbtmaker_healthy
log "gbtmaker publishes templates to BtcRawGbt: $(curl -s http://127.0.0.1:9101/health)"
supervisorctl_ restart jobmaker >/dev/null
jobmaker_leads() { curl -sf http://127.0.0.1:9102/health | grep -q 'leader, epoch'; }
wait_until 30 "jobmaker to lead and publish jobs (127.0.0.1:9102/health)" jobmaker_leads
log "jobmaker publishes jobs to BtcJob: $(curl -s http://127.0.0.1:9102/health)"
# Show it working: a block found on the node becomes a clean job on Kafka.
height_before=$(curl -s -u sluice:sluice -d '{"jsonrpc":"1.0","id":1,"method":"getblockcount","params":[]}' \
    http://127.0.0.1:18443/ | sed -n 's/.*"result":\([0-9]*\).*/\1/p')
curl -s -u sluice:sluice -o /dev/null \
    -d '{"jsonrpc":"1.0","id":1,"method":"generatetoaddress","params":[1,"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]}' \
    http://127.0.0.1:18443/
new_height=$((height_before + 2))
clean_job_at_new_height() { "$SLUICE_BIN/sluicectl" tail job -n 3 | grep -q "height $new_height clean true"; }
wait_until 20 "a clean job for the new block" clean_job_at_new_height
log "nodesim mined block $((height_before + 1)); the newest jobs on BtcJob:"
"$SLUICE_BIN/sluicectl" tail job -n 3
supervisorctl_ restart blkmaker >/dev/null
blkmaker_ready() { curl -sf http://127.0.0.1:9104/health | grep -q '"templates"'; }
wait_until 30 "blkmaker to keep templates and wait for solved shares (127.0.0.1:9104/health)" blkmaker_ready
log "blkmaker waits for solved shares: $(curl -s http://127.0.0.1:9104/health)"
supervisorctl_ restart sserver >/dev/null
sserver_serving() { curl -sf http://127.0.0.1:9103/health | grep -q 'server id'; }
wait_until 30 "sserver to take a server id and serve (127.0.0.1:9103/health)" sserver_serving
# Show it working: a miner's handshake on stratum+tcp://127.0.0.1:3333.
stratum_probe() {
    exec 3<>/dev/tcp/127.0.0.1/3333 || return 1
    printf '%s\n' '{"id":1,"method":"mining.subscribe","params":["run.sh"]}' \
        '{"id":2,"method":"mining.authorize","params":["demo.probe","x"]}' >&3
    local line n=0
    while IFS= read -r -t 5 line <&3 && [ $n -lt 6 ]; do
        echo "  <- ${line:0:160}"
        n=$((n + 1))
        case "$line" in *'"method":"mining.notify"'*) exec 3<&-; return 0 ;; esac
    done
    exec 3<&-
    return 1
}
log "a miner's view of stratum+tcp://127.0.0.1:3333 (subscribe, authorize as demo.probe):"
wait_until 20 "a mining.notify from sserver" stratum_probe
stratum_probe
echo
supervisorctl_ restart statshttpd >/dev/null
statshttpd_ready() { curl -sf http://127.0.0.1:8080/ | grep -q '"err_no":0'; }
wait_until 60 "statshttpd to rebuild its windows and answer (127.0.0.1:8080/)" statshttpd_ready
log "statshttpd: the pool over the last 5 m / 15 m / 1 h (http://127.0.0.1:8080/api/v1/pool):"
curl -s http://127.0.0.1:8080/api/v1/pool
echo
log "its health (http://127.0.0.1:8080/api/v1/health):"
curl -s http://127.0.0.1:8080/api/v1/health
echo
supervisorctl_ status
echo
log "the local stack is running; logs in $SLUICE_STATE/log, stop it with: install/stack.sh down"
