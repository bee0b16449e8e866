#!/usr/bin/env bash
# The kill matrix: under simulated miners mining on the local pool (README
# command 1's stack under supervisord), kill -9 one part at a time (each
# service and each infrastructure part; the node, which nodesim cannot
# restart with its chain, is frozen for 30 s instead) and report per row:
#
#   healthy after   seconds from the kill until the part runs again (a new
#                   process, started by supervisord), the broker, ZooKeeper,
#                   MariaDB and the node answer, and every service's /health
#                   is 200 (for the node: from the freeze, 30 s of it);
#   mining dip      seconds in which the miners' answered shares/s fell
#                   below 90% of their median before the kill;
#   blocks lost     blocks the miners were told were accepted that have no
#                   found_blocks row 60 s after the run, or that the node
#                   does not have (getblockheader);
#   shares lost     shares the miners saw accepted whose header hash is not
#                   on BtcShare 90 s after the run (by identity: the
#                   simulator lists every hash it was told was accepted);
#   duplicates      accepted records on BtcShare with the same header hash.
#
# Any block or share lost, or a share twice, fails the run (exit 1) after
# every row has run and the table is printed.
#
# Each row mines as a user of its own, so its shares are counted from the
# positions the Share topic had when it started. The row kafka+sserver stops
# the broker, kills sserver with SIGKILL 10 s into the outage (the shares
# answered meanwhile are in its spool only), and starts the broker 5 s later;
# supervisord restarts sserver at once.
#
#   install/kill-matrix.sh [ROW...]       rows: gbtmaker jobmaker sserver
#       blkmaker statshttpd kafka zookeeper mariadb node kafka+sserver
#       (default: all)
#   SLUICE_KM_MINERS (1000), SLUICE_KM_RATE (shares/s of them all, 250:
#   one in about 256 is a block on nodesim, so about one block a second),
#   SLUICE_KM_BEFORE (s of mining before the kill, 15),
#   SLUICE_KM_AFTER (s of mining after it, 60)
#
# The table (Markdown) goes to stdout and to $SLUICE_STATE/kill-matrix/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

MINERS=${SLUICE_KM_MINERS:-1000}
RATE=${SLUICE_KM_RATE:-250}
BEFORE=${SLUICE_KM_BEFORE:-15}
AFTER=${SLUICE_KM_AFTER:-60}
rows=("$@")
((${#rows[@]})) || rows=(gbtmaker jobmaker sserver blkmaker statshttpd kafka zookeeper mariadb node kafka+sserver)
out=$SLUICE_STATE/kill-matrix/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

# The pool's services and their health endpoints (deploy/config/*.toml).
health_urls=(
    http://127.0.0.1:9101/health  # gbtmaker
    http://127.0.0.1:9103/health  # sserver
    http://127.0.0.1:9104/health  # blkmaker
    http://127.0.0.1:8080/api/v1/health  # statshttpd
)
jobmaker_leads() {
    curl -sf http://127.0.0.1:9102/health | grep -q 'leader' ||
        curl -sf http://127.0.0.1:9107/health | grep -q 'leader'
}
pool_healthy() {
    local u
    for u in "${health_urls[@]}"; do curl -sf -o /dev/null --max-time 2 "$u" || return 1; done
    jobmaker_leads
}

sserver_serving() { curl -sf http://127.0.0.1:9103/health >/dev/null; }
if ! sserver_serving; then
    log "the local pool is not running: starting it (install/run.sh)"
    bash install/run.sh >"$out/run.log" 2>&1 || die "install/run.sh failed (see $out/run.log)"
fi
build_release
wait_until 60 "the pool to be healthy" pool_healthy || die "the pool is not healthy before the first row"
ctl() { "$SLUICE_BIN/sluicectl" "$@"; }

# The leading jobmaker's program (the other stands by).
leader_program() {
    if curl -sf http://127.0.0.1:9102/health | grep -q 'leader'; then echo jobmaker; else echo jobmaker-standby; fi
}

failed=()
table="$out/table.md"
{
    echo "| part killed | healthy after | mining dip | blocks found / lost | shares accepted / lost / duplicates | rejected | reconnects |"
    echo "|---|---|---|---|---|---|---|"
} >"$table"

for row in "${rows[@]}"; do
    case $row in
        gbtmaker | sserver | blkmaker | statshttpd | kafka | zookeeper | mariadb) program=$row ;;
        jobmaker) program=$(leader_program) ;;
        node) program=nodesim ;;
        kafka+sserver) program=sserver ;;
        *) die "unknown row $row (gbtmaker jobmaker sserver blkmaker statshttpd kafka zookeeper mariadb node kafka+sserver)" ;;
    esac
    user="km$(date +%s)${row//+/-}"
    from=$(ctl offsets share)
    log "row $row: $MINERS miners as $user for $BEFORE s, then $program killed, then $AFTER s"
    started=$(date +%s.%N)
    "$SLUICE_BIN/simulator" --server 127.0.0.1:3333 -n "$MINERS" --rate "$RATE" \
        --duration $((BEFORE + AFTER)) --user "$user" --password d=0.0000000002 --json --record-accepted \
        >"$out/$row.json" 2>"$out/$row.progress" &
    sim=$!
    all_connected() { tr '\r' '\n' <"$out/$row.progress" | grep -q "connected $MINERS/$MINERS"; }
    wait_until 60 "the miners to connect" all_connected || die "row $row: the miners did not connect"
    sleep "$BEFORE" # the scenario: steady mining before the kill
    old_pid=$(supervisorctl_ pid "$program")
    killed=$(date +%s.%N)
    if [ "$row" = node ]; then
        # nodesim keeps its chain in memory: killed, it would come back
        # with another chain, which Bitcoin Core never does. Frozen instead:
        # a node that stops answering for 30 s.
        supervisorctl_ signal STOP "$program" >/dev/null
        sleep 30
        supervisorctl_ signal CONT "$program" >/dev/null
    elif [ "$row" = kafka+sserver ]; then
        # The scenario's own pauses: miners answered from the spool for
        # 10 s, sserver killed, the broker back 5 s later.
        supervisorctl_ stop kafka >/dev/null
        sleep 10
        killed=$(date +%s.%N)
        supervisorctl_ signal KILL sserver >/dev/null
        sleep 5
        supervisorctl_ start kafka >/dev/null
    else
        supervisorctl_ signal KILL "$program" >/dev/null
    fi
    # Healthy again: the part runs (killed, as a new process that
    # supervisord started), the broker, ZooKeeper and MariaDB answer
    # (sluicectl check), nodesim answers, and every service says healthy.
    # Each condition in turn, so that none passes before the pool has seen
    # the part go.
    restarted() {
        local pid
        pid=$(supervisorctl_ pid "$program")
        [ "$row" = node ] || { [ "$pid" != "$old_pid" ] && [ "${pid:-0}" -gt 0 ]; }
    }
    back() {
        restarted && ctl check && curl -sf -o /dev/null --max-time 2 http://127.0.0.1:9105/health && pool_healthy
    }
    healthy_after=timeout
    if wait_until 180 "$program to be back and the pool healthy again" back; then
        healthy_after=$(python3 -c "import time; print('%.1f s' % (time.time() - $killed))")
    fi
    wait "$sim" || die "row $row: the simulator failed (see $out/$row.progress)"
    kill_at=$(python3 -c "print($killed - $started)")
    # Every share the miners were told was accepted is on the topic (a
    # restarted sserver replays its spool once the broker is back).
    counted_all() {
        ctl count-shares --user "$user" --from "$from" --accepted "$out/$row.json" >"$out/$row.count.json" &&
            python3 -c 'import json,sys; sys.exit(1 if json.load(open(sys.argv[1]))["missing"] else 0)' \
                "$out/$row.count.json"
    }
    wait_until 90 "every accepted share on the Share topic" counted_all ||
        log "row $row: accepted shares missing from the Share topic after 90 s (the row fails)"
    # Blocks: every one the miners were told was accepted has its row.
    python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["blocks_found"]))' \
        "$out/$row.json" >"$out/$row.blocks"
    # ...and the node has it (its best chain or a side branch).
    not_on_node() {
        local h
        while read -r h; do
            [ -n "$h" ] || continue
            curl -s --max-time 5 --user sluice:sluice -H 'content-type: text/plain' \
                --data-binary "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"getblockheader\",\"params\":[\"$h\"]}" \
                http://127.0.0.1:18443/ | grep -q '"error":null' || echo "$h"
        done <"$out/$row.blocks"
    }
    recorded_all() {
        local missing
        missing=$({ ctl missing-blocks <"$out/$row.blocks"; not_on_node; } | sort -u | wc -l)
        echo "$missing" >"$out/$row.blocks-missing"
        [ "$missing" = 0 ]
    }
    wait_until 60 "every block found to be recorded" recorded_all ||
        log "row $row: blocks found without a found_blocks row after 60 s (the row fails)"
    if python3 - "$out/$row.json" "$out/$row.progress" "$out/$row.count.json" "$out/$row.blocks-missing" \
        "$kill_at" "$row" "$healthy_after" >>"$table" <<'EOF'
import json, re, statistics, sys
report, progress, counted, missing, kill_at, row, healthy = sys.argv[1:8]
r = json.load(open(report))
c = json.load(open(counted))
kill_at = float(kill_at)
# "[   12 s] connected 1000/1000  shares/s     1000  accepted ..."
rates = []
for line in open(progress).read().replace("\r", "\n").splitlines():
    m = re.match(r"\[\s*(\d+) s\] connected (\d+)/\d+\s+shares/s\s+(\d+)", line)
    if m:
        rates.append((int(m[1]), int(m[3])))
before = [v for t, v in rates if kill_at - 10 <= t < kill_at]
normal = statistics.median(before) if before else 0
dip = sum(1 for t, v in rates if t >= kill_at and v < 0.9 * normal)
t = r["totals"]
lost = len(c["missing"])
dups = c["accepted"] - c["distinct"]
blocks = len(r["blocks_found"])
blocks_lost = int(open(missing).read().strip())
print(f"| {row} | {healthy} | {dip} s | {blocks} / {blocks_lost} "
      f"| {t['accepted']:,} / {lost} / {dups} | {t['rejected']:,} | {r['reconnects']:,} |")
# Every accepted share listed, or the identity check would be hollow.
listed = len(r.get("accepted_hashes", []))
sys.exit(1 if lost or dups or blocks_lost or listed != t["accepted"] else 0)
EOF
    then
        :
    else
        failed+=("$row")
    fi
    tail -1 "$table" >&2
done
echo
echo "install/kill-matrix.sh ${rows[*]} ($MINERS miners, $RATE shares/s, kill after $BEFORE s, $AFTER s after; $(date -u +%Y-%m-%d))"
echo
cat "$table"
if ((${#failed[@]})); then
    die "lost or duplicated work in: ${failed[*]} (see the table; files in $out)"
fi
