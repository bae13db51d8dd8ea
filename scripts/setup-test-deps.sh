#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo: Debian packages (promtool from `prometheus`,
# `chromium` for the headless-login tests, `nginx-light` for the scale-out test of
# deploy/nginx/, `systemd` for `systemd-analyze verify` of deploy/systemd/, `tini` to run the
# container image's entrypoint as the image does, `man-db` and `groff-base` for `man -l` on the
# generated pages, `bash`, `zsh` and `fish` that the completion scripts are loaded into, `tmux`
# for the tests that need a terminal), the Python packages in tests/requirements.txt
# (pyyaml and kubernetes-validate check deploy/k8s/), and the coding-agent CLIs (Claude Code,
# Codex, Qwen Code) from npm into .agent-clients/.
# Idempotent and quick when everything is already there. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(prometheus chromium nginx-light systemd tini man-db groff-base bash zsh fish tmux)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: the tests need the Debian packages: ${missing[*]} (run as root, or install them)" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The tests run their own nginx in a temporary directory: keep the package from starting the
    # system's nginx on port 80 (a policy-rc.d that refuses, only for this install, unless the
    # machine has its own, as container images do).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 0755 "$policy"
        trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> python3 -m pip install -r tests/requirements.txt"
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
    python3 -m pip install -q -r tests/requirements.txt

# The coding-agent CLIs that tests/agents.rs runs for real, pinned (their request shapes and event
# expectations are what the tests were written against), into .agent-clients/ beside the repo.
AGENT_CLIENTS=(@anthropic-ai/claude-code@2.1.332 @openai/codex@0.171.0 @qwen-code/qwen-code@0.24.4)
stamp=.agent-clients/installed.txt
if [ "$(cat "$stamp" 2>/dev/null)" != "${AGENT_CLIENTS[*]}" ]; then
    echo "==> npm install ${AGENT_CLIENTS[*]} (into .agent-clients/)"
    mkdir -p .agent-clients
    npm install --prefix .agent-clients --no-audit --no-fund --loglevel=error "${AGENT_CLIENTS[@]}" >/dev/null
    # Claude Code links its native binary in a postinstall step; run it if npm skipped it.
    if ! .agent-clients/node_modules/.bin/claude --version >/dev/null 2>&1 && [ -f .agent-clients/node_modules/@anthropic-ai/claude-code/install.cjs ]; then
        node .agent-clients/node_modules/@anthropic-ai/claude-code/install.cjs >/dev/null
    fi
    for cli in claude codex qwen; do
        ".agent-clients/node_modules/.bin/$cli" --version >/dev/null 2>&1 \
            || { echo "error: $cli does not run after npm install (see .agent-clients/)" >&2; exit 1; }
    done
    echo "${AGENT_CLIENTS[*]}" > "$stamp"
fi
