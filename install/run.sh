#!/usr/bin/env bash
# Runs Sluice locally, end to end: installs what is missing, starts the real
# stack under supervisord (ZooKeeper, MariaDB, the Kafka broker), applies the
# schema, creates the topics, and shows that every part answers.
# nodesim stands in for bitcoind; gbtmaker and jobmaker turn its templates
# into Stratum jobs on Kafka; sserver serves them to miners on port 3333;
# blkmaker submits the blocks they find to the node and records them;
# statshttpd keeps the share log, the statistics and the HTTP API on :8080;
# the payer keeps the books and pays the miners from the node's wallet;
# then the simulator mines on it for a minute, the blocks it found mature
# and the miners are paid, and the results are shown.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
# With SLUICE_NODE_RPC_URL (and the other settings of install/render-config.py)
# the pool mines on the operator's own bitcoind: no nodesim, no simulator.
OWN_NODE=${SLUICE_NODE_RPC_URL:+1}
if [ -z "$OWN_NODE" ]; then
    supervisorctl_ start nodesim >/dev/null || true  # keeps its chain when already running
    wait_until 30 "nodesim RPC on 127.0.0.1:18443" tcp_open 127.0.0.1 18443
    log "nodesim (regtest Bitcoin Core stand-in) answers on 127.0.0.1:18443, ZMQ hashblock on 28332"
else
    supervisorctl_ stop nodesim >/dev/null || true
    log "mining on the operator's node at $SLUICE_NODE_RPC_URL (network ${SLUICE_NETWORK:-regtest})"
fi
# restart, not start: pick up binaries the stack step just rebuilt.
supervisorctl_ restart gbtmaker >/dev/null
gbtmaker_healthy() { curl -sf http://127.0.0.1:9101/health >/dev/null; }
wait_until 30 "gbtmaker to publish templates (127.0.0.1:9101/health)" gbtmaker_healthy
log "gbtmaker publishes templates to BtcRawGbt: $(curl -s http://127.0.0.1:9101/health)"
# The standby stops first, so that the restarted jobmaker leads again.
supervisorctl_ stop jobmaker-standby >/dev/null || true
supervisorctl_ restart jobmaker >/dev/null
jobmaker_leads() { curl -sf http://127.0.0.1:9102/health | grep -q 'leader, epoch'; }
wait_until 30 "jobmaker to lead and publish jobs (127.0.0.1:9102/health)" jobmaker_leads
log "jobmaker publishes jobs to BtcJob: $(curl -s http://127.0.0.1:9102/health)"
supervisorctl_ start jobmaker-standby >/dev/null
standby_waits() { curl -sf http://127.0.0.1:9107/health | grep -q 'standby'; }
wait_until 30 "the second jobmaker to stand by (127.0.0.1:9107/health)" standby_waits
log "a second jobmaker stands by: $(curl -s http://127.0.0.1:9107/health)"
if [ -z "$OWN_NODE" ]; then
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
else
    log "the newest template from the node on BtcRawGbt, and the jobs made of it:"
    "$SLUICE_BIN/sluicectl" tail rawgbt -n 1
    "$SLUICE_BIN/sluicectl" tail job -n 3
fi
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
# A farm's agent in front of sserver (deploy/config/agent.toml): its miners
# connect on 3340 and reach the pool over two upstream sessions.
supervisorctl_ restart agent >/dev/null
agent_ready() { curl -sf http://127.0.0.1:9109/health | grep -q '"upstream0":{"ok":true'; }
wait_until 30 "the farm agent to reach sserver (127.0.0.1:9109/health)" agent_ready
log "the farm agent: miners on stratum+tcp://127.0.0.1:3340 mine for demo through $(curl -s http://127.0.0.1:9109/metrics | sed -n 's/^agent_upstream_connected //p') upstream sessions"
supervisorctl_ restart statshttpd >/dev/null
statshttpd_ready() { curl -sf http://127.0.0.1:8080/ | grep -q '"err_no":0'; }
wait_until 60 "statshttpd to rebuild its windows and answer (127.0.0.1:8080/)" statshttpd_ready
log "statshttpd: the pool over the last 5 m / 15 m / 1 h (http://127.0.0.1:8080/api/v1/pool):"
curl -s http://127.0.0.1:8080/api/v1/pool
echo
log "its health (http://127.0.0.1:8080/api/v1/health):"
curl -s http://127.0.0.1:8080/api/v1/health
echo
supervisorctl_ restart payer >/dev/null
# Its /health answers 503 while a component is down (a wallet that cannot pay
# yet, on an operator's node): the election is what this waits for.
payer_leads() { curl -s http://127.0.0.1:9110/health | grep -q 'leader, epoch'; }
wait_until 30 "the payer to keep the books (127.0.0.1:9110/health)" payer_leads
log "the payer keeps the books (PPLNS, deploy/config/payer.toml) and pays from the node's wallet: $(curl -s http://127.0.0.1:9110/health)"
if [ -z "$OWN_NODE" ]; then
    # Show it mining: simulated miners with real proof of work for a minute.
    SIM_MINERS=${SLUICE_SIM_MINERS:-100}
    SIM_SECONDS=${SLUICE_SIM_SECONDS:-60}
    blocks_before=$(curl -s "http://127.0.0.1:8080/api/v1/pool" | sed -n 's/.*"blocks_found":\([0-9]*\).*/\1/p')
    log "the simulator: $SIM_MINERS miners as demo.sim-NNNNN for $SIM_SECONDS s, blocks made outside every 20 s"
    "$SLUICE_BIN/simulator" --server 127.0.0.1:3333 -n "$SIM_MINERS" --rate $((SIM_MINERS / 2)) \
        --duration "$SIM_SECONDS" --user demo --password d=0.0000000002 --quiet \
        --node-rpc http://sluice:sluice@127.0.0.1:18443 --block-interval 20
    # The miners found blocks (one hash in ~256 is one: about a dozen a minute) and
    # statshttpd credits their work; anything else is a failure.
    blocks_recorded() {
        local n
        n=$(curl -s "http://127.0.0.1:8080/api/v1/pool" | sed -n 's/.*"blocks_found":\([0-9]*\).*/\1/p')
        [ "${n:-0}" -gt "${blocks_before:-0}" ]
    }
    wait_until 30 "blkmaker to record the blocks the miners found" blocks_recorded
    demo_credited() {
        curl -sf http://127.0.0.1:8080/api/v1/users/demo | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["hashrate"]["5m"] > 0 else 1)'
    }
    wait_until 30 "statshttpd to credit the miners' work" demo_credited
    demo_id=$(curl -s http://127.0.0.1:8080/api/v1/users/demo | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
    log "blocks the simulated miners found (http://127.0.0.1:8080/api/v1/blocks?user_id=$demo_id), newest first:"
    curl -s "http://127.0.0.1:8080/api/v1/blocks?user_id=$demo_id&limit=8" | python3 -c '
import json, sys
for b in json.load(sys.stdin)["blocks"]:
    print("  height %d %s by %s: %s" % (b["height"], b["hash"][:16], b["worker_name"], b["submit_results"]))'
    blocks_after=$(curl -s "http://127.0.0.1:8080/api/v1/pool" | sed -n 's/.*"blocks_found":\([0-9]*\).*/\1/p')
    log "found_blocks: $((blocks_after - blocks_before)) new rows in this run"
    log "statshttpd (http://127.0.0.1:8080/api/v1/pool, /api/v1/users/demo/workers):"
    curl -s http://127.0.0.1:8080/api/v1/users/demo | python3 -c '
import json, sys
u = json.load(sys.stdin)
h = u["hashrate"]
print("  user demo: %d workers, hashrate %.1f / %.1f / %.1f H/s over 5 m / 15 m / 1 h" % (u["workers"], h["5m"], h["15m"], h["1h"]))'
    curl -s http://127.0.0.1:8080/api/v1/users/demo/workers | python3 -c '
import json, sys
w = json.load(sys.stdin)["workers"][0]
print("  worker %s: hashrate %.2f H/s over 5 m, %d accepted shares, last from %s" % (w["name"], w["hashrate"]["5m"], w["accept_count"], w["last_share_ip"]))'
    curl -s http://127.0.0.1:8080/api/v1/pool | python3 -c '
import json, sys
p = json.load(sys.stdin)
h = p["hashrate"]
print("  pool: %d users, %d workers, hashrate %.1f / %.1f / %.1f H/s, %s blocks recorded, network height %d" % (p["users"], p["workers"], h["5m"], h["15m"], h["1h"], p["blocks_found"], p["network_height"]))'
    # The money path: the demo user gets an address, the blocks mature (101
    # confirmations: nodesim mines them, as the network would), blkmaker
    # confirms them, the payer credits and matures their split and pays
    # every due user from the wallet the pool's coinbases went to.
    demo_address=bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry
    "$SLUICE_BIN/sluicectl" payouts address demo "$demo_address"
    curl -s -u sluice:sluice -o /dev/null \
        -d '{"jsonrpc":"1.0","id":1,"method":"generatetoaddress","params":[101,"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]}' \
        http://127.0.0.1:18443/
    log "nodesim mined 101 blocks on top: the miners' blocks are mature; waiting for blkmaker to confirm them and the payer to pay"
    demo_paid() { "$SLUICE_BIN/sluicectl" payouts list -n 1 | grep -Eq ' (broadcast|confirmed): '; }
    wait_until 150 "a payout to the demo miners (sluicectl payouts list)" demo_paid
    curl -s -u sluice:sluice -o /dev/null \
        -d '{"jsonrpc":"1.0","id":1,"method":"generatetoaddress","params":[1,"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]}' \
        http://127.0.0.1:18443/
    demo_confirmed() { "$SLUICE_BIN/sluicectl" payouts list -n 1 | grep -q ' confirmed: '; }
    wait_until 60 "the payout to confirm" demo_confirmed
    log "paid (sluicectl payouts list, sluicectl payouts balance demo):"
    "$SLUICE_BIN/sluicectl" payouts list -n 3 | sed 's/^/  /'
    "$SLUICE_BIN/sluicectl" payouts balance demo | sed 's/^/  /'
    # A farm through the agent: its miners are each their own worker at the pool.
    log "a farm: 20 miners as demo.farm-NNNNN through the agent (stratum+tcp://127.0.0.1:3340) for 15 s"
    "$SLUICE_BIN/simulator" --server 127.0.0.1:3340 -n 20 --rate 10 --duration 15 --user demo \
        --worker-prefix farm --quiet
    farm_workers() {
        curl -sf "http://127.0.0.1:8080/api/v1/users/demo/workers" | python3 -c '
import json, sys
n = sum(1 for w in json.load(sys.stdin)["workers"] if w["name"].startswith("farm"))
sys.exit(0 if n >= 20 else 1)'
    }
    wait_until 30 "statshttpd to show the farm's 20 miners as workers" farm_workers
    log "the agent's books (http://127.0.0.1:9109/metrics):"
    curl -s http://127.0.0.1:9109/metrics | grep -E '^agent_(miners|upstream_connected|shares_total|uplink_sent_bytes_total|uplink_received_bytes_total)[ {]' | sed 's/^/  /'
fi
echo
# The Telegram bot runs when the operator gave it a token (and chats).
if [ -n "${SLUICE_TGBOT_TOKEN:-}" ]; then
    (umask 077 && printf '%s\n' "$SLUICE_TGBOT_TOKEN" >"$SLUICE_STATE/config/tgbot.token")
    supervisorctl_ restart tgbot >/dev/null
    tgbot_ready() { curl -sf http://127.0.0.1:9108/health | grep -q '"telegram":{"ok":true'; }
    wait_until 60 "the Telegram bot to reach the Bot API" tgbot_ready
    log "Telegram bot: answering and alerting chats ${SLUICE_TGBOT_CHATS:-(none: set SLUICE_TGBOT_CHATS)}; send it /help"
else
    supervisorctl_ stop tgbot >/dev/null 2>&1 || true
    log "Telegram bot: off (set SLUICE_TGBOT_TOKEN and SLUICE_TGBOT_CHATS to run it)"
fi
# What runs: the pool's services, the local servers unless they are the
# operator's own, and nodesim unless the operator's node stands in for it.
# supervisorctl fails if any of these is not running.
programs=(gbtmaker jobmaker jobmaker-standby blkmaker sserver statshttpd agent payer)
[ -z "${SLUICE_TGBOT_TOKEN:-}" ] || programs+=(tgbot)
[ "${SLUICE_EXTERNAL_INFRA:-0}" = 1 ] || programs=(zookeeper mariadb kafka "${programs[@]}")
[ -n "$OWN_NODE" ] || programs+=(nodesim)
supervisorctl_ status "${programs[@]}"
echo
log "the dashboard: http://127.0.0.1:8080/pool (also /servers, /blocks and /u/USER, e.g. /u/demo)"
log "point a miner at stratum+tcp://$(hostname -I 2>/dev/null | awk '{print $1}'):3333 (any user.worker login)"
log "or a farm's miners at stratum+tcp://$(hostname -I 2>/dev/null | awk '{print $1}'):3340 (the farm agent, for demo)"
log "or a Stratum V2 miner at $(hostname -I 2>/dev/null | awk '{print $1}'):3336 with the pool's authority key $("$SLUICE_BIN/sluicectl" sv2-keygen --out "$SLUICE_STATE/sv2-authority.toml" 2>/dev/null)"
echo
log "the local stack is running; logs in $SLUICE_STATE/log, stop it with: install/stack.sh down"
