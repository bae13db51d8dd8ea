# syntax=docker/dockerfile:1
# lingma-gw in a container: `docker build -t lingma-gw .`, then (docs/deploy.md, "Container"):
#
#   docker run -d --name lingma-gw -p 8000:8000 --stop-timeout 30 \
#     -e API_KEYS=sk-... \
#     -v /path/to/Lingma:/opt/lingma/Lingma:ro \
#     -v lingma-work:/var/lib/lingma-gw \
#     -e LINGMA_SESSION_BUNDLE="$(lingma-gw session export --base64)" \
#     lingma-gw
#
# or deploy/docker/compose.yaml. Without Lingma: `docker run -e API_KEYS=k -e LINGMA_SIM=1 ...`.
#
# * It listens on 0.0.0.0:8000, so API_KEYS (or API_KEYS_FILE, a Docker secret) is required:
#   without keys lingma-gw refuses to start (exit 2) rather than expose the Lingma accounts.
# * Volumes: the Lingma binary (LINGMA_BIN, /opt/lingma/Lingma: it ships inside the IDE plugins,
#   not with this image) and the work dirs (LINGMA_WORK_DIR under /var/lib/lingma-gw: the logins
#   and Lingma's caches; keep it across upgrades).
# * LINGMA_SESSION_BUNDLE: a bundle file or the base64 bundle itself (`lingma-gw session export
#   --base64`, optionally --encrypt with LINGMA_BUNDLE_PASSPHRASE); it logs in every work dir that
#   is not logged in yet, so a fresh volume starts logged in.
# * Stop: SIGTERM, lingma-gw lets running answers finish for GATEWAY_SHUTDOWN_GRACE_SEC (10 s),
#   then stops Lingma (up to 5 s more). Docker's default stop timeout is 10 s: give it 30
#   (`docker run --stop-timeout 30`, compose `stop_grace_period: 30s`), or answers are cut.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
WORKDIR /src
# The workspace (the product and its benchmark) and the lock file; nothing else is needed.
COPY Cargo.toml Cargo.lock ./
COPY bench/ bench/
COPY src/ src/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lingma-gw \
 && install -D -m 0755 target/release/lingma-gw /out/lingma-gw

FROM debian:${DEBIAN}-slim AS runtime
# tini is PID 1: it hands SIGTERM to lingma-gw and reaps whatever Lingma leaves behind.
# ca-certificates: Lingma talks HTTPS to its service.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 lingma \
 && useradd --system --uid 10001 --gid lingma --home-dir /var/lib/lingma-gw \
        --shell /usr/sbin/nologin lingma \
 && install -d -o lingma -g lingma -m 0700 /var/lib/lingma-gw \
 && install -d -m 0755 /opt/lingma
COPY --from=build /out/lingma-gw /usr/local/bin/lingma-gw
COPY deploy/docker/entrypoint.sh /usr/local/bin/docker-entrypoint

ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_SHUTDOWN_GRACE_SEC=10 \
    LINGMA_BIN=/opt/lingma/Lingma \
    LINGMA_WORK_DIR=/var/lib/lingma-gw/instances \
    HOME=/var/lib/lingma-gw
VOLUME ["/var/lib/lingma-gw", "/opt/lingma"]
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# GET /readyz: healthy while a Lingma instance is ready (logged in and answering).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["docker-entrypoint", "healthcheck"]
ENTRYPOINT ["tini", "--", "docker-entrypoint"]
CMD ["serve"]
