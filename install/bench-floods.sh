#!/usr/bin/env bash
# The honest miners' submit p99 beside each flood of services/sserver/tests/floods.rs,
# over several runs of the suite: per flood the median quiet and flooded p99, the
# median and worst ratio, and how many runs went past twice the quiet one (with
# the tests' 5 ms floor). One run is noise on two shared cores; this is the figure.
#
#   bash install/bench-floods.sh [RUNS]     # default 5; needs install/stack.sh up
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cargo test -q -p sserver --test floods --no-run
for i in $(seq 1 "$runs"); do
    echo "run $i of $runs" >&2
    cargo test -q -p sserver --test floods -- --nocapture --test-threads=1 >"$out/run-$i.log" 2>&1 ||
        { tail -30 "$out/run-$i.log" >&2; echo "run $i failed" >&2; exit 1; }
done

python3 - "$out" <<'EOF'
import glob, re, statistics, sys

line = re.compile(r"(?P<flood>[^:\n]+): honest submit p99 (?P<quiet>[\d.]+) ms quiet, (?P<loud>[\d.]+) ms under the flood")
floods = {}
for path in sorted(glob.glob(sys.argv[1] + "/run-*.log")):
    for m in line.finditer(open(path).read()):
        name = m["flood"].split("... ")[-1].strip().lstrip(".")
        floods.setdefault(name, []).append((float(m["quiet"]), float(m["loud"])))

print(f"| flood | runs | honest p99 quiet (median) | under the flood (median) | ratio median | worst | over 2x |")
print("|---|---|---|---|---|---|---|")
for name, pairs in sorted(floods.items()):
    ratios = [loud / max(quiet, 5.0) for quiet, loud in pairs]
    quiet = statistics.median(q for q, _ in pairs)
    loud = statistics.median(l for _, l in pairs)
    over = sum(r > 2.0 for r in ratios)
    print(f"| {name} | {len(pairs)} | {quiet:.2f} ms | {loud:.2f} ms | "
          f"{statistics.median(ratios):.2f} | {max(ratios):.2f} | {over} |")
EOF
