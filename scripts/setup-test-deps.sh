#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo: Debian packages (promtool from `prometheus`,
# `chromium` for the headless-login tests) and the Python packages in tests/requirements.txt.
# Idempotent and quick when everything is already there. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(prometheus chromium)

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
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> python3 -m pip install -r tests/requirements.txt"
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
    python3 -m pip install -q -r tests/requirements.txt
