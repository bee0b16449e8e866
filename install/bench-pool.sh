#!/usr/bin/env bash
# Load-tests a whole sserver with the simulator, on the running local stack
# (install/stack.sh up) but beside the local pool: its own nodesim (hard
# bits, so shares are not blocks), gbtmaker, jobmaker and sserver on other
# ports, topics of its own (Bench*-RUN, deleted afterwards) and the ZooKeeper
# root /sluice-bench. Release builds.
#
#   install/bench-pool.sh [miners] [shares/s] [seconds] [block interval s]
#
# Prints the simulator's report (JSON) and sserver's memory: resident set
# before the miners connect and at its peak, per connection. With
# SLUICE_BENCH_ACCEPT_WAIT_MS=0 answers submits before the broker acknowledges
# (sserver's accept_wait_ms; deploy/config/sserver.toml's by default).
# SLUICE_BENCH_SPOOL_MB sets sserver's [spool] max_mb (0: no spool);
# SLUICE_BENCH_SPOOL_MB=none leaves the [spool] table out (for an sserver
# from before it).
# SLUICE_BENCH_BROKER_AWAY=1 stops the local stack's broker once sserver has
# its jobs, before the miners connect, and starts it again at the end: every
# answer then waits accept_wait_ms and, with a spool, for its fsync.
# SLUICE_BENCH_SSERVER=/path/to/sserver runs that binary as the sserver (the
# rest from this checkout), to compare two versions in the same hour.
# SLUICE_BENCH_PROTOCOL=v2 runs the miners over Stratum V2 (standard channels).
# SLUICE_BENCH_SOLO=1 turns jobmaker's [solo] on (100 bps) and has every miner
# log in with its own address (simulator --solo): one coinbase per miner.
# SLUICE_BENCH_TIMELINE=1 also, second by second, the shares sserver answered,
# those the broker has yet to acknowledge, and sserver's memory.
# SLUICE_BENCH_AGENT=1 puts the farm agent (services/agent, two upstream
# sessions) between the miners and sserver, and prints its memory per miner.
# Either way the uplink (every socket to sserver's port: the miners' own, or
# the agent's) is measured over one minute from 15 s in (runs of 80 s and
# more): bytes and TCP segments each way, from the kernel (ss -ti).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

MINERS=${1:-10000}
RATE=${2:-20000}
SECONDS_=${3:-30}
BLOCKS=${4:-0}
REL="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d /tmp/sluice-bench.XXXXXX)
# Fresh topics every run: a jobmaker reading the last run's newer templates
# from the tail would take the new nodesim's lower heights for flapping.
RUN=${WORK##*.}
PIDS=()
BROKER_STOPPED=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$BROKER_STOPPED" ] || supervisorctl_ start kafka >/dev/null || true
    wait 2>/dev/null || true
    "$REL/sluicectl" delete-topics --prefix "Bench" >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "building release binaries (once: several minutes)"
build_release

topics() {
    sed -e "s/\"Btc\([A-Za-z]*\)\"/\"Bench\\1-$RUN\"/" \
        -e 's|root = "/sluice"|root = "/sluice-bench"|'
}
topics < deploy/config/sluicectl.toml > "$WORK/sluicectl.toml"
sed -e 's/127.0.0.1:18443/127.0.0.1:18543/; s/127.0.0.1:28332/127.0.0.1:28432/; s/127.0.0.1:9105/127.0.0.1:9115/' \
    -e 's/^bits = .*/bits = "1d00ffff"/' deploy/config/nodesim.toml > "$WORK/nodesim.toml"
# SLUICE_BENCH_EMPTY_BLOCKS=1: gbtmaker's empty_block_jobs on.
EMPTY_BLOCKS=$([ -n "${SLUICE_BENCH_EMPTY_BLOCKS:-}" ] && echo true || echo false)
topics < deploy/config/gbtmaker.toml | sed -e 's/127.0.0.1:18443/127.0.0.1:18543/; s/127.0.0.1:28332/127.0.0.1:28432/' \
    -e 's/127.0.0.1:9101/127.0.0.1:9111/' \
    -e "s/^empty_block_jobs = .*/empty_block_jobs = $EMPTY_BLOCKS/" \
    > "$WORK/gbtmaker.toml"
# SLUICE_BENCH_EMPTY_JOBS=0: jobmaker's empty_jobs off (the new block's first
# job waits for the node's template).
topics < deploy/config/jobmaker.toml | sed -e 's/127.0.0.1:9102/127.0.0.1:9112/; s/127.0.0.1:18443/127.0.0.1:18543/; s/127.0.0.1:28332/127.0.0.1:28432/' \
    -e "s/^empty_jobs = .*/empty_jobs = $([ "${SLUICE_BENCH_EMPTY_JOBS:-1}" = 0 ] && echo false || echo true)/" \
    > "$WORK/jobmaker.toml"
solo_args=()
if [ -n "${SLUICE_BENCH_SOLO:-}" ]; then
    sed -i -e '/^\[solo\]/,/^\[/ s/^enabled = .*/enabled = true/' -e '/^\[solo\]/,/^\[/ s/^fee_bps = .*/fee_bps = 100/' "$WORK/jobmaker.toml"
    solo_args=(--solo)
fi
# Every hash a share (difficulty 2e-10 saturates the target), never a retarget.
topics < deploy/config/sserver.toml | sed -e 's/0.0.0.0:3333/127.0.0.1:3334/; s/0.0.0.0:3336/127.0.0.1:3337/; s/127.0.0.1:9103/127.0.0.1:9113/' \
    -e "s|^solved_log = .*|solved_log = \"$WORK/solved.log\"|" \
    -e 's/^default = .*/default = 0.0000000002/; s/^min = .*/min = 0.0000000002/; s/^max = .*/max = 0.0000000002/' \
    -e "s/^accept_wait_ms = .*/accept_wait_ms = ${SLUICE_BENCH_ACCEPT_WAIT_MS:-500}/" \
    -e "$([ "${SLUICE_BENCH_SPOOL_MB:-}" = none ] && echo '/^\[spool\]/,/^max_mb/d' ||
        echo "s/^max_mb = .*/max_mb = ${SLUICE_BENCH_SPOOL_MB:-1024}/")" \
    > "$WORK/sserver.toml"

"$REL/sluicectl" -c "$WORK/sluicectl.toml" create-topics >/dev/null
start() {
    local name=$1 bin="$REL/$1"
    # SLUICE_BENCH_SSERVER: another sserver binary (a before/after comparison).
    [ "$name" = sserver ] && [ -n "${SLUICE_BENCH_SSERVER:-}" ] && bin=$SLUICE_BENCH_SSERVER
    "$bin" -c "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}
start nodesim
wait_until 30 "bench nodesim on 127.0.0.1:18543" tcp_open 127.0.0.1 18543
# A chain longer than the 11 blocks the median time past spans, as every real
# one is (jobmaker's empty-block job from a block's header alone needs it).
curl -sf -u sluice:sluice -H 'content-type: application/json' \
    -d '{"jsonrpc":"1.0","id":1,"method":"generatetoaddress","params":[20,"bcrt1q9yze2dhpetvcqhl3h534me4mqplm9ts2wdmzl5"]}' \
    http://127.0.0.1:18543/ >/dev/null
start gbtmaker
start jobmaker
jobmaker_leads() { curl -sf http://127.0.0.1:9112/health | grep -q 'leader, epoch'; }
wait_until 60 "bench jobmaker to lead" jobmaker_leads
# Its SV2 port needs the authority key (made once, as install/stack.sh does).
SV2_KEY=$("$REL/sluicectl" sv2-keygen --out "$SLUICE_STATE/sv2-authority.toml" 2>/dev/null)
start sserver
SSERVER_PID=${PIDS[-1]}
sserver_serving() { curl -sf http://127.0.0.1:9113/health | grep -q 'server id'; }
wait_until 60 "bench sserver to serve on 127.0.0.1:3334" sserver_serving
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SSERVER_PID/status"; }
in_flight() { curl -s http://127.0.0.1:9113/metrics | awk '/^sserver_shares_in_flight / {print $2}'; }
RSS_IDLE=$(rss_kib)
PEAK_FILE="$WORK/peak"
echo "$RSS_IDLE" >"$PEAK_FILE"
(
    while kill -0 "$SSERVER_PID" 2>/dev/null; do
        r=$(rss_kib || echo 0)
        [ "${r:-0}" -gt "$(cat "$PEAK_FILE")" ] && echo "$r" >"$PEAK_FILE"
        sleep 0.5
    done
) &
PIDS+=($!)

# CPU seconds (user+system) of a process, from /proc.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
BROKER_PID=$(pgrep -f 'kafka\.Kafka' | head -1 || true)
BROKER_CPU0=$([ -n "$BROKER_PID" ] && cpu_secs "$BROKER_PID" || echo 0)
TOTAL_CPU0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)

if [ -n "${SLUICE_BENCH_TIMELINE:-}" ]; then
    (
        answered() { curl -s http://127.0.0.1:9113/metrics | awk '/^sserver_shares_total/ {n += $2} END {print n + 0}'; }
        last=$(answered); t=0
        while kill -0 "$SSERVER_PID" 2>/dev/null; do
            sleep 1; t=$((t + 1))
            now=$(answered)
            echo "t=${t}s answered/s=$((now - last)) in_flight=$(in_flight) rss_mib=$(( $(rss_kib) / 1024 ))"
            last=$now
        done
    ) > "$WORK/timeline" 2>/dev/null &
    PIDS+=($!)
fi

# The farm agent between the miners and sserver.
if [ -n "${SLUICE_BENCH_AGENT:-}" ]; then
    cat >"$WORK/agent.toml" <<EOF_AGENT
listen = "127.0.0.1:3341"
[service]
admin_listen = "127.0.0.1:9119"
[upstream]
pools = ["127.0.0.1:3334"]
account = "bench"
sessions = ${SLUICE_BENCH_AGENT_SESSIONS:-2}
EOF_AGENT
    start agent
    AGENT_PID=${PIDS[-1]}
    agent_up() { curl -sf http://127.0.0.1:9119/health | grep -q '"upstream0":{"ok":true'; }
    wait_until 30 "the bench agent to reach sserver" agent_up
    AGENT_RSS_IDLE=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
fi
# The uplink over one minute from 15 s in: bytes and segments of every
# established socket to sserver's port (client side), both ways.
uplink() {
    ss -tinH state established '( dport = :3334 )' |
        grep -oE '(bytes_sent|bytes_received|segs_out|segs_in):[0-9]+' |
        awk -F: '{s[$1] += $2} END {printf "%d %d %d %d\n", s["bytes_sent"], s["bytes_received"], s["segs_out"], s["segs_in"]}'
}
if [ "$SECONDS_" -ge 80 ]; then
    (
        sleep 15
        uplink >"$WORK/uplink0"
        sleep 60
        uplink >"$WORK/uplink1"
        [ -n "${AGENT_PID:-}" ] && awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status" >"$WORK/agent_rss"
    ) &
    PIDS+=($!)
fi

log "simulator: $MINERS miners, $RATE shares/s, $SECONDS_ s"
node_args=()
if [ "$BLOCKS" != 0 ]; then
    node_args=(--node-rpc http://sluice:sluice@127.0.0.1:18543 --block-interval "$BLOCKS")
fi
# SLUICE_BENCH_PROTOCOL=v2: the miners speak Stratum V2 to the SV2 port.
proto_args=(--server 127.0.0.1:3334)
if [ "${SLUICE_BENCH_PROTOCOL:-v1}" = v2 ]; then
    proto_args=(--server 127.0.0.1:3337 --protocol v2 --authority-key "$SV2_KEY")
fi
[ -n "${SLUICE_BENCH_AGENT:-}" ] && proto_args=(--server 127.0.0.1:3341)
if [ -n "${SLUICE_BENCH_BROKER_AWAY:-}" ]; then
    # Only once sserver has a job to hand out (a miner's view: a notify).
    has_job() {
        python3 - <<'EOF_PROBE'
import socket, sys
s = socket.create_connection(("127.0.0.1", 3334), timeout=3)
s.sendall(b'{"id":1,"method":"mining.subscribe","params":[]}\n'
          b'{"id":2,"method":"mining.authorize","params":["bench.probe","x"]}\n')
seen = b""
try:
    while b"\"method\":\"mining.notify\"" not in seen:
        chunk = s.recv(4096)
        if not chunk:
            break
        seen += chunk
except socket.timeout:
    pass
sys.exit(0 if b"\"method\":\"mining.notify\"" in seen else 1)
EOF_PROBE
    }
    wait_until 60 "bench sserver to have a job" has_job
    log "stopping the broker for the run (SLUICE_BENCH_BROKER_AWAY)"
    BROKER_STOPPED=1
    supervisorctl_ stop kafka >/dev/null
fi
TIMEFORMAT="simulator CPU: %U s user, %S s system"
time "$REL/simulator" "${proto_args[@]}" -n "$MINERS" --rate "$RATE" --duration "$SECONDS_" \
    --user bench --password d=0.0000000002 --quiet --json "${node_args[@]}" "${solo_args[@]}" | tee "$WORK/report.json"
curl -s http://127.0.0.1:9113/metrics | grep -E '^sserver_(shares_spooled|spool_refused|answered_unacknowledged)' | sed 's/^/sserver: /'
if [ -n "$BROKER_STOPPED" ]; then
    supervisorctl_ start kafka >/dev/null
    BROKER_STOPPED=
    wait_until 60 "the broker back" tcp_open 127.0.0.1 9092
fi
# Answered is not enough: every checked share must be on the Share topic.
all_acknowledged() { [ "$(in_flight)" = 0 ]; }
wait_until 120 "the broker to acknowledge every share" all_acknowledged
curl -s http://127.0.0.1:9113/metrics | grep -E '^sserver_(submits_total|shares_total)' | sed 's/^/sserver: /' || true
"$REL/sluicectl" -c "$WORK/sluicectl.toml" topics | grep "BenchShare"
TOTAL_CPU1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
if [ -n "$BROKER_PID" ]; then
    echo "broker CPU during the run: $(echo "$(cpu_secs "$BROKER_PID") - $BROKER_CPU0" | bc) s;" \
        "whole machine: $(( (TOTAL_CPU1 - TOTAL_CPU0) / $(getconf CLK_TCK) )) CPU-seconds"
fi
RSS_PEAK=$(cat "$PEAK_FILE")
echo "sserver RSS: idle $((RSS_IDLE / 1024)) MiB, peak $((RSS_PEAK / 1024)) MiB," \
    "$(( (RSS_PEAK - RSS_IDLE) * 1024 / MINERS )) bytes per connection"
echo "sserver CPU: $(cpu_secs "$SSERVER_PID") s; work files in $WORK"
if [ -f "$WORK/uplink1" ]; then
    read -r s0 r0 o0 i0 <"$WORK/uplink0"
    read -r s1 r1 o1 i1 <"$WORK/uplink1"
    echo "uplink per minute ($([ -n "${AGENT_PID:-}" ] && echo "the agent's sessions" || echo "the miners' own connections")):" \
        "$((s1 - s0)) bytes and $((o1 - o0)) segments up, $((r1 - r0)) bytes and $((i1 - i0)) segments down"
fi
if [ -n "${AGENT_PID:-}" ] && [ -f "$WORK/agent_rss" ]; then
    AGENT_RSS=$(cat "$WORK/agent_rss")
    echo "agent RSS: idle $((AGENT_RSS_IDLE / 1024)) MiB, with $MINERS miners $((AGENT_RSS / 1024)) MiB," \
        "$(( (AGENT_RSS - AGENT_RSS_IDLE) * 1024 / MINERS )) bytes per miner; agent CPU: $(cpu_secs "$AGENT_PID") s"
    curl -s http://127.0.0.1:9119/metrics | grep -E '^agent_(shares_total|uplink_writes_total|jobs_total)' | sed 's/^/agent: /'
fi
if [ -f "$WORK/timeline" ]; then cat "$WORK/timeline"; fi
