#!/usr/bin/env python3
"""Writes every host's configuration for Sluice across hosts, from one layout
(deploy/cluster/layout.toml): per host, the directory that is its
SLUICE_STATE, holding

  host.env                the environment its supervisord runs with
  programs                the supervisord programs it runs, in start order
  config/*.toml           its services' configs (deploy/config/ with the
                          layout's addresses: brokers, ensemble, database,
                          node, listen and admin addresses)
  kafka/server.properties its broker's (deploy/kafka/server.properties with
                          this node's id, listeners and the quorum)
  zookeeper/zoo.cfg       its ensemble member's, with data/myid
  haproxy/haproxy.cfg     the load balancer's: every sserver, PROXY v2

and cluster.json (what runs where, for install/cluster.sh and the drills).

  install/cluster-render.py LAYOUT OUT [--state DIR]

--state is the state directory on the hosts themselves (default
OUT/<host>, as install/cluster.sh runs them on one machine; on real hosts
/var/lib/sluice). Nothing here contacts any host.
"""
import argparse
import ipaddress
import json
import re
import sys
import tomllib
from pathlib import Path

HOME = Path(__file__).resolve().parent.parent
ROLES = {
    "kafka", "zookeeper", "mariadb", "nodesim", "gbtmaker", "jobmaker", "blkmaker",
    "sserver", "statshttpd", "haproxy", "miners",
}
# The supervisord program each role runs, in the order a host starts them.
PROGRAMS = [
    ("zookeeper", "zookeeper"), ("kafka", "kafka"), ("mariadb", "mariadb"),
    ("nodesim", "nodesim"), ("gbtmaker", "gbtmaker"), ("jobmaker", "jobmaker"),
    ("blkmaker", "blkmaker"), ("sserver", "sserver"), ("statshttpd", "statshttpd"),
    ("haproxy", "haproxy"),
]
# Each service's admin port (/metrics, /health), as in deploy/config/.
ADMIN = {"gbtmaker": 9101, "jobmaker": 9102, "sserver": 9103, "blkmaker": 9104,
         "nodesim": 9105, "statshttpd": 9106}
# ZooKeeper sessions across hosts: long enough to outlast the ensemble
# replacing a lost leader (about 2.5 s with zoo.cfg below) with the client on
# the lost member, short enough that a lost jobmaker leader's standby leads
# within 10 s (its session ends first). A lost sserver's id is only held
# longer.
SESSION_MS = {"sserver": 10000, "jobmaker": 5000}
KAFKA_PORT, CONTROLLER_PORT, ZK_PORT, MYSQL_PORT = 9092, 9093, 2181, 3306
NODE_RPC_PORT, NODE_ZMQ_PORT, SV2_PORT, API_PORT = 18443, 28332, 3336, 8080
MYSQL_USER = "sluice"


def fail(msg: str) -> None:
    sys.exit(f"cluster-render: {msg}")


def quoted(v: str) -> str:
    return json.dumps(v)


def set_in(text: str, section: str, key: str, value: str) -> str:
    """Sets `key = value` in `[section]` ("" is the top level); the key must
    be there (a typo must fail, not add a setting nobody reads)."""
    out, current, done = [], "", False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\[+([^\]]+)\]+\s*$", line)
        if header:
            current = header.group(1).strip()
        elif current == section and re.match(rf"^{re.escape(key)} = ", line):
            line = f"{key} = {value}\n"
            done = True
        out.append(line)
    if not done:
        fail(f"no `{key}` in [{section}] to set")
    return "".join(out)


def load(path: Path) -> dict:
    layout = tomllib.loads(path.read_text())
    subnet = ipaddress.ip_network(layout["network"]["subnet"])
    names, addrs = set(), set()
    for h in layout["hosts"]:
        if h["name"] in names or not re.fullmatch(r"[a-z][a-z0-9]{0,9}", h["name"]):
            fail(f"host name {h['name']!r}: unique, lowercase, at most 10 characters")
        if ipaddress.ip_address(h["address"]) not in subnet or h["address"] in addrs:
            fail(f"{h['name']}: address {h['address']} not unique in {subnet}")
        bad = set(h["roles"]) - ROLES
        if bad:
            fail(f"{h['name']}: unknown roles {sorted(bad)}")
        names.add(h["name"])
        addrs.add(h["address"])
    for role, least in (("kafka", 1), ("zookeeper", 1), ("mariadb", 1), ("gbtmaker", 1),
                        ("jobmaker", 1), ("blkmaker", 1), ("sserver", 1), ("statshttpd", 1)):
        if len(with_role(layout, role)) < least:
            fail(f"no host has the role {role}")
    if len(with_role(layout, "mariadb")) != 1 or len(with_role(layout, "statshttpd")) != 1:
        fail("exactly one mariadb and one statshttpd host")
    if not with_role(layout, "nodesim") and "node" not in layout:
        fail("no nodesim host and no [node] (rpc_url, zmq_hashblock, rpc_user, rpc_password)")
    return layout


def with_role(layout: dict, role: str) -> list[dict]:
    return [h for h in layout["hosts"] if role in h["roles"]]


def stratum_port(layout: dict) -> int:
    return int(layout.get("sserver", {}).get("stratum_port", 3333))


def facts(layout: dict) -> dict:
    """Where each shared thing is, as every service reads it."""
    kafka = with_role(layout, "kafka")
    zk = with_role(layout, "zookeeper")
    db = with_role(layout, "mariadb")[0]
    sim = with_role(layout, "nodesim")
    if sim:
        node = {"name": "nodesim", "rpc_url": f"http://{sim[0]['address']}:{NODE_RPC_PORT}",
                "zmq_hashblock": f"tcp://{sim[0]['address']}:{NODE_ZMQ_PORT}",
                "zmq_rawblock": f"tcp://{sim[0]['address']}:{NODE_ZMQ_PORT}",
                "rpc_user": "sluice", "rpc_password": "sluice"}
    else:
        node = dict(layout["node"])
        node.setdefault("name", node["rpc_url"].split("//")[-1])
    replication = int(layout.get("kafka", {}).get("replication", min(3, len(kafka))))
    if not 1 <= replication <= len(kafka):
        fail(f"[kafka] replication = {replication} with {len(kafka)} brokers")
    return {
        "brokers": ",".join(f"{h['address']}:{KAFKA_PORT}" for h in kafka),
        "zookeeper": ",".join(f"{h['address']}:{ZK_PORT}" for h in zk),
        "mysql_url": f"mysql://{MYSQL_USER}:{MYSQL_USER}@{db['address']}:{MYSQL_PORT}/sluice",
        "node": node,
        "replication": replication,
    }


def service_config(name: str, host: dict, f: dict, state: str, layout: dict) -> str:
    text = (HOME / "deploy" / "config" / f"{name}.toml").read_text()
    text = text.replace("/var/lib/sluice", state)
    addr = host["address"]
    if "\n[service]" in text:
        port = ADMIN.get(name)
        if port:
            text = set_in(text, "service", "admin_listen", quoted(f"{addr}:{port}"))
    if "\n[kafka]" in text:
        text = set_in(text, "kafka", "brokers", quoted(f["brokers"]))
    if "\n[zookeeper]" in text:
        text = set_in(text, "zookeeper", "connect", quoted(f["zookeeper"]))
        if name in SESSION_MS:
            text = set_in(text, "zookeeper", "session_timeout_ms", str(SESSION_MS[name]))
    if "\n[mysql]" in text:
        text = set_in(text, "mysql", "url", quoted(f["mysql_url"]))
    if "\n[[nodes]]" in text:
        node = f["node"]
        for key in ("name", "rpc_url", "rpc_user", "rpc_password"):
            text = set_in(text, "nodes", key, quoted(node[key]))
        if name in ("gbtmaker", "jobmaker"):
            text = set_in(text, "nodes", "zmq_hashblock", quoted(node["zmq_hashblock"]))
        if name == "jobmaker":
            # rawblock only where the node publishes it (nodesim does).
            if node.get("zmq_rawblock"):
                text = set_in(text, "nodes", "zmq_rawblock", quoted(node["zmq_rawblock"]))
            else:
                text = re.sub(r"^zmq_rawblock = .*\n", "", text, flags=re.MULTILINE)
    if name == "nodesim":
        bits = layout.get("nodesim", {}).get("bits")
        if bits:
            text = set_in(text, "", "bits", quoted(bits))
        text = set_in(text, "", "rpc_listen", quoted(f"{addr}:{NODE_RPC_PORT}"))
        text = set_in(text, "", "zmq_hashblock", quoted(f"tcp://{addr}:{NODE_ZMQ_PORT}"))
    if name == "sserver":
        text = set_in(text, "", "listen", quoted(f"{addr}:{stratum_port(layout)}"))
        text = set_in(text, "", "proxy_protocol", "true")
        text = set_in(text, "sv2", "listen", quoted(f"{addr}:{SV2_PORT}"))
        pinned = layout.get("sserver", {}).get("pin_difficulty")
        if pinned:
            for key in ("default", "min", "max"):
                text = set_in(text, "difficulty", key, str(pinned))
    if name == "statshttpd":
        text = set_in(text, "", "listen", quoted(f"{addr}:{API_PORT}"))
    if name == "blkmaker":
        # One consumer group for every blkmaker: each block is taken by one
        # of them, and by another if that one's host is lost.
        text = set_in(text, "", "group", quoted("sluice-blkmaker"))
    if name == "sluicectl":
        text = set_in(text, "", "replication", str(f["replication"]))
    return text


def kafka_properties(host: dict, layout: dict, f: dict, state: str) -> str:
    kafka = with_role(layout, "kafka")
    node_id = kafka.index(host) + 1
    n = len(kafka)
    # Kafka's internal topics keep as many copies as the pool's (sluicectl
    # create-topics, the same rule: two in sync from three copies up).
    rf = f["replication"]
    isr = 2 if rf >= 3 else 1
    voters = ",".join(f"{i + 1}@{h['address']}:{CONTROLLER_PORT}" for i, h in enumerate(kafka))
    a = host["address"]
    overrides = {
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{a}:{KAFKA_PORT},CONTROLLER://{a}:{CONTROLLER_PORT}",
        "advertised.listeners": f"PLAINTEXT://{a}:{KAFKA_PORT}",
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(isr),
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(isr),
    }
    lines = []
    for line in (HOME / "deploy" / "kafka" / "server.properties").read_text().splitlines():
        key = line.split("=", 1)[0]
        if not line.startswith("#") and key in overrides:
            line = f"{key}={overrides.pop(key)}"
        lines.append(line)
    if overrides:
        fail(f"deploy/kafka/server.properties lacks {sorted(overrides)}")
    lines.append(f"log.dirs={state}/kafka/data")
    header = (f"# Broker {node_id} of {n} ({host['name']}), written by install/cluster-render.py "
              "from deploy/kafka/server.properties.\n")
    return header + "\n".join(lines) + "\n"


def zoo_cfg(host: dict, layout: dict, state: str) -> tuple[str, int]:
    zk = with_role(layout, "zookeeper")
    myid = zk.index(host) + 1
    servers = "\n".join(f"server.{i + 1}={h['address']}:2888:3888" for i, h in enumerate(zk))
    return (f"""# Member {myid} of the ensemble ({host['name']}), written by install/cluster-render.py.
# A follower gives up on a lost leader after syncLimit ticks (2 s), and the
# other two elect a new one in well under a second: shorter than any
# client's session (sserver 10 s, jobmaker 5 s), so no session ends when a
# member is lost, even one whose clients were on that member.
tickTime=1000
initLimit=10
syncLimit=2
dataDir={state}/zookeeper/data
clientPortAddress={host['address']}
clientPort={ZK_PORT}
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
{servers}
""", myid)


def haproxy_cfg(host: dict, layout: dict) -> str:
    port = stratum_port(layout)
    stratum = with_role(layout, "sserver")

    def backend(name: str, p: int) -> str:
        servers = "\n".join(
            f"    server {h['name']} {h['address']}:{p} send-proxy-v2 check check-send-proxy"
            for h in stratum)
        return f"backend {name}\n{servers}\n"

    a = host["address"]
    return f"""# Written by install/cluster-render.py: miners reach the sservers only
# through here. Each sserver gets the miner's address in a PROXY v2 header
# (sserver proxy_protocol = true). A server failing two checks a second
# apart is taken out and its miners' connections are closed, so they
# reconnect to the others at once instead of waiting on a dead host.
# No maxconn: HAProxy derives it from its open-files limit (two descriptors
# a miner); raise that limit (LimitNOFILE) on a real balancer.
global
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 3s
    timeout client 20m
    timeout server 20m
    balance leastconn
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions

frontend stratum
    bind {a}:{port}
    default_backend stratum

frontend stratum_v2
    bind {a}:{SV2_PORT}
    default_backend stratum_v2

{backend("stratum", port)}
{backend("stratum_v2", SV2_PORT)}"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("layout", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--state", help="each host's state directory on the host (default OUT/<host>)")
    p.add_argument("--nodesim-bits", help="nodesim's compact target (deploy/config/nodesim.toml's otherwise)")
    p.add_argument("--pin-difficulty", type=float,
                   help="every sserver's difficulty, fixed (no vardiff: for throughput benchmarks)")
    args = p.parse_args()
    layout = load(args.layout)
    if args.pin_difficulty:
        layout.setdefault("sserver", {})["pin_difficulty"] = args.pin_difficulty
    if args.nodesim_bits:
        if not re.fullmatch(r"[0-9a-f]{8}", args.nodesim_bits):
            fail(f"--nodesim-bits {args.nodesim_bits!r}: 8 hex digits, e.g. 1d00ffff")
        layout.setdefault("nodesim", {})["bits"] = args.nodesim_bits
    f = facts(layout)
    summary = {"subnet": layout["network"]["subnet"], "brokers": f["brokers"],
               "zookeeper": f["zookeeper"], "mysql_url": f["mysql_url"],
               "node": f["node"], "hosts": []}
    for host in layout["hosts"]:
        out = args.out / host["name"]
        state = args.state or str(out.resolve())
        (out / "config").mkdir(parents=True, exist_ok=True)
        roles = host["roles"]
        programs = [prog for role, prog in PROGRAMS if role in roles]
        services = [r for r in roles if (HOME / "deploy" / "config" / f"{r}.toml").exists()]
        if "miners" in roles:
            services.append("sluicectl")
        for name in services:
            (out / "config" / f"{name}.toml").write_text(
                service_config(name, host, f, state, layout))
        if "kafka" in roles:
            (out / "kafka" / "tmp").mkdir(parents=True, exist_ok=True)
            (out / "kafka" / "server.properties").write_text(kafka_properties(host, layout, f, state))
        if "zookeeper" in roles:
            cfg, myid = zoo_cfg(host, layout, state)
            (out / "zookeeper" / "data").mkdir(parents=True, exist_ok=True)
            (out / "zookeeper" / "zoo.cfg").write_text(cfg)
            (out / "zookeeper" / "data" / "myid").write_text(f"{myid}\n")
        if "haproxy" in roles:
            (out / "haproxy").mkdir(exist_ok=True)
            (out / "haproxy" / "haproxy.cfg").write_text(haproxy_cfg(host, layout))
        (out / "log").mkdir(exist_ok=True)
        (out / "programs").write_text("".join(f"{prog}\n" for prog in programs))
        (out / "host.env").write_text(
            f"SLUICE_STATE={state}\nSLUICE_BIND={host['address']}\nSLUICE_HOST={host['name']}\n")
        summary["hosts"].append({
            "name": host["name"], "address": host["address"], "roles": roles,
            "programs": programs,
            "admin": {s: f"{host['address']}:{ADMIN[s]}" for s in services if s in ADMIN},
        })
    lb = with_role(layout, "haproxy")
    port = stratum_port(layout)
    summary["stratum"] = (f"{lb[0]['address']}:{port}" if lb
                          else f"{with_role(layout, 'sserver')[0]['address']}:{port}")
    summary["api"] = f"{with_role(layout, 'statshttpd')[0]['address']}:{API_PORT}"
    (args.out / "cluster.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"cluster-render: {len(layout['hosts'])} hosts written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
