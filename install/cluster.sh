#!/usr/bin/env bash
# Sluice across hosts, on this machine: every host of deploy/cluster/layout.toml
# is a network namespace with its own address, joined to the others by a veth
# pair on one bridge (in a namespace of its own: the machine's own network
# has no address on it and the hosts have no route out). Each host runs its
# own supervisord with the programs of its roles, configured by
# install/cluster-render.py from the layout.
#
#   install/cluster.sh up            build the hosts, start them, wait until the pool serves
#   install/cluster.sh down          stop every program, remove the hosts and their state
#   install/cluster.sh status        every host's programs
#   install/cluster.sh drills [NAME…]   up, the drills (install/cluster-drills.py), down
#   install/cluster.sh on HOST CMD…  run a command on a host (its network, its environment)
#   install/cluster.sh ctl HOST ARGS…   supervisorctl of a host
#   install/cluster.sh cut HOST      pull a host's cable (its link goes down)
#   install/cluster.sh heal HOST|all   plug it (every host) back
#   install/cluster.sh partition "A B…" "C D…"   drop all traffic between two groups of hosts
#   install/cluster.sh unpartition   end every partition
#
# SLUICE_CLUSTER_NODESIM_BITS=1d00ffff makes nodesim's blocks hard to find (no
# simulated share is then a block) and SLUICE_CLUSTER_PIN_DIFFICULTY=2e-10
# fixes every sserver's difficulty (no vardiff): for throughput benchmarks.
# State and logs: $SLUICE_CLUSTER_DIR (default /var/tmp/sluice-cluster), one
# directory per host (its SLUICE_STATE; logs in <host>/log/).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CLUSTER=${SLUICE_CLUSTER_DIR:-/var/tmp/sluice-cluster}
LAYOUT=${SLUICE_CLUSTER_LAYOUT:-$SLUICE_HOME/deploy/cluster/layout.toml}
# Namespace names: the switch, and one per host.
SWITCH=sl-switch
ns() { echo "sl-$1"; }

# Hosts of the rendered layout: "name address" lines, or the names of a role.
hosts() { python3 -c 'import json,sys; [print(h["name"], h["address"]) for h in json.load(open(sys.argv[1]))["hosts"]]' "$CLUSTER/cluster.json"; }
with_role() {
    python3 -c 'import json,sys; [print(h["name"]) for h in json.load(open(sys.argv[1]))["hosts"] if sys.argv[2] in h["roles"]]' \
        "$CLUSTER/cluster.json" "$1"
}
address_of() { hosts | awk -v h="$1" '$1 == h { print $2 }'; }
prefix_len() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["subnet"].split("/")[1])' "$CLUSTER/cluster.json"; }
known() { [ -n "$(address_of "$1")" ] || die "no host $1 in $CLUSTER/cluster.json"; }

# on HOST CMD…: CMD in HOST's namespace with HOST's environment.
on() {
    local host=$1; shift
    known "$host"
    # shellcheck disable=SC2046
    ip netns exec "$(ns "$host")" env $(cat "$CLUSTER/$host/host.env") "$@"
}
ctl() {
    local host=$1; shift
    SLUICE_STATE=$CLUSTER/$host supervisorctl -c "$SUPERVISOR_CONF" "$@"
}

# --- the network -------------------------------------------------------------

make_network() {
    local plen name addr
    plen=$(prefix_len)
    ip netns add "$SWITCH"
    ip -n "$SWITCH" link set lo up
    ip -n "$SWITCH" link add br0 type bridge
    ip -n "$SWITCH" link set br0 up
    while read -r name addr; do
        ip netns add "$(ns "$name")"
        ip link add "v-$name" netns "$SWITCH" type veth peer name eth0 netns "$(ns "$name")"
        ip -n "$SWITCH" link set "v-$name" master br0 up
        ip -n "$(ns "$name")" link set lo up
        ip -n "$(ns "$name")" addr add "$addr/$plen" dev eth0
        ip -n "$(ns "$name")" link set eth0 up
    done < <(hosts)
    log "$(hosts | wc -l) test hosts on $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["subnet"])' "$CLUSTER/cluster.json") (namespaces sl-*, bridge in $SWITCH)"
}

remove_network() {
    local n pids
    for n in $(ip netns list | awk '{print $1}' | grep '^sl-' || true); do
        pids=$(ip netns pids "$n" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
}

cut() { known "$1"; ip -n "$SWITCH" link set "v-$1" down; log "cut $1 off"; }
heal() {
    local name _
    if [ "$1" = all ]; then
        while read -r name _; do ip -n "$SWITCH" link set "v-$name" up; done < <(hosts)
    else
        known "$1"; ip -n "$SWITCH" link set "v-$1" up; log "$1 back"
    fi
}

# Traffic between the two groups is dropped both ways (blackhole routes on
# every host of each group: sends are lost as on a dead link, nothing
# answers).
partition() {
    local a b
    for a in $1; do for b in $2; do
        ip -n "$(ns "$a")" route add blackhole "$(address_of "$b")/32"
        ip -n "$(ns "$b")" route add blackhole "$(address_of "$a")/32"
    done; done
    log "partitioned [$1] from [$2]"
}
unpartition() {
    local name _
    while read -r name _; do
        ip -n "$(ns "$name")" route flush type blackhole 2>/dev/null || true
    done < <(hosts)
    log "every partition ended"
}

# --- the hosts ---------------------------------------------------------------

prepare_hosts() {
    local host cluster_id addr
    rm -rf "$CLUSTER"
    python3 "$SLUICE_HOME/install/cluster-render.py" "$LAYOUT" "$CLUSTER" \
        ${SLUICE_CLUSTER_NODESIM_BITS:+--nodesim-bits "$SLUICE_CLUSTER_NODESIM_BITS"} \
        ${SLUICE_CLUSTER_PIN_DIFFICULTY:+--pin-difficulty "$SLUICE_CLUSTER_PIN_DIFFICULTY"}
    # One KRaft cluster id for every broker.
    cluster_id=$(java -Xmx128m -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
    for host in $(with_role kafka); do
        java -Xmx256m "-Dlog4j2.configurationFile=$SLUICE_HOME/deploy/kafka/tools-log4j2.xml" \
            -Djava.io.tmpdir="$CLUSTER/$host/kafka/tmp" -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool \
            format -t "$cluster_id" -c "$CLUSTER/$host/kafka/server.properties" >"$CLUSTER/$host/log/kafka-format.log" 2>&1 \
            || die "formatting $host's Kafka storage failed: see $CLUSTER/$host/log/kafka-format.log"
    done
    for host in $(with_role mariadb); do
        mkdir -p "$CLUSTER/$host/mariadb"
        mariadb-install-db --no-defaults --datadir="$CLUSTER/$host/mariadb/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db >"$CLUSTER/$host/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed: see $CLUSTER/$host/log/mariadb-install.log"
    done
    # One Stratum V2 authority key for every sserver (miners trust one key).
    "$SLUICE_BIN/sluicectl" sv2-keygen --out "$CLUSTER/sv2-authority.toml" >"$CLUSTER/sv2-authority.pub" 2>/dev/null
    for host in $(with_role sserver); do cp "$CLUSTER/sv2-authority.toml" "$CLUSTER/$host/"; done
    log "Kafka cluster $cluster_id formatted on $(with_role kafka | xargs); configs in $CLUSTER"
}

start_supervisors() {
    local host _
    while read -r host _; do
        on "$host" supervisord -c "$SUPERVISOR_CONF"
    done < <(hosts)
    while read -r host _; do
        wait_until 10 "$host's supervisord" ctl "$host" pid
    done < <(hosts)
}

# start ROLE…: each role's program on every host that has it.
start() {
    local role host
    for role in "$@"; do
        for host in $(with_role "$role"); do
            ctl "$host" start "$role" >/dev/null || die "$host: $role did not start: see $CLUSTER/$host/log/$role.log"
        done
    done
}

probe() { on miners timeout 3 bash -c "$1" >/dev/null 2>&1; }
zk_serving() { on miners bash -c "exec 3<>/dev/tcp/$1/2181 && printf srvr >&3 && cat <&3" 2>/dev/null | grep -Eq 'Mode: (leader|follower)'; }
port_open() { probe "exec 3<>/dev/tcp/$1/$2"; }
http_ok() { on miners curl -fsS --max-time 3 "http://$1" >/dev/null 2>&1; }

wait_for_infra() {
    local host
    for host in $(with_role zookeeper); do wait_until 90 "ZooKeeper on $host in the ensemble" zk_serving "$(address_of "$host")"; done
    for host in $(with_role mariadb); do
        wait_until 60 "MariaDB on $host" mariadb-admin --socket="$CLUSTER/$host/mariadb/mysqld.sock" -uroot ping
    done
    for host in $(with_role kafka); do wait_until 120 "Kafka on $host" port_open "$(address_of "$host")" 9092; done
    log "ZooKeeper ensemble, Kafka cluster and MariaDB up"
}

bootstrap() {
    local db subnet_like
    db=$(with_role mariadb | head -1)
    subnet_like=$(python3 -c 'import json,sys,ipaddress; n=ipaddress.ip_network(json.load(open(sys.argv[1]))["subnet"]); print(".".join(str(n.network_address).split(".")[:3]) + ".%")' "$CLUSTER/cluster.json")
    mariadb --socket="$CLUSTER/$db/mariadb/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS sluice CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'sluice'@'$subnet_like' IDENTIFIED BY 'sluice';
GRANT ALL PRIVILEGES ON sluice.* TO 'sluice'@'$subnet_like';
SQL
    local sluicectl=("$SLUICE_BIN/sluicectl" -c "$CLUSTER/miners/config/sluicectl.toml")
    on miners "${sluicectl[@]}" migrate
    on miners "${sluicectl[@]}" create-topics
    on miners "${sluicectl[@]}" check
}

wait_for_pool() {
    local host
    for host in $(with_role sserver); do wait_until 60 "sserver on $host" http_ok "$(address_of "$host"):9103/health"; done
    for host in $(with_role statshttpd); do wait_until 60 "statshttpd on $host" http_ok "$(address_of "$host"):9106/health"; done
    local stratum
    stratum=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stratum"])' "$CLUSTER/cluster.json")
    wait_until 30 "HAProxy on $stratum" port_open "${stratum%:*}" "${stratum#*:}"
    log "the pool serves miners at stratum+tcp://$stratum (through HAProxy; V2 on port 3336, key $(cat "$CLUSTER/sv2-authority.pub"))"
}

up() {
    [ -z "$(ip netns list | grep '^sl-' || true)" ] || die "test hosts exist already: install/cluster.sh down first"
    bash "$SLUICE_HOME/install/deps.sh"
    debian_packages haproxy iproute2 curl
    log "building the pool's release binaries into $SLUICE_BIN"
    build_release
    prepare_hosts
    make_network
    start_supervisors
    start zookeeper kafka mariadb
    wait_for_infra
    bootstrap
    start nodesim gbtmaker jobmaker blkmaker sserver statshttpd haproxy
    wait_for_pool
}

down() {
    local host _
    if [ -f "$CLUSTER/cluster.json" ]; then
        while read -r host _; do
            ctl "$host" shutdown >/dev/null 2>&1 || true
        done < <(hosts)
    fi
    # Whatever still runs in a test host (a program supervisord could not
    # stop) is killed with it; nothing outside the namespaces is touched.
    remove_network
    rm -rf "$CLUSTER"
    log "test hosts removed"
}

status() {
    local host _
    while read -r host _; do
        echo "== $host ($(address_of "$host"))"
        ctl "$host" status || true
    done < <(hosts)
}

drills() {
    up
    local code=0
    on miners env SLUICE_CLUSTER_DIR="$CLUSTER" python3 "$SLUICE_HOME/install/cluster-drills.py" "$@" || code=$?
    [ "${SLUICE_CLUSTER_KEEP:-0}" = 1 ] || down
    return "$code"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    drills) shift; drills "$@" ;;
    on) shift; on "$@" ;;
    ctl) shift; ctl "$@" ;;
    cut) cut "$2" ;;
    heal) heal "$2" ;;
    partition) partition "$2" "$3" ;;
    unpartition) unpartition ;;
    *) echo "usage: $0 up|down|status|drills|on HOST CMD…|ctl HOST ARGS…|cut HOST|heal HOST|partition \"A…\" \"B…\"|unpartition" >&2; exit 64 ;;
esac
