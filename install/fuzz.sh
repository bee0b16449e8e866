#!/usr/bin/env bash
# Fuzzes what enters the pool from outside, with cargo-fuzz (libFuzzer):
#   stratum_session  a miner's bytes: framing, JSON-RPC, the session, a submit
#   proxy_header     a load balancer's PROXY v1/v2 header
#   bus_records      a Kafka record of each topic, decoded and checked
#   http_params      statshttpd's query strings
#   sv2_frames       Stratum V2: frames through the codec, the Noise handshake, sealed frames
#
#   install/fuzz.sh [RUNS] [TARGET...]   RUNS executions per target (default
#                                        10,000,000), all targets by default
#   install/fuzz.sh --smoke              each target for 5 s (command 2 runs this)
#
# The committed seeds (fuzz/corpus/TARGET) are read, never written: what a run
# learns goes to $SLUICE_STATE/fuzz/corpus/TARGET, crashes to
# $SLUICE_STATE/fuzz/artifacts/TARGET/. A crash fails the script; it prints
# the command that replays the input. Each target's last line of figures is
# appended to $SLUICE_STATE/fuzz/figures.tsv.
#
# cargo-fuzz needs nightly's -Z flags; the pinned stable compiler accepts them
# with RUSTC_BOOTSTRAP=1, so no second toolchain is installed (docs/DECISIONS.md).
# No sanitizer: the code under test is safe Rust, where a bug is a panic or
# an overflow, which debug assertions (-a) turn into crashes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SLUICE_HOME"

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(stratum_session proxy_header bus_records http_params sv2_frames)

runs=10000000
seconds=0
if [ "${1:-}" = --smoke ]; then
    runs=0
    seconds=5
    shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    runs=$1
    shift
fi
[ $# -gt 0 ] && TARGETS=("$@")

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
    CARGO_TARGET_DIR=$CARGO_TARGET_DIR/cargo-install cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
fuzz_args=(--sanitizer none --debug-assertions --target-dir "$CARGO_TARGET_DIR/fuzz")
log "building the fuzz targets"
cargo fuzz build "${fuzz_args[@]}" 2>&1 | grep -v '^\s*Compiling ' || true
for t in "${TARGETS[@]}"; do
    [ -x "$CARGO_TARGET_DIR/fuzz/x86_64-unknown-linux-gnu/release/$t" ] || die "fuzz target $t did not build"
done

out=$SLUICE_STATE/fuzz
mkdir -p "$out"
[ -f "$out/figures.tsv" ] || printf 'date\ttarget\truns\tseconds\texecs_per_sec\tcorpus_files\tcrashes\n' > "$out/figures.tsv"
failed=0
for t in "${TARGETS[@]}"; do
    corpus=$out/corpus/$t
    artifacts=$out/artifacts/$t/
    mkdir -p "$corpus" "$artifacts"
    log "fuzzing $t ($([ "$runs" -gt 0 ] && echo "$runs runs" || echo "$seconds s"))"
    lf_args=(-artifact_prefix="$artifacts" -max_len=16384 -rss_limit_mb=4096 -print_final_stats=1)
    if [ "$runs" -gt 0 ]; then lf_args+=(-runs="$runs"); else lf_args+=(-max_total_time="$seconds"); fi
    start=$(date +%s%N)
    status=0
    cargo fuzz run "${fuzz_args[@]}" "$t" "$corpus" "fuzz/corpus/$t" -- "${lf_args[@]}" \
        > "$out/$t.log" 2>&1 || status=$?
    elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo 0)
    files=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$artifacts" -type f | wc -l)
    rate=$(awk -v n="$done_runs" -v s="$elapsed" 'BEGIN { printf "%.0f", n / (s > 0 ? s : 1) }')
    printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\n' "$(date -u +%F)" "$t" "$done_runs" "$elapsed" "$rate" "$files" "$crashes" \
        | tee -a "$out/figures.tsv"
    if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed=1
        grep -E 'panicked|ERROR|SUMMARY' "$out/$t.log" | head -5 >&2 || true
        for a in "$artifacts"*; do
            [ -f "$a" ] && log "replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${fuzz_args[*]} $t $a"
        done
    fi
done
[ "$failed" -eq 0 ] || die "a fuzz target crashed (logs in $out)"
log "every fuzz target ran without a crash (figures in $out/figures.tsv)"
