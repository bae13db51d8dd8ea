#!/usr/bin/env python3
"""Instructions per chat of the gateway process, counted by callgrind (repeatable to ~0.3%).

    scripts/callgrind-gateway.py [--bin target/release/lingma-gw] [--mode complete|stream]
                                 [--chats 40,200] [--connections 4] [--keep DIR]

Timing on a shared 2-core machine scatters by 20% and more between runs; an instruction count
does not. This runs `lingma-gw serve --sim` under `valgrind --tool=callgrind` (only the gateway
process: its simulator child runs natively) with the benchmark's simulator settings (no delays),
sends the benchmark's question (a 20-word answer) over keep-alive connections, and does it twice,
with a small and a larger number of chats; the difference divided by the difference in chats is
what one chat costs in user-space instructions, start-up and shut-down cancelled out. Kernel time
(the syscalls) is not in it: `perf stat` and the benchmark's CPU columns cover that.

Compare two builds by running it on each (`--bin`). Needs valgrind (Debian: valgrind).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

QUESTION = "[[sim:len=20]] Count for the benchmark."
EXPECTED_TAIL = b"w20"


def wait_for(what, check, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/healthz")
        return c.getresponse().status == 200
    except OSError:
        return False


def one_run(args, chats, dir_):
    out = os.path.join(dir_, "callgrind.out")
    log_path = os.path.join(dir_, "gateway.log")
    env = dict(
        os.environ,
        LINGMA_SIM_NO_DELAY="1",
        LINGMA_SIM_NO_REQUEST_LOG="1",
        LINGMA_SIM_STARTUP_DELAY_MS="0",
        LINGMA_CONNECTIONS_PER_INSTANCE=str(args.connections),
    )
    for k in ["API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN", "INSTANCE_COUNT", "GATEWAY_MAX_IN_FLIGHT"]:
        env.pop(k, None)
    with open(log_path, "w") as log:
        gw = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", args.bin, "serve",
             "--sim", "--port", "0", "--instances", "1", "--work-dir", os.path.join(dir_, "work"),
             "--max-in-flight", str(args.connections)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        def port():
            m = re.search(r"listening addr=127\.0\.0\.1:(\d+)", open(log_path).read())
            if gw.poll() is not None:
                sys.exit(f"the gateway exited ({gw.returncode}); log: {log_path}")
            return int(m.group(1)) if m else None

        p = wait_for("the gateway's listening line", port)
        wait_for("/healthz 200", lambda: healthy(p))
        body = json.dumps({"model": "auto", "stream": args.mode == "stream",
                           "messages": [{"role": "user", "content": QUESTION}]})
        failures = []

        def worker(n):
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=300)
            for _ in range(n):
                c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.status != 200 or EXPECTED_TAIL not in data:
                    failures.append(f"{r.status}: {data[:200]!r}")
                    return

        def wave(per_connection):
            threads = [threading.Thread(target=worker, args=(per_connection,))
                       for _ in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        wave(1)  # every connection (HTTP and upstream) opened and warm
        per = max(1, chats // args.connections)
        wave(per)
        if failures:
            sys.exit(f"a chat failed: {failures[0]}")
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=300)
    total = 0
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    if not total:
        sys.exit(f"no instruction total in {out}")
    return total, per * args.connections


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/lingma-gw")
    ap.add_argument("--mode", choices=["complete", "stream"], default="complete")
    ap.add_argument("--chats", default="40,200", help="the two run sizes, small,large")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--keep", help="keep the runs' directories (callgrind output, logs) here")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is not an executable (cargo build --release first)")
    small, large = (int(x) for x in args.chats.split(","))
    if not 0 < small < large:
        sys.exit("--chats: two sizes, the first smaller")
    base = args.keep or tempfile.mkdtemp(prefix="callgrind-gateway-")
    runs = []
    for n in (small, large):
        d = os.path.join(base, f"{args.mode}-{n}")
        os.makedirs(d, exist_ok=True)
        runs.append(one_run(args, n, d))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    (a, na), (b, nb) = runs
    print(f"{args.bin} {args.mode}: {(b - a) / (nb - na):,.0f} instructions per chat "
          f"({a:,} for {na} chats, {b:,} for {nb})")


if __name__ == "__main__":
    main()
