#!/usr/bin/env bash
# The whole test suite: formatting, lints, then unit, property and adapter
# tests, the adapter tests against the real ZooKeeper, MariaDB and Apache
# Kafka that install/stack.sh starts, each fuzz target for seconds, the
# cluster drills on test hosts (install/cluster.sh), and last README command
# 1 itself (install/run.sh: the whole pool under supervisord, mining for a
# minute; it fails unless blocks are found, recorded and credited): on an
# operator's own node, with a fresh SLUICE_STATE beside the old one
# (install/check-own-state.sh), and as it is; then the Grafana
# dashboard's queries through a real Prometheus on that pool, and the kill
# matrix's short form on it. Leaves the stack
# running for the next run (install/stack.sh down stops it); .ci/run stops it
# afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

# The browser test's playwright-core is installed with the dashboard's uPlot.
export SLUICE_WEB_DEV=1
bash install/stack.sh up
# Test tools: Prometheus (promtool and a server) checks the Grafana dashboard,
# Debian's chromium runs the dashboard's browser test.
debian_packages prometheus chromium
# SRI's translator_sv2 and mining_device: the SV2 interop tests' peers.
bash install/sv2-translator.sh
bash install/sv2-mining-device.sh
# The local pool's services (from an earlier install/run.sh) would share the
# two cores with the tests; run.sh starts them again at the end.
supervisorctl_ stop nodesim gbtmaker jobmaker jobmaker-standby sserver blkmaker statshttpd agent payer >/dev/null || true
# Tests make topics of their own (sluice-test-*); the last run's go now.
"$SLUICE_BIN/sluicectl" delete-topics --prefix sluice-test- >/dev/null
prune_target
log "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
log "cargo test"
cargo test --workspace --locked --no-fail-fast
# Each fuzz target briefly from its committed seeds, so a regression shows
# (install/fuzz.sh without --smoke runs the 10-million-execution figures).
log "fuzz targets, 5 s each"
bash install/fuzz.sh --smoke
# The pool left running afterwards should not carry the tests' topics.
"$SLUICE_BIN/sluicectl" delete-topics --prefix sluice-test- >/dev/null
# Sluice across hosts: 15 test hosts as network namespaces (a replicated
# Kafka, a ZooKeeper ensemble, three sservers behind HAProxy…) and hosts lost
# under mining miners. Three of the seven drills fit CI's time here (a
# jobmaker leader lost is also services/jobmaker/tests/failover.rs and
# integration-tests/tests/kill.rs, on the real stack); all seven:
# install/cluster.sh drills (SLUICE_TEST_DRILLS=all here).
drills=${SLUICE_TEST_DRILLS:-broker sserver partition}
[ "$drills" = all ] && drills=
log "the cluster drills on test hosts: ${drills:-all}"
bash install/cluster.sh down >/dev/null 2>&1 || true
# shellcheck disable=SC2086
bash install/cluster.sh drills $drills
# README command 1 as an operator with their own bitcoind runs it: a nodesim
# outside the pool's supervisord, on other ports, stands in for that node.
log "README command 1 on an operator's own node: install/run.sh with SLUICE_NODE_RPC_URL"
own=$(mktemp -d /tmp/sluice-own-node.XXXXXX)
# The operator's credentials are distinctive, so that afterwards every log,
# HTTP answer and topic can be searched for them (install/check-secrets.sh).
rpc_secret=rpc-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
db_secret=db-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
bot_secret=1234:tok-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mariadb --socket="$SLUICE_STATE/mariadb/mysqld.sock" -uroot <<SQL
DROP USER IF EXISTS 'sluice_operator'@'127.0.0.1';
CREATE USER 'sluice_operator'@'127.0.0.1' IDENTIFIED BY '$db_secret';
GRANT ALL PRIVILEGES ON \`sluice\`.* TO 'sluice_operator'@'127.0.0.1';
SQL
sed -e 's/127.0.0.1:18443/127.0.0.1:18643/; s/127.0.0.1:28332/127.0.0.1:28632/; s/127.0.0.1:9105/127.0.0.1:9125/' \
    -e "s/^rpc_password = .*/rpc_password = \"$rpc_secret\"/" \
    deploy/config/nodesim.toml > "$own/nodesim.toml"
"$SLUICE_BIN/nodesim" -c "$own/nodesim.toml" > "$own/nodesim.log" 2>&1 &
own_node=$!
# The operator configured the Telegram bot too; Telegram itself is out of
# reach here, so a stand-in Bot API hands it /status and keeps its answers.
python3 install/fake-telegram.py 18680 "$bot_secret" 4242 "$own/telegram.jsonl" &
telegram=$!
trap 'kill $own_node $telegram 2>/dev/null || true' EXIT
wait_until 30 "the operator's node on 127.0.0.1:18643" tcp_open 127.0.0.1 18643
SLUICE_NODE_RPC_URL=http://127.0.0.1:18643 SLUICE_NODE_RPC_USER=sluice SLUICE_NODE_RPC_PASSWORD=$rpc_secret \
    SLUICE_NODE_ZMQ=tcp://127.0.0.1:28632 SLUICE_NODE_NAME=operator-node \
    SLUICE_MYSQL_URL=mysql://sluice_operator:$db_secret@127.0.0.1:3306/sluice \
    SLUICE_TGBOT_TOKEN=$bot_secret SLUICE_TGBOT_CHATS=4242 SLUICE_TGBOT_API_URL=http://127.0.0.1:18680 \
    bash install/run.sh | tee "$own/run.log"
grep -q 'node operator-node height' "$own/run.log" || die "no template from the operator's node in run.sh's output"
curl -sf http://127.0.0.1:8080/api/v1/health | grep -q '"node:operator-node"' \
    || die "statshttpd's health does not name the operator's node"
bot_answered() { grep -q '"chat": 4242, "text": "Servers (1)' "$own/telegram.jsonl" 2>/dev/null; }
wait_until 30 "the Telegram bot's answer to /status" bot_answered
grep -q 'node:operator-node ok' "$own/telegram.jsonl" || die "the bot's /status does not show the operator's node"
log "no credential of the operator's in a log, an HTTP answer or a Kafka message"
SLUICE_SECRET_LOGS="$own/run.log $own/nodesim.log" bash install/check-secrets.sh "$rpc_secret" "$db_secret" "$bot_secret"
kill "$own_node" "$telegram"
rm -rf "$own"
# Command 1 again with a state directory of its own beside this one: a whole
# new pool that shows only its own shares (run.sh below brings this one back).
bash install/check-own-state.sh
log "README command 1: install/run.sh"
bash install/run.sh
log "the Grafana dashboard's queries against the pool command 1 left running"
python3 install/check-dashboard.py
log "the web dashboard in chromium against that pool (screenshots in $SLUICE_STATE/screenshots)"
SLUICE_TOOLS=$SLUICE_TOOLS node install/web/browser-test.cjs "$SLUICE_STATE/screenshots" demo
# The kill matrix, short: sserver killed with SIGKILL, and the broker stopped,
# then sserver killed while it is down, then both back. Any block or accepted
# share lost (checked by header hash) or recorded twice fails it. Every row:
# install/kill-matrix.sh (BENCHMARKS.md).
log "the kill matrix, short form: sserver, kafka+sserver"
SLUICE_KM_MINERS=200 SLUICE_KM_BEFORE=5 SLUICE_KM_AFTER=25 bash install/kill-matrix.sh sserver kafka+sserver
