#!/usr/bin/env bash
# install/check-secrets.sh SECRET...
#
# Fails if any SECRET (a node RPC password, a MySQL password, a bot token)
# appears where the running pool shows or keeps what it does: its programs'
# logs under $SLUICE_STATE/log (and any extra files in SLUICE_SECRET_LOGS),
# every HTTP answer of statshttpd and of every service's admin port, and
# every field of the newest messages on each of the pool's five topics.
# install/test.sh runs it after a pool ran with distinctive credentials.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

[ $# -gt 0 ] || die "usage: install/check-secrets.sh SECRET..."
for s in "$@"; do
    [ "${#s}" -ge 12 ] || die "a secret to look for must be distinctive (12 characters or more): $s"
done

seen=$(mktemp -d /tmp/sluice-secrets.XXXXXX)
trap 'rm -rf "$seen"' EXIT

# What the pool's programs logged (supervisord's captured output).
logs=()
for program in supervisord nodesim gbtmaker jobmaker jobmaker-standby sserver blkmaker statshttpd tgbot payer; do
    [ -f "$SLUICE_STATE/log/$program.log" ] && logs+=("$SLUICE_STATE/log/$program.log")
done
# shellcheck disable=SC2206
[ -z "${SLUICE_SECRET_LOGS:-}" ] || logs+=($SLUICE_SECRET_LOGS)

# What anyone asking over HTTP is told: the API and pages, and each admin port.
api=http://127.0.0.1:8080
paths=(/ /api/v1/pool /api/v1/servers /api/v1/services /api/v1/db /api/v1/health /api/v1/blocks
    /api/v1/minutes /api/v1/users/demo /api/v1/users/demo/workers /metrics /pool /servers /blocks /u/demo
    "/worker_status?user_id=1&worker_id=0" /flush_db_time)
for p in "${paths[@]}"; do
    curl -s --max-time 10 "$api$p" >> "$seen/http" || true
    echo >> "$seen/http"
done
for port in 9101 9102 9103 9104 9105 9106 9107 9108; do
    for p in /health /metrics; do
        curl -s --max-time 10 "http://127.0.0.1:$port$p" >> "$seen/http" || true
        echo >> "$seen/http"
    done
done
[ -s "$seen/http" ] || die "no HTTP answer to look in"

# What travels on Kafka: every field of the newest messages of each topic.
for topic in rawgbt job share solved event; do
    "$SLUICE_BIN/sluicectl" -c deploy/config/sluicectl.toml tail "$topic" -n 2000 --full >> "$seen/topics" \
        || die "cannot read the $topic topic"
done
[ -s "$seen/topics" ] || die "no message on any topic to look in"

found=0
for s in "$@"; do
    for f in "${logs[@]}" "$seen/http" "$seen/topics"; do
        [ -f "$f" ] || continue
        if grep -qF -- "$s" "$f"; then
            where=$f
            [ "$f" = "$seen/http" ] && where="an HTTP answer"
            [ "$f" = "$seen/topics" ] && where="a Kafka message"
            log "a secret (${s:0:4}…) appears in $where, $(grep -cF -- "$s" "$f") lines"
            found=1
        fi
    done
done
[ "$found" -eq 0 ] || die "credentials leaked (above)"
log "no secret in ${#logs[@]} logs, $(wc -c < "$seen/http") bytes of HTTP answers or $(wc -l < "$seen/topics") Kafka messages"
