#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: Python test dependencies, then every Rust target.
# System packages the tests need (promtool from Debian's `prometheus`) are installed by .ci/run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> python3 -m pip install -r tests/requirements.txt"
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install -q -r tests/requirements.txt

if cargo nextest --version >/dev/null 2>&1; then
    echo "==> cargo nextest run --workspace --all-targets"
    cargo nextest run --workspace --all-targets
else
    echo "==> cargo test --workspace --all-targets (cargo-nextest not installed)"
    cargo test --workspace --all-targets
fi
