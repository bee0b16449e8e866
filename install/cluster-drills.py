#!/usr/bin/env python3
"""The cluster drills: hosts lost under mining miners, on the test hosts of
install/cluster.sh (which runs this on the `miners` host: `install/cluster.sh
drills [NAME…]`). Each drill mines as a user of its own through HAProxy, breaks
something, mends it, and asserts what miners and the operator rely on:

  every share a miner was told was accepted is on the Share topic, and no
  header is there twice: checked by identity, each header hash the simulator
  saw accepted (--record-accepted) against the topic's records from the
  drill's start (sluicectl count-shares --accepted);
  every block a miner was told was accepted has exactly one found_blocks row;
  what the drill itself promises (below), with its recovery time measured.

Drills (in this order by default):
  broker      a Kafka broker's host cut off for 60 s, then back: mining goes on
              through the other two, the broker catches up (no partition
              under-replicated)
  zookeeper   the ensemble's leader cut off: the other two keep the quorum;
              every sserver keeps its id and the jobmaker leader its term
  jobmaker    the leading jobmaker's host cut off: the other leads within
              10 s, new blocks reach the miners; back, the old one's jobs
              are fenced by epoch and it stands by
  jobmaker-frozen
              the leading jobmaker frozen 20 s (SIGSTOP) and thawed: the other
              leads within 10 s; thawed, the old one stands by, any job it
              sent meanwhile is dropped by every sserver (epoch fence)
  sserver     an sserver's host cut off: HAProxy takes it out, its miners are
              mining on the others within 30 s; their work is credited once
  partition   every sserver host cut from every broker for 30 s: the miners
              keep mining the last job, every accepted share and block
              candidate is delivered afterwards
  blkmaker    the host of the blkmaker taking solved shares cut off: the other
              takes them; each block is recorded once

In every drill each block found reaches the node (nodesim's submitblock
answers, counted): as a block once; "submitted again" counts the submissions
the node had already seen, which only a blkmaker's replay after losing its
host may cause (at least once: never a block lost, sometimes sent twice).

Results: a Markdown table on stdout and in $SLUICE_CLUSTER_DIR/../cluster-drills-<time>.md.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOME = Path(os.environ.get("SLUICE_HOME", Path(__file__).resolve().parent.parent))
CLUSTER = Path(os.environ.get("SLUICE_CLUSTER_DIR", "/var/tmp/sluice-cluster"))
BIN = Path(os.environ.get("SLUICE_BIN", "/var/tmp/sluice-target/release"))
INFO = json.loads((CLUSTER / "cluster.json").read_text())
MINERS = int(os.environ.get("SLUICE_DRILL_MINERS", "200"))
RATE = float(os.environ.get("SLUICE_DRILL_RATE", "100"))
# nodesim's CPU-minable difficulty: every simulated hash is a share.
PASSWORD = "d=0.0000000002"


class DrillFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[drill {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check(ok: bool, what: str) -> None:
    if not ok:
        raise DrillFailed(what)


def until(secs: float, what: str, probe):
    """Polls `probe` every 0.2 s until it returns a true value; that value."""
    deadline = time.monotonic() + secs
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            raise DrillFailed(f"timed out after {secs:.0f} s waiting for {what}")
        time.sleep(0.2)


def hosts(role: str) -> list[dict]:
    return [h for h in INFO["hosts"] if role in h["roles"]]


def host(name: str) -> dict:
    return next(h for h in INFO["hosts"] if h["name"] == name)


def cluster(*args: str) -> None:
    subprocess.run(["bash", str(HOME / "install" / "cluster.sh"), *args], check=True)


def sluicectl(*args: str, stdin: str | None = None) -> str:
    r = subprocess.run([str(BIN / "sluicectl"), "-c", str(CLUSTER / "miners/config/sluicectl.toml"), *args],
                       input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise DrillFailed(f"sluicectl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def http(addr: str, path: str, timeout: float = 2.0) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError):
        return None


def metrics(h: dict, service: str) -> dict[str, float] | None:
    got = http(h["admin"][service], "/metrics")
    if not got or got[0] != 200:
        return None
    out = {}
    for line in got[1].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def by_host(role: str, name: str, missing: float = -1.0) -> dict[str, float]:
    """Metric `name` of the `role` service on each host that runs it (the
    role's name is the service's); `missing` where /metrics does not answer."""
    out = {}
    for h in hosts(role):
        m = metrics(h, role)
        out[h["name"]] = m.get(name, 0.0) if m is not None else missing
    return out


def health(h: dict, service: str) -> dict | None:
    got = http(h["admin"][service], "/health")
    if not got:
        return None
    try:
        return json.loads(got[1])
    except ValueError:
        return None


def leader_of_jobmakers() -> tuple[dict, int] | None:
    for h in hosts("jobmaker"):
        state = health(h, "jobmaker") or {}
        detail = json.dumps(state)
        m = re.search(r"leader, epoch (\d+)", detail)
        if m:
            return h, int(m.group(1))
    return None


class Miners:
    """The simulator on this host, mining through HAProxy as `user`."""

    def __init__(self, user: str, seconds: int):
        self.progress = CLUSTER / f"{user}.progress"
        self.proc = subprocess.Popen(
            [str(BIN / "simulator"), "--server", INFO["stratum"], "-n", str(MINERS), "--rate", str(RATE),
             "--duration", str(seconds), "--user", user, "--password", PASSWORD, "--json",
             "--record-accepted"],
            stdout=subprocess.PIPE, stderr=open(self.progress, "w"), text=True)
        until(60, f"{MINERS} miners connected", lambda: self.connected() == MINERS)

    def line(self) -> str:
        text = self.progress.read_text().replace("\r", "\n").strip().splitlines()
        return text[-1] if text else ""

    def connected(self) -> int:
        m = re.search(r"connected (\d+)/", self.line())
        return int(m.group(1)) if m else 0

    def accepted(self) -> int:
        m = re.search(r"accepted (\d+)", self.line())
        return int(m.group(1)) if m else 0

    def report(self) -> dict:
        out, _ = self.proc.communicate(timeout=600)
        check(self.proc.returncode == 0, f"the simulator failed: {self.line()}")
        return json.loads(out)


def mining_goes_on(miners: Miners, secs: float, what: str) -> float:
    """Seconds until the miners' accepted count has grown by half a second's
    worth of shares (at least 2): mining, not a last answer."""
    t0 = time.monotonic()
    first = miners.accepted()
    until(secs, what, lambda: miners.accepted() > first + max(2, RATE * 0.5))
    return time.monotonic() - t0


def in_flight() -> float:
    """Shares every sserver holds unacknowledged; -1 while one does not answer."""
    held = by_host("sserver", "sserver_shares_in_flight").values()
    return -1 if any(v < 0 for v in held) else sum(held)


def account(user: str, start: str, report: dict) -> dict:
    """Nothing lost, nothing twice; the figures."""
    t = report["totals"]
    unanswered = t["submitted"] - t["accepted"] - t["rejected"]
    until(120, "every sserver's shares acknowledged by the brokers", lambda: in_flight() == 0)
    told = CLUSTER / f"{user}.accepted"
    told.write_text("\n".join(report["accepted_hashes"]) + "\n")
    check(len(report["accepted_hashes"]) == t["accepted"], "the simulator listed every accepted share")
    counted = {}

    def all_there():
        counted.update(json.loads(sluicectl("count-shares", "--user", user, "--from", start,
                                            "--accepted", str(told))))
        return not counted["missing"]

    try:
        until(90, "every share the miners saw accepted on the Share topic", all_there)
    except DrillFailed:
        raise DrillFailed(f"shares lost: {len(counted.get('missing', []))} of the {t['accepted']} the miners saw "
                          f"accepted are not on the Share topic, e.g. {counted.get('missing', [])[:3]}")
    check(not counted["twice"], f"shares on the Share topic twice: {counted['twice'][:3]}")
    check(counted["accepted"] <= t["accepted"] + unanswered,
          f"{counted['accepted']} accepted records for {t['accepted']} accepted and {unanswered} unanswered submits")
    check(counted["distinct"] == counted["accepted"],
          f"a share recorded twice: {counted['accepted']} accepted records, {counted['distinct']} distinct headers")
    blocks = report["blocks_found"]
    missing = []

    def recorded():
        missing[:] = sluicectl("missing-blocks", stdin="\n".join(blocks)).split()
        return not missing

    try:
        until(120, "every block found recorded", recorded)
    except DrillFailed:
        raise DrillFailed(f"{len(missing)} of {len(blocks)} blocks found have no found_blocks row: {missing[:3]}")
    return {"accepted": t["accepted"], "records": counted["accepted"], "blocks": len(blocks),
            "reconnects": report["reconnects"], "rejected": t["rejected"]}


# --- the drills --------------------------------------------------------------

def drill_broker(user: str) -> dict:
    victim = hosts("kafka")[1]
    start = sluicectl("offsets", "share")
    miners = Miners(user, 90)
    mining_goes_on(miners, 30, "mining before the cut")
    cluster("cut", victim["name"])
    cut_at = time.monotonic()
    goes_on = mining_goes_on(miners, 30, "mining with a broker cut off")
    remaining = 60 - (time.monotonic() - cut_at)
    time.sleep(max(0.0, remaining))  # the scenario: the broker stays away 60 s
    # The cut was real for Kafka: the cluster took the broker out of every
    # in-sync set (after replica.lag.time.max.ms, 30 s).
    check(under_replicated(), f"no partition under-replicated with {victim['name']} cut off for 60 s")
    cluster("heal", victim["name"])
    healed = time.monotonic()
    caught_up = until(180, "no under-replicated partition", lambda: not under_replicated())
    caught_up_s = time.monotonic() - healed
    report = miners.report()
    figures = account(user, start, report)
    check(report["reconnects"] == 0, f"{report['reconnects']} miners reconnected")
    return {**figures, "recovery": f"mining on after {goes_on:.1f} s; broker in sync {caught_up_s:.1f} s after its return"}


def under_replicated() -> bool:
    """Whether a pool topic has a partition with a copy not in sync (sluicectl topics)."""
    try:
        return "under-replicated" in sluicectl("topics")
    except DrillFailed:
        return True


def zk_mode(h: dict) -> str:
    try:
        with socket.create_connection((h["address"], 2181), timeout=2) as s:
            s.sendall(b"srvr")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        m = re.search(r"Mode: (\w+)", data.decode())
        return m.group(1) if m else "?"
    except OSError:
        return "down"


def server_ids() -> dict[str, float]:
    return by_host("sserver", "sserver_server_id", missing=0)


def drill_zookeeper(user: str) -> dict:
    start = sluicectl("offsets", "share")
    miners = Miners(user, 60)
    ids = server_ids()
    check(all(ids.values()), f"an sserver without an id: {ids}")
    leader, epoch = until(10, "a jobmaker leader", leader_of_jobmakers)
    victim = next(h for h in hosts("zookeeper") if zk_mode(h) == "leader")
    cluster("cut", victim["name"])
    cut_at = time.monotonic()
    others = [h for h in hosts("zookeeper") if h is not victim]
    until(30, "the other two members to elect a leader",
          lambda: sorted(zk_mode(h) for h in others) == ["follower", "leader"])
    quorum_s = time.monotonic() - cut_at
    goes_on = mining_goes_on(miners, 30, "mining with a ZooKeeper member cut off")
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))  # the scenario: 30 s away
    check(server_ids() == ids, f"sserver ids changed: {ids} → {server_ids()}")
    now = leader_of_jobmakers()
    check(now is not None and now[0]["name"] == leader["name"] and now[1] == epoch,
          f"jobmaker leadership moved: {leader['name']} epoch {epoch} → {now}")
    cluster("heal", victim["name"])
    until(60, f"{victim['name']} back in the ensemble", lambda: zk_mode(victim) in ("leader", "follower"))
    report = miners.report()
    figures = account(user, start, report)
    check(report["reconnects"] == 0, f"{report['reconnects']} miners reconnected")
    return {**figures, "recovery": f"quorum {quorum_s:.1f} s, mining on after {goes_on:.1f} s; ids and leader kept"}


def fenced() -> float:
    return sum(by_host("sserver", "sserver_jobs_fenced_total", missing=0).values())


def drill_jobmaker(user: str) -> dict:
    start = sluicectl("offsets", "share")
    miners = Miners(user, 75)
    leader, epoch = until(10, "a jobmaker leader", leader_of_jobmakers)
    fenced_before = fenced()
    cluster("cut", leader["name"])
    cut_at = time.monotonic()
    new = until(30, "another jobmaker to lead",
                lambda: (l := leader_of_jobmakers()) and l[0]["name"] != leader["name"] and l)
    took_over = time.monotonic() - cut_at
    check(new[1] > epoch, f"the new leader's epoch {new[1]} is not above {epoch}")
    check(took_over <= 10, f"the standby led {took_over:.1f} s after the cut (more than 10 s)")
    goes_on = mining_goes_on(miners, 30, "mining under the new leader")
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    cluster("heal", leader["name"])
    # Back, the deposed one learns it lost its session and stands by.
    until(60, f"the jobmaker on {leader['name']} standing by",
          lambda: "standby" in json.dumps(health(leader, "jobmaker") or {}))
    still = leader_of_jobmakers()
    check(still is not None and still[0]["name"] == new[0]["name"], f"leadership moved back: {still}")
    report = miners.report()
    figures = account(user, start, report)
    return {**figures, "recovery": f"new leader (epoch {epoch} → {new[1]}) after {took_over:.1f} s, "
                                   f"mining on after {goes_on:.1f} s; {fenced() - fenced_before:.0f} deposed jobs fenced"}


def drill_jobmaker_frozen(user: str) -> dict:
    """The leader frozen (SIGSTOP, as a long GC pause or a hung VM) past its
    session, then thawed: it wakes believing it leads. Jobs it sends before
    it learns otherwise carry its old epoch, and every sserver drops them."""
    start = sluicectl("offsets", "share")
    miners = Miners(user, 75)
    leader, epoch = until(10, "a jobmaker leader", leader_of_jobmakers)
    fenced_before = fenced()
    cluster("ctl", leader["name"], "signal", "STOP", "jobmaker")
    frozen_at = time.monotonic()
    new = until(30, "another jobmaker to lead",
                lambda: (l := leader_of_jobmakers()) and l[0]["name"] != leader["name"] and l)
    took_over = time.monotonic() - frozen_at
    check(new[1] > epoch and took_over <= 10, f"new leader {new} {took_over:.1f} s after the freeze")
    time.sleep(max(0.0, 20 - (time.monotonic() - frozen_at)))  # frozen 20 s
    cluster("ctl", leader["name"], "signal", "CONT", "jobmaker")
    until(60, f"the thawed jobmaker on {leader['name']} standing by",
          lambda: "standby" in json.dumps(health(leader, "jobmaker") or {}))
    goes_on = mining_goes_on(miners, 30, "mining after the thaw")
    still = leader_of_jobmakers()
    check(still is not None and still[0]["name"] == new[0]["name"], f"leadership moved back: {still}")
    report = miners.report()
    figures = account(user, start, report)
    return {**figures, "recovery": f"new leader (epoch {epoch} → {new[1]}) {took_over:.1f} s into the freeze; "
                                   f"thawed, the old one stood by; {fenced() - fenced_before:.0f} of its jobs "
                                   f"dropped by the sservers; mining on ({goes_on:.1f} s)"}


def connections() -> dict[str, float]:
    return by_host("sserver", "sserver_connections")


def drill_sserver(user: str) -> dict:
    start = sluicectl("offsets", "share")
    miners = Miners(user, 55)
    conns = connections()
    victim = host(max(conns, key=conns.get))
    log(f"connections per sserver {conns}; cutting {victim['name']}")
    cluster("cut", victim["name"])
    cut_at = time.monotonic()
    others = [h for h in hosts("sserver") if h is not victim]

    def all_on_others():
        c = connections()
        return sum(c[h["name"]] for h in others) == MINERS

    until(30, "every miner connected to the other sservers", all_on_others)
    moved = time.monotonic() - cut_at
    goes_on = mining_goes_on(miners, 30 - moved, "mining on the other sservers")
    mining_at = time.monotonic() - cut_at
    check(mining_at <= 30, f"mining again after {mining_at:.1f} s")
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    cluster("heal", victim["name"])
    report = miners.report()
    figures = account(user, start, report)
    check(report["reconnects"] >= conns[victim["name"]],
          f"{report['reconnects']} reconnects for {conns[victim['name']]} miners moved")
    statshttpd_credits(user, figures["records"])
    return {**figures, "recovery": f"{conns[victim['name']]:.0f} miners on the others after {moved:.1f} s, "
                                   f"mining after {mining_at:.1f} s; statshttpd credits each share once"}


def statshttpd_credits(user: str, records: int) -> None:
    """statshttpd counts each accepted share of `user` once: its count
    reaches the Share topic's and stays there."""
    seen = {}

    def count():
        got = http(INFO["api"], f"/api/v1/users/{user}")
        if not got or got[0] != 200:
            return None
        seen["count"] = json.loads(got[1]).get("accept_count")
        return seen["count"] == records

    try:
        until(60, "statshttpd to count every accepted share", count)
    except DrillFailed:
        raise DrillFailed(f"statshttpd counts {seen.get('count')} accepted shares, the Share topic has {records}")


def drill_partition(user: str) -> dict:
    start = sluicectl("offsets", "share")
    # The shares held in the partition reach the brokers about 25 s after
    # it: the miners mine on past that, so that every submit is answered.
    miners = Miners(user, 75)
    mining_goes_on(miners, 30, "mining before the partition")
    stratum = " ".join(h["name"] for h in hosts("sserver"))
    kafka = " ".join(h["name"] for h in hosts("kafka"))
    cluster("partition", stratum, kafka)
    cut_at = time.monotonic()
    goes_on = mining_goes_on(miners, 30, "mining during the partition")
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    held = in_flight()
    cluster("unpartition")
    healed = time.monotonic()
    until(120, "every held share delivered", lambda: in_flight() == 0)
    delivered = time.monotonic() - healed
    report = miners.report()
    figures = account(user, start, report)
    check(report["reconnects"] == 0, f"{report['reconnects']} miners reconnected")
    return {**figures, "recovery": f"mining on during it ({goes_on:.1f} s); {held:.0f} shares held, "
                                   f"delivered {delivered:.1f} s after"}


def solved_taken() -> dict[str, float]:
    """Solved shares each blkmaker has taken (one consumer group: one takes them)."""
    return by_host("blkmaker", "blkmaker_solved_shares_total")


def taking(before: dict[str, float], exclude: str | None = None) -> str | None:
    now = solved_taken()
    return next((n for n, v in now.items() if n != exclude and v > before.get(n, 0) >= 0), None)


def drill_blkmaker(user: str) -> dict:
    start = sluicectl("offsets", "share")
    miners = Miners(user, 75)
    before = solved_taken()
    taker = until(30, "a blkmaker taking solved shares", lambda: taking(before))
    cluster("cut", taker)
    cut_at = time.monotonic()
    before = solved_taken()
    other = until(60, "the other blkmaker to take the solved shares", lambda: taking(before, exclude=taker))
    took_over = time.monotonic() - cut_at
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    cluster("heal", taker)
    report = miners.report()
    figures = account(user, start, report)
    return {**figures, "recovery": f"{other} took the solved shares {took_over:.1f} s after {taker} was cut"}


def node_submits() -> dict[str, float]:
    """nodesim's submitblock answers so far, by answer."""
    node = hosts("nodesim")
    m = metrics(node[0], "nodesim") if node else None
    if m is None:
        return {}
    out = {}
    for key, v in m.items():
        found = re.fullmatch(r'nodesim_submitblock_total\{answer="([^"]+)"\}', key)
        if found:
            out[found.group(1)] = v
    return out


def submits_since(before: dict[str, float], blocks: int) -> int:
    """Every block found reached the node once as a block (a new tip, or a
    side branch when two miners found one at the same height); the
    submissions the node had already seen (a block taken again after a
    blkmaker's host was lost) are returned."""
    seen = {}

    def settled():
        now = node_submits()
        seen.update({k: now.get(k, 0) - before.get(k, 0) for k in set(now) | set(before)})
        return seen.get("accepted", 0) + seen.get("inconclusive", 0) >= blocks

    if hosts("nodesim"):
        try:
            until(60, "every block found submitted to the node", settled)
        except DrillFailed:
            raise DrillFailed(f"{blocks} blocks found, the node took {seen}")
        check(seen.get("accepted", 0) + seen.get("inconclusive", 0) == blocks,
              f"{blocks} blocks found, the node took {seen}")
        check(not seen.get("rejected", 0) and not seen.get("duplicate-invalid", 0),
              f"the node refused blocks: {seen}")
    return int(seen.get("duplicate", 0))


DRILLS = {"broker": drill_broker, "zookeeper": drill_zookeeper, "jobmaker": drill_jobmaker,
          "jobmaker-frozen": drill_jobmaker_frozen,
          "sserver": drill_sserver, "partition": drill_partition, "blkmaker": drill_blkmaker}


def main() -> int:
    names = sys.argv[1:] or list(DRILLS)
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        print(f"unknown drills {unknown}; known: {' '.join(DRILLS)}", file=sys.stderr)
        return 64
    rows, failed = [], 0
    for name in names:
        user = f"drill{int(time.time())}{name}"
        log(f"{name}: {MINERS} miners at {RATE:.0f} shares/s as {user}")
        t0 = time.monotonic()
        node_before = node_submits()
        try:
            r = DRILLS[name](user)
            again = submits_since(node_before, r["blocks"])
            rows.append(f"| {name} | {r['recovery']} | {r['accepted']:,} / {r['records']:,} | "
                        f"{r['blocks']} / 0 | {again} | 0 | {r['reconnects']} | pass |")
        except DrillFailed as e:
            failed += 1
            rows.append(f"| {name} | | | | | | | **FAIL**: {e} |")
        finally:
            cluster("unpartition")
            cluster("heal", "all")
            for h in hosts("jobmaker"):
                subprocess.run(["bash", str(HOME / "install" / "cluster.sh"), "ctl", h["name"], "signal", "CONT",
                                "jobmaker"], capture_output=True)
        log(f"{name}: {rows[-1]} ({time.monotonic() - t0:.0f} s)")
    table = "\n".join([
        f"install/cluster.sh drills {' '.join(names)} ({MINERS} miners, {RATE:.0f} shares/s; "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)", "",
        "| drill | recovery | shares accepted (miners / Share topic) | blocks found / unrecorded | blocks submitted again | duplicate shares | reconnects | result |",
        "|---|---|---|---|---|---|---|---|", *rows])
    print(table)
    (CLUSTER.parent / f"cluster-drills-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
