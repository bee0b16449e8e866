#!/usr/bin/env bash
# README command 1 with a fresh SLUICE_STATE beside an old one shows only its
# own shares. The local stack stops; install/run.sh runs a whole new pool
# (its own ZooKeeper, MariaDB and Kafka cluster) from a new state directory
# and mines with 200 miners for 20 s (about eight blocks: run.sh fails
# without one); then:
#   - no config the new pool runs with names the old state directory;
#   - the new pool's share log names its own Kafka cluster, not the old one's;
#   - statshttpd's figures are exactly the accepted work its own share log
#     holds (a figure no share of its own explains is a failure);
#   - the old state's share log and solved-share log are untouched.
# The new pool stops and its directory goes; install/run.sh brings the old
# one back.
#
#   install/check-own-state.sh        (after install/run.sh, as install/test.sh runs it)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

old=$SLUICE_STATE
[ -d "$old/sharelog" ] || die "no share log in $old: run install/run.sh first"
cluster_of() { sed -n 's/^cluster.id=//p' "$1/kafka/data/meta.properties"; }
# A state that never mined (a fresh machine's, command 1 on an operator's
# node without miners) has no solved-share log: nothing to fingerprint there.
fingerprint() { find "$old/sharelog" "$old/sserver-solved.log" -type f -print0 2>/dev/null | sort -z | xargs -0 -r md5sum || true; }
old_cluster=$(cluster_of "$old")
old_files=$(fingerprint)

bash install/stack.sh down
fresh=$(mktemp -d /var/tmp/sluice-own-state.XXXXXX)
cleanup() {
    SLUICE_STATE=$fresh bash install/stack.sh down >/dev/null 2>&1 || true
    rm -rf "$fresh"
}
trap cleanup EXIT
log "README command 1 with SLUICE_STATE=$fresh beside $old"
if ! SLUICE_STATE=$fresh SLUICE_SIM_MINERS=200 SLUICE_SIM_SECONDS=20 bash install/run.sh >"$fresh.log" 2>&1; then
    tail -40 "$fresh.log" >&2
    die "install/run.sh with a fresh SLUICE_STATE failed (its output above, all of it in $fresh.log)"
fi
new_cluster=$(cluster_of "$fresh")
[ -n "$new_cluster" ] && [ "$new_cluster" != "$old_cluster" ] \
    || die "the fresh state's Kafka cluster ($new_cluster) is not a new one (old: $old_cluster)"
if grep -rl -- "$old/" "$fresh/config"; then
    die "the configs above of the pool in $fresh name the old state directory $old"
fi

# Everything statshttpd credits is in its own share log, of its own cluster.
own_work() {
    python3 - "$fresh" "$new_cluster" "$SLUICE_BIN/sharelog" <<'PY'
import glob, json, subprocess, sys, urllib.request
fresh, cluster, tool = sys.argv[1:]
files = sorted(glob.glob(f"{fresh}/sharelog/sharelog-*.bin"))
if not files:
    sys.exit("no share log in the fresh state")
logged = 0.0
for path in files:
    with open(path, "rb") as f:
        head = f.read(200)
    if f"kafka-cluster={cluster} ".encode() not in head:
        sys.exit(f"{path} does not name the fresh pool's Kafka cluster {cluster}: {head[:80]!r}")
    day = path[-14:-4]
    out = subprocess.run([tool, "-c", f"{fresh}/config/statshttpd.toml", "dump", day],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        s = json.loads(line)
        if s["status"] in ("Accepted", "Block"):
            logged += s["share_difficulty"]
pool = json.load(urllib.request.urlopen("http://127.0.0.1:8080/api/v1/pool"))
credited = pool["shares"]["1h"]["accept"]
print(f"statshttpd credits {credited!r}; the fresh pool's own share log holds {logged!r}")
sys.exit(0 if logged > 0 and abs(credited - logged) <= 1e-9 * logged else 1)
PY
}
wait_until 30 "statshttpd's figures to be exactly its own share log's" own_work
own_work
[ "$(fingerprint)" = "$old_files" ] || die "the old state's share log or solved-share log changed"
rm -f "$fresh.log"
log "the pool in a fresh SLUICE_STATE shows only its own shares; the old state is untouched"
