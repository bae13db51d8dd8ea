#!/usr/bin/env python3
"""Splits a perf profile of the gateway process into its layers.

Reads `perf script` output (a `perf record -g --call-graph dwarf` of the `lingma-gw serve` pid,
see scripts/profile-gateway.sh) on stdin and prints, per layer, its share of the samples and, when
`--us-per-chat` gives the process's CPU per chat (the benchmark's "gw" column), the microseconds
per chat that share stands for.

A sample belongs to the innermost frame that names a layer: malloc, serde_json or a kernel send
called from the Lingma client count as the client's; the same called from the OpenAI front door
count as the front door's. What names no layer at all (the scheduler parking, epoll) is `runtime`.
"""

import argparse
import re
import sys
from collections import Counter

# (layer, pattern on a frame's symbol); the first pattern that matches a frame names its layer.
LAYERS = [
    ("logging", r"lingma_gw::logging|tracing_subscriber::|tracing_core::|tracing::"),
    ("metrics", r"lingma_gw::metrics|prometheus::"),
    ("lingma client (rpc, WebSocket)", r"lingma_gw::lingma::|tungstenite::|tokio_tungstenite::"),
    ("pool", r"lingma_gw::pool::"),
    ("turn engine (reuse, prompt, tools)", r"lingma_gw::turn::|lingma_gw::admission|sha1"),
    (
        "front door (request JSON, response JSON/SSE)",
        r"lingma_gw::gateway::(openai|anthropic|responses)",
    ),
    (
        "routing, auth, request log, extractors",
        r"lingma_gw::gateway::(router|auth|extract|state|health)|axum::|tower::|tower_http::",
    ),
    ("HTTP/1 (hyper, accept, timeouts)", r"lingma_gw::gateway::server|hyper::|hyper_util::"),
]
COMPILED = [(name, re.compile(p)) for name, p in LAYERS]
FRAME = re.compile(r"^\s*[0-9a-f]+ (.+?) \(")


def layer_of(frames, comm):
    if comm == "lingma-gw-log":
        return "logging"
    for sym in frames:  # innermost first
        for name, pat in COMPILED:
            if pat.search(sym):
                return name
    return "runtime (scheduler, parking, epoll)"


def samples(lines):
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line[0].isspace():
            comm, frames = line.split()[0], []
            # perf script pads thread names; a name with a space keeps its first word
        else:
            m = FRAME.match(line)
            if m:
                frames.append(m.group(1))
    if comm is not None:
        yield comm, frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--us-per-chat", type=float, help="the process's CPU per chat, in µs")
    args = ap.parse_args()
    counts = Counter()
    for comm, frames in samples(sys.stdin):
        counts[layer_of(frames, comm)] += 1
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples on stdin (expected `perf script` output)")
    order = [n for n, _ in LAYERS] + ["runtime (scheduler, parking, epoll)"]
    head = "| layer | share |" + (" µs per chat |" if args.us_per_chat else "")
    print(head)
    print("|---|---:|" + ("---:|" if args.us_per_chat else ""))
    for name in order:
        share = counts[name] / total
        row = f"| {name} | {share * 100:.1f}% |"
        if args.us_per_chat:
            row += f" {share * args.us_per_chat:.0f} |"
        print(row)
    print(f"\n{total} samples")


if __name__ == "__main__":
    main()
