#!/usr/bin/env python3
"""The Grafana dashboard against the running pool (install/test.sh runs it
after README command 1, with the local pool still up).

1. promtool accepts deploy/prometheus/prometheus.yml;
2. every metric a dashboard query names is exported by some service (read
   from each scrape target's /metrics);
3. a real Prometheus scraping those targets every second answers every
   query of the dashboard with data.

Exits 1 with what failed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(HOME, "deploy/grafana/sluice.json")
SCRAPE = os.path.join(HOME, "deploy/prometheus/prometheus.yml")
PORT = 19090
# Series Prometheus makes itself, not a service.
PROMETHEUS_OWN = {"up"}
# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "and", "or", "unless", "offset"}


def log(message):
    print(f"[check-dashboard] {message}", file=sys.stderr, flush=True)


def queries(dashboard):
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"[^"]*"', '""', expr)                        # strings
    text = re.sub(r"\{[^}]*\}", " ", text)                         # matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                        # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or word in KEYWORDS:
            continue                                               # a function
        names.add(word)
    return names


def targets(config_text):
    return re.findall(r"\b(\d+\.\d+\.\d+\.\d+:\d+)\b", config_text)


def exported(target):
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0]
            for line in text.splitlines() if line and not line.startswith("#")}


def query(expr):
    url = f"http://127.0.0.1:{PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def main():
    failures = []
    check = subprocess.run(["promtool", "check", "config", SCRAPE],
                           capture_output=True, text=True)
    if check.returncode != 0:
        failures.append(f"promtool rejects {SCRAPE}: {check.stdout}{check.stderr}")

    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    with open(SCRAPE) as f:
        config_text = f.read()
    found = set()
    for target in targets(config_text):
        try:
            found |= exported(target)
        except OSError as error:
            failures.append(f"scrape target {target} does not answer: {error}")
    all_queries = queries(dashboard)
    for title, expr in all_queries:
        missing = metric_names(expr) - found - PROMETHEUS_OWN
        if missing:
            failures.append(f"panel '{title}': {sorted(missing)} exported by no service ({expr})")
    log(f"{len(all_queries)} queries in {len(dashboard['panels'])} panels; "
        f"{len(found)} series names exported by {len(targets(config_text))} targets")

    # A real Prometheus on the same targets, every second.
    state = tempfile.mkdtemp(prefix="sluice-prometheus-")
    config = os.path.join(state, "prometheus.yml")
    with open(config, "w") as f:
        f.write(config_text.replace("scrape_interval: 15s", "scrape_interval: 1s"))
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={state}/data",
         f"--web.listen-address=127.0.0.1:{PORT}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(state, "log"), "w"))
    try:
        pending = dict(enumerate(all_queries))
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            time.sleep(1)
            for i, (title, expr) in list(pending.items()):
                try:
                    if query(expr):
                        del pending[i]
                except OSError:
                    break                                          # not up yet
                except RuntimeError as error:
                    failures.append(f"panel '{title}': Prometheus refuses the query: {error}")
                    del pending[i]
        for title, expr in pending.values():
            failures.append(f"panel '{title}': no data from Prometheus within 90 s ({expr})")
        log(f"Prometheus answered {len(all_queries) - len(pending)} of {len(all_queries)} queries")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if failures:
            with open(os.path.join(state, "log")) as f:
                log("Prometheus's log (last lines):\n" + "".join(f.readlines()[-15:]))
        shutil.rmtree(state, ignore_errors=True)

    for failure in failures:
        log(f"FAIL {failure}")
    if failures:
        sys.exit(1)
    log("every dashboard query names exported metrics and Prometheus answers each")


if __name__ == "__main__":
    main()
