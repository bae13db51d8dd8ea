#!/usr/bin/env bash
# Where the gateway's CPU per chat goes, by layer (docs/benchmark.md, "Where the CPU goes").
#
#   scripts/profile-gateway.sh [complete|stream] [CONCURRENCY]
#
# Runs the benchmark at one concurrency and mode, records the `lingma-gw serve` process it starts
# with `perf record --call-graph dwarf` for the length of the run, and splits the samples into the
# gateway's layers with scripts/perf-layers.py, scaled to the run's measured CPU per chat. Needs
# perf (Debian: linux-perf) and a release build (`cargo build --release --workspace`). With
# PROFILE_KEEP=DIR the recording and its `perf script` text stay in DIR for a closer look.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-complete}
conc=${2:-64}
if [ -n "${PROFILE_KEEP:-}" ]; then
    out=$PROFILE_KEEP
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
[ -x target/release/bench ] && [ -x target/release/lingma-gw ] ||
    { echo "build first: cargo build --release --workspace" >&2; exit 1; }

target/release/bench --concurrency "$conc" --modes "$mode" --rounds 3 --requests-per-worker 300 \
    --pace 0 --streams 0 --agent-steps 0 --out "$out/results.json" >"$out/bench.log" 2>&1 &
bench=$!
# The gateway announces itself on the bench's first lines; follow that pid only.
pid=
for _ in $(seq 1 300); do
    pid=$(sed -n 's/.*gateway pid \([0-9]*\) .*/\1/p' "$out/bench.log" | head -1)
    [ -n "$pid" ] && break
    kill -0 "$bench" 2>/dev/null || { cat "$out/bench.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$pid" ] || { echo "the benchmark did not name its gateway" >&2; exit 1; }
perf record -q -F 2000 --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" 2>/dev/null &
perf=$!
wait "$bench" || { cat "$out/bench.log" >&2; exit 1; }
kill -INT "$perf" 2>/dev/null || true
wait "$perf" || true

grep -A3 '^CPU per request' "$out/bench.log"
# The gateway's own column (client + gw + sim) of the one row.
us=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["latency"][0]; print(r["gateway_cpu"]["gateway_us"])' \
    "$out/results.json" 2>/dev/null || true)
perf script -i "$out/perf.data" 2>/dev/null >"$out/perf.txt"
python3 scripts/perf-layers.py ${us:+--us-per-chat "$us"} <"$out/perf.txt"
