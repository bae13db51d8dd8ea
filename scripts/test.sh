#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: first what the tests need (scripts/setup-test-deps.sh:
# Debian and Python packages), then every Rust target, then the gateway-facing test binaries a
# second time against simulators that speak the ACP dialect (LINGMA_TEST_SIM_DIALECT=acp; the first
# pass uses the legacy one), so the gateway is proven in both dialects by the same tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-test-deps.sh

# The test binaries whose simulators follow LINGMA_TEST_SIM_DIALECT (tests/common: fast_sim_env).
GATEWAY_TESTS=(gateway tools reliability hostile openai_sdk anthropic responses agents cli pool metrics_promtool deploy_nginx)

if cargo nextest --version >/dev/null 2>&1; then
    echo "==> cargo nextest run --workspace --all-targets"
    cargo nextest run --workspace --all-targets
    args=()
    for t in "${GATEWAY_TESTS[@]}"; do args+=(--test "$t"); done
    echo "==> LINGMA_TEST_SIM_DIALECT=acp cargo nextest run ${args[*]}"
    LINGMA_TEST_SIM_DIALECT=acp cargo nextest run "${args[@]}"
else
    echo "==> cargo test --workspace --all-targets (cargo-nextest not installed)"
    cargo test --workspace --all-targets
    args=()
    for t in "${GATEWAY_TESTS[@]}"; do args+=(--test "$t"); done
    echo "==> LINGMA_TEST_SIM_DIALECT=acp cargo test ${args[*]}"
    LINGMA_TEST_SIM_DIALECT=acp cargo test "${args[@]}"
fi
