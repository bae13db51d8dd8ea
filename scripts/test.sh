#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: first what the tests need (scripts/setup-test-deps.sh:
# Debian and Python packages), then every Rust target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-test-deps.sh

if cargo nextest --version >/dev/null 2>&1; then
    echo "==> cargo nextest run --workspace --all-targets"
    cargo nextest run --workspace --all-targets
else
    echo "==> cargo test --workspace --all-targets (cargo-nextest not installed)"
    cargo test --workspace --all-targets
fi
