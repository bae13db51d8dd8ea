#!/usr/bin/env bash
# The flake check: the whole test suite, several times in a row, while busy loops keep every core
# loaded, as CI's machine may be. A test that passes only on an idle machine fails here.
#
#   scripts/flake-check.sh            # 3 runs, one busy loop per core
#   RUNS=5 BUSY=4 scripts/flake-check.sh
#
# Builds once first (unloaded), then loads the machine only while the tests run. Exits non-zero at
# the first failing run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
BUSY=${BUSY:-$(nproc)}

echo "==> building the tests"
cargo nextest run --workspace --all-targets --no-run

busy=()
stop_busy() {
    for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_busy EXIT
for _ in $(seq "$BUSY"); do
    ( while :; do :; done ) &
    busy+=("$!")
done
echo "==> $BUSY busy loops running"

for run in $(seq "$RUNS"); do
    echo "==> run $run of $RUNS"
    started=$(date +%s)
    if ! cargo nextest run --workspace --all-targets --no-fail-fast; then
        echo "flake check FAILED on run $run of $RUNS" >&2
        exit 1
    fi
    echo "==> run $run passed in $(( $(date +%s) - started )) s"
done
echo "flake check passed: $RUNS of $RUNS runs under load"
