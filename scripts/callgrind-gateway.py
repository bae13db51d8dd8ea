#!/usr/bin/env python3
"""Instructions per chat of the gateway process, counted by callgrind (repeatable to ~0.3%).

    scripts/callgrind-gateway.py [--bin target/release/lingma-gw] [--mode complete|stream]
                                 [--chats 40,200] [--connections 4] [--keep DIR]
                                 [--target gateway|direct] [--history-bytes N] [--native]
                                 [--request FILE [--path /v1/messages]]

Timing on a shared 2-core machine scatters by 20% and more between runs; an instruction count
does not. This runs `lingma-gw serve --sim` under `valgrind --tool=callgrind` (only the gateway
process: its simulator child runs natively) with the benchmark's simulator settings (no delays),
sends the benchmark's question (a 20-word answer) over keep-alive connections, and does it twice,
with a small and a larger number of chats; the difference divided by the difference in chats is
what one chat costs in user-space instructions, start-up and shut-down cancelled out. Kernel time
(the syscalls) is not in it: `perf stat` and the benchmark's CPU columns cover that.

Compare two builds by running it on each (`--bin`). `--target direct` counts the same chats sent
by the Lingma client alone instead (the benchmark's direct path: `bench --direct-only N` under
callgrind, its simulator native), so the two counts give the gateway/client ratio of the issue
without the machine's noise. `--history-bytes N` puts a conversation of about N bytes (a user
message and an answer) before the question, as an agent's requests carry, to see what the gateway
spends per byte of history; `--request FILE --path /v1/messages` sends a recorded client request
instead (for instance the body Claude Code posts, captured with any HTTP listener). `--native` runs the large run without valgrind and reports user and
system CPU time per chat instead (timed, so noisy here: compare runs side by side). Needs valgrind
(Debian: valgrind) unless --native.
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


def one_direct_run(args, chats, dir_):
    out = os.path.join(dir_, "callgrind.out")
    bench = os.path.join(os.path.dirname(args.bin), "bench")
    if not os.access(bench, os.X_OK):
        sys.exit(f"{bench} is not an executable (cargo build --release --workspace first)")
    env = dict(os.environ, TMPDIR=dir_)
    # As the gateway path: one warm-up chat per connection (bench does it), then the chats.
    per = max(1, chats // args.connections)
    cmd = valgrind(args, out) + [
        bench, "--direct-only", str(per * args.connections), "--concurrency",
        str(args.connections), "--modes", args.mode]
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench --direct-only failed ({r.returncode}):\n{r.stdout}{r.stderr[-2000:]}")
    if args.native:
        m = re.search(r"user (\d+) µs, system (\d+) µs", r.stdout)
        if not m:
            sys.exit(f"no CPU figures in bench's output:\n{r.stdout}")
        return (int(m.group(1)), int(m.group(2))), per * args.connections
    return total_instructions(out), per * args.connections


def request_body(args):
    """A recorded client request (e.g. what Claude Code sends), streamed or not as --mode says,
    with the simulator's directive for the benchmark's answer appended to its last message."""
    req = json.load(open(args.request))
    req["stream"] = args.mode == "stream"
    last = req["messages"][-1]
    if isinstance(last.get("content"), str):
        last["content"] += "\n" + QUESTION
    else:
        last.setdefault("content", []).append({"type": "text", "text": QUESTION})
    return json.dumps(req)


def valgrind(args, out):
    return [] if args.native else ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]


def cpu_seconds(pid):
    """User and system CPU time of a process so far, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def total_instructions(out):
    total = 0
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    if not total:
        sys.exit(f"no instruction total in {out}")
    return total


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
            valgrind(args, out) + [args.bin, "serve", "--sim", "--port", "0", "--instances", "1", "--work-dir", os.path.join(dir_, "work"),
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
        history = []
        if args.history_bytes:
            words = " ".join(f"word{i}" for i in range(args.history_bytes // 6 + 1))
            history = [{"role": "user", "content": words[: args.history_bytes]},
                       {"role": "assistant", "content": "Noted."}]
        body = json.dumps({"model": "auto", "stream": args.mode == "stream",
                           "messages": history + [{"role": "user", "content": QUESTION}]})
        if args.request:
            body = request_body(args)
        headers = {"content-type": "application/json"}
        if args.path == "/v1/messages":
            headers["anthropic-version"] = "2023-06-01"
        failures = []

        def worker(n):
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=300)
            for _ in range(n):
                c.request("POST", args.path, body, headers)
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
        before = cpu_seconds(gw.pid)
        wave(per)
        after = cpu_seconds(gw.pid)
        if failures:
            sys.exit(f"a chat failed: {failures[0]}")
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=300)
    n = per * args.connections
    if args.native:
        return tuple(round((a - b) * 1e6 / n) for a, b in zip(after, before)), n
    return total_instructions(out), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/lingma-gw")
    ap.add_argument("--mode", choices=["complete", "stream"], default="complete")
    ap.add_argument("--chats", default="40,200", help="the two run sizes, small,large")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--keep", help="keep the runs' directories (callgrind output, logs) here")
    ap.add_argument("--history-bytes", type=int, default=0,
                    help="a conversation of about this many bytes before the question")
    ap.add_argument("--request", metavar="FILE",
                    help="send this recorded request body instead of the benchmark's question "
                         "(its last message gets the simulator's directive; see --path)")
    ap.add_argument("--path", default="/v1/chat/completions",
                    help="where to send it (/v1/messages for an Anthropic body)")
    ap.add_argument("--native", action="store_true",
                    help="no valgrind: user and system CPU time per chat of the large run instead "
                         "(timings: noisy on a shared machine, compare runs side by side)")
    ap.add_argument("--target", choices=["gateway", "direct"], default="gateway",
                    help="the gateway process, or the Lingma client alone (the bench's direct path)")
    args = ap.parse_args()
    if not args.native and shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is not an executable (cargo build --release first)")
    small, large = (int(x) for x in args.chats.split(","))
    if args.history_bytes and args.request:
        sys.exit("--history-bytes and --request: one or the other (a recorded request has its own history)")
    if (args.history_bytes or args.request) and args.target == "direct":
        sys.exit("--history-bytes, --request: the gateway target only (the direct client sends a question)")
    if not 0 < small < large:
        sys.exit("--chats: two sizes, the first smaller")
    base = args.keep or tempfile.mkdtemp(prefix="callgrind-gateway-")
    who = args.bin if args.target == "gateway" else "direct client (bench --direct-only)"
    run = one_direct_run if args.target == "direct" else one_run
    if args.native:
        d = os.path.join(base, f"native-{args.target}-{args.mode}-{large}")
        os.makedirs(d, exist_ok=True)
        (user, system), n = run(args, large, d)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{who} {args.mode}: user {user} µs + system {system} µs CPU per chat ({n} chats)")
        return
    runs = []
    for n in (small, large):
        d = os.path.join(base, f"{args.target}-{args.mode}-{n}")
        os.makedirs(d, exist_ok=True)
        runs.append(run(args, n, d))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    (a, na), (b, nb) = runs
    print(f"{who} {args.mode}: {(b - a) / (nb - na):,.0f} instructions per chat "
          f"({a:,} for {na} chats, {b:,} for {nb})")


if __name__ == "__main__":
    main()
