#!/usr/bin/env bash
# Runs Sluice locally, end to end: installs what is missing, starts the real
# stack under supervisord (ZooKeeper, MariaDB, the Kafka broker), applies the
# schema, creates the topics, and shows that every part answers.
# (The pool services join the same supervisord as they are built.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

bash install/stack.sh up
echo
supervisorctl_ status
echo
log "the local stack is running; logs in $SLUICE_STATE/log, stop it with: install/stack.sh down"
