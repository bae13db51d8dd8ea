#!/usr/bin/env bash
# The lingma-gw image's entrypoint (Dockerfile; tested in tests/deploy_docker.rs by running it with
# the built binary, no container needed):
#
#   docker-entrypoint [serve] [FLAGS...]   lingma-gw serve (the default command; bare flags go to serve)
#   docker-entrypoint healthcheck          exit 0 when GET /readyz answers 200 (the HEALTHCHECK)
#   docker-entrypoint COMMAND [ARGS...]    any other lingma-gw command: session import, login, probe
#
# Before `serve` it turns VAR_FILE into VAR for the secrets (Docker and Compose secrets are files
# under /run/secrets) and checks that the work dir is writable, which a bind-mounted host directory
# owned by someone else is not. Then it execs lingma-gw, which is therefore the process that gets
# the stop signal (from tini, PID 1): SIGTERM lets running answers finish for
# GATEWAY_SHUTDOWN_GRACE_SEC, then stops the Lingma processes, then exits 0.
set -euo pipefail

# Where the gateway answers, for the health check: the bound address, or loopback for a wildcard.
probe_host() {
    local host="${GATEWAY_HOST:-127.0.0.1}"
    case "$host" in
        0.0.0.0 | "::" | "[::]") echo 127.0.0.1 ;;
        *) echo "$host" ;;
    esac
}

# GET /readyz over bash's /dev/tcp: the image needs no HTTP client for its health check.
healthcheck() {
    local host port status
    host="$(probe_host)"
    port="${GATEWAY_PORT:-8000}"
    if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
        echo "healthcheck: nothing listens on ${host}:${port}" >&2
        return 1
    fi
    # One write: a server that answers as soon as it has the request line sees all of it.
    local request=$'GET /readyz HTTP/1.0\r\nHost: '"${host}"$'\r\n\r\n'
    printf '%s' "$request" >&3
    if ! IFS= read -r -t 5 status <&3; then
        echo "healthcheck: no answer from ${host}:${port}" >&2
        return 1
    fi
    exec 3<&-
    status="${status%$'\r'}"
    case "$status" in
        "HTTP/1."?" 200"*) return 0 ;;
        *) echo "healthcheck: not ready: ${status}" >&2; return 1 ;;
    esac
}

# VAR_FILE -> VAR, for the values that are secrets. LINGMA_SESSION_BUNDLE is a file name already.
load_secret_files() {
    local var file_var
    for var in API_KEYS ADMIN_TOKEN METRICS_TOKEN LINGMA_BUNDLE_PASSPHRASE AUTO_LOGIN_PASSWORD; do
        file_var="${var}_FILE"
        [ -n "${!file_var:-}" ] || continue
        if [ -n "${!var:-}" ]; then
            echo "error: both ${var} and ${file_var} are set; set one" >&2
            exit 2
        fi
        if [ ! -r "${!file_var}" ]; then
            echo "error: ${file_var}=${!file_var} cannot be read" >&2
            exit 2
        fi
        # $(<file) drops the trailing newline that `echo secret > file` leaves.
        export "${var}=$(<"${!file_var}")"
        unset "${file_var}"
    done
}

check_work_dir() {
    local work="${LINGMA_WORK_DIR:-}"
    [ -n "$work" ] || return 0
    if ! mkdir -p "$work" 2>/dev/null || [ ! -w "$work" ]; then
        echo "error: the work dir ${work} is not writable by uid $(id -u): use a named volume" \
             "(-v lingma-work:/var/lib/lingma-gw), or chown the host directory to $(id -u):$(id -g)" >&2
        exit 2
    fi
}

if [ $# -eq 0 ]; then
    set -- serve
fi
case "$1" in
    healthcheck)
        healthcheck
        exit
        ;;
    -*)
        set -- serve "$@"
        ;;
esac
load_secret_files
if [ "$1" = serve ]; then
    check_work_dir
fi
exec lingma-gw "$@"
