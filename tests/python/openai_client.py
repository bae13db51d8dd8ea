#!/usr/bin/env python3
"""Drive a running lingma-gw gateway with the official `openai` Python SDK, as a real client would.

The gateway must run on the simulator (`serve --sim`) with `--max-in-flight 1 --queue-timeout 0`
(for the backpressure check) and session reuse on. Usage:

    python3 tests/python/openai_client.py --base-url http://127.0.0.1:PORT --api-key sk-test \
        --work-dir DIR

Each check prints one `PASS name: ...` or `FAIL name: ...` line; the exit status is 0 only when
every check passed (1 when one failed, 2 when the `openai` package is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
import urllib.request
import uuid

import sim_record  # beside this script: asks read the same in both dialects

try:
    import openai
except ImportError as e:  # pragma: no cover - exercised on fresh machines only
    print(
        f"FAIL setup: cannot import the openai SDK ({e}); "
        "run `python3 -m pip install -r tests/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

# The chat-scene models of the built-in simulator (src/sim/models.rs).
SIM_MODELS = {
    "auto",
    "dashscope_qwen3_coder",
    "dashscope_qwen_max_latest",
    "dashscope_qwen_plus_20250428_thinking",
    "dashscope_qmodel",
}
MODEL = "auto"


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def nonce() -> str:
    return uuid.uuid4().hex[:10]


class Checks:
    def __init__(self, base_url: str, api_key: str, work_dir: str):
        self.root = base_url.rstrip("/")
        self.base_url = self.root + "/v1"
        self.api_key = api_key
        self.work_dir = work_dir
        # No retries anywhere: a retried request would hide a 429 or a flaky first attempt.
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, timeout=60.0
        )

    # -- checks ---------------------------------------------------------------------------------

    def models(self) -> str:
        page = self.client.models.list()
        ids = [m.id for m in page.data]
        expect(ids, "models.list() returned no models")
        missing = sorted(SIM_MODELS - set(ids))
        expect(not missing, f"models.list() lacks the simulator's models {missing}; got {ids}")
        for m in page.data:
            expect(m.object == "model", f"model {m.id!r} has object={m.object!r}, want 'model'")
        return f"{len(ids)} models: {', '.join(ids)}"

    def chat(self) -> str:
        resp = self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Reply with exactly: pong"}],
        )
        expect(resp.object == "chat.completion", f"object={resp.object!r}")
        expect(len(resp.choices) == 1, f"want 1 choice, got {len(resp.choices)}: {resp}")
        choice = resp.choices[0]
        content = choice.message.content
        expect(content == "pong", f"content={content!r}, want 'pong'")
        expect(choice.message.role == "assistant", f"role={choice.message.role!r}")
        expect(choice.finish_reason == "stop", f"finish_reason={choice.finish_reason!r}")
        u = resp.usage
        expect(u is not None, f"no usage in the response: {resp}")
        expect(u.prompt_tokens > 0, f"usage.prompt_tokens={u.prompt_tokens}")
        expect(u.completion_tokens > 0, f"usage.completion_tokens={u.completion_tokens}")
        expect(
            u.total_tokens == u.prompt_tokens + u.completion_tokens,
            f"usage.total_tokens={u.total_tokens} != {u.prompt_tokens} + {u.completion_tokens}",
        )
        return f"content={content!r} usage={u.prompt_tokens}+{u.completion_tokens}"

    def stream(self) -> str:
        want = f"streamed answer {nonce()} with several words"
        stream = self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Reply with exactly: {want}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        expect(chunks, "the stream had no chunks")
        for c in chunks:
            expect(c.object == "chat.completion.chunk", f"chunk object={c.object!r}")
        ids = {c.id for c in chunks}
        expect(len(ids) == 1, f"chunks carry different ids: {sorted(ids)}")
        body, last = chunks[:-1], chunks[-1]
        text = "".join(
            ch.delta.content or "" for c in body for ch in c.choices if ch.index == 0
        )
        expect(text == want, f"content deltas concatenate to {text!r}, want {want!r}")
        content_chunks = sum(1 for c in body for ch in c.choices if ch.delta.content)
        finishes = [ch.finish_reason for c in body for ch in c.choices if ch.finish_reason]
        expect(finishes == ["stop"], f"finish_reasons over the stream: {finishes}, want ['stop']")
        with_usage = [i for i, c in enumerate(body) if c.usage is not None]
        expect(not with_usage, f"chunks before the last carry usage (indexes {with_usage})")
        expect(last.choices == [], f"last chunk has choices={last.choices!r}, want []")
        expect(last.usage is not None, f"last chunk has no usage: {last}")
        u = last.usage
        expect(
            u.prompt_tokens > 0 and u.completion_tokens > 0,
            f"usage in the last chunk: {u}",
        )
        expect(
            u.total_tokens == u.prompt_tokens + u.completion_tokens,
            f"usage.total_tokens={u.total_tokens} != {u.prompt_tokens} + {u.completion_tokens}",
        )
        return (
            f"{len(chunks)} chunks, {content_chunks} with content, text ok, "
            f"usage={u.prompt_tokens}+{u.completion_tokens}"
        )

    def auth_error(self) -> str:
        bad = openai.OpenAI(
            base_url=self.base_url, api_key="sk-wrong-" + nonce(), max_retries=0, timeout=30.0
        )
        try:
            bad.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Reply with exactly: no"}]
            )
        except openai.AuthenticationError as e:
            expect(e.status_code == 401, f"status {e.status_code}, want 401")
            err = (e.body or {}) if isinstance(e.body, dict) else {}
            expect(
                err.get("type") == "authentication_error",
                f"error body type={err.get('type')!r}, want 'authentication_error': {e.body!r}",
            )
            return f"401 {err.get('code')}: {err.get('message')}"
        except openai.APIStatusError as e:
            raise CheckFailed(
                f"wrong key gave {type(e).__name__} status {e.status_code}: {e.body!r}"
            ) from e
        raise CheckFailed("a request with a wrong API key succeeded")

    def rate_limit(self) -> str:
        held_text = f"held {nonce()}"
        started = threading.Event()
        result: dict = {}

        def hold() -> None:
            try:
                s = self.client.chat.completions.create(
                    model=MODEL,
                    messages=[
                        {
                            "role": "user",
                            "content": f"[[sim:slow=3000]] Reply with exactly: {held_text}",
                        }
                    ],
                    stream=True,
                )
                started.set()
                text = ""
                for c in s:
                    for ch in c.choices:
                        text += ch.delta.content or ""
                result["text"] = text
            except Exception as e:  # reported by the main thread
                result["error"] = e
            finally:
                started.set()

        t = threading.Thread(target=hold, name="held-stream", daemon=True)
        t.start()
        try:
            took, ra, err, how = self._second_request_while_held(started, result)
        finally:
            # Whatever happened, let the held stream end before the next check needs the slot.
            t.join(timeout=30)
        expect(not t.is_alive(), "the held stream did not finish within 30 s")
        expect("error" not in result, f"the held stream failed: {result.get('error')!r}")
        expect(
            result.get("text") == held_text,
            f"the held stream answered {result.get('text')!r}, want {held_text!r}",
        )
        return (
            f"429 after {took * 1000:.0f} ms, Retry-After={ra}, type={err.get('type')!r} "
            f"(held slot seen via {how}); held stream completed"
        )

    def _second_request_while_held(self, started: threading.Event, result: dict):
        # The held request owns the only slot once its response headers arrived or the gateway's
        # stats count it in flight, whichever is seen first.
        deadline = time.monotonic() + 10
        how = None
        while time.monotonic() < deadline and how is None:
            if started.is_set():
                how = "headers"
            elif self._in_flight() >= 1:
                how = "stats"
            else:
                time.sleep(0.02)
        expect("error" not in result, f"the held stream failed: {result.get('error')!r}")
        expect(how is not None, "the held slow stream was not admitted within 10 s")
        t0 = time.monotonic()
        try:
            self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Reply with exactly: second"}]
            )
        except openai.RateLimitError as e:
            took = time.monotonic() - t0
            expect(e.status_code == 429, f"status {e.status_code}")
            ra = e.response.headers.get("retry-after")
            expect(ra is not None, f"429 without a Retry-After header: {dict(e.response.headers)}")
            expect(
                ra.strip().isdigit() and int(ra) >= 1,
                f"Retry-After={ra!r}, want a positive number of seconds",
            )
            err = e.body if isinstance(e.body, dict) else {}
            expect(bool(err.get("message")), f"429 body has no error message: {e.body!r}")
            expect(took < 2.5, f"the 429 took {took:.2f}s with --queue-timeout 0")
            return took, ra, err, how
        except openai.APIStatusError as e:
            raise CheckFailed(
                f"second request gave {type(e).__name__} status {e.status_code} "
                f"instead of 429: {e.body!r}"
            ) from e
        raise CheckFailed(
            "a second request while the only slot was held (--max-in-flight 1 "
            "--queue-timeout 0) succeeded instead of 429"
        )

    def session_reuse(self) -> str:
        n = nonce()
        first = f"Reply with exactly: first turn {n}"
        second = f"Reply with exactly: second turn {n}"
        r1 = self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": first}]
        )
        a1 = r1.choices[0].message.content
        expect(a1 == f"first turn {n}", f"turn 1 answered {a1!r}")
        r2 = self.client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": first},
                {"role": "assistant", "content": a1},
                {"role": "user", "content": second},
            ],
        )
        a2 = r2.choices[0].message.content
        expect(a2 == f"second turn {n}", f"turn 2 answered {a2!r}")

        # The simulator writes its record as it reads requests; allow it a moment.
        deadline = time.monotonic() + 5
        while True:
            asks = [a for a in self._asks() if n in str(a.get("questionText", ""))]
            if len(asks) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        expect(
            len(asks) == 2,
            f"want 2 asks for this conversation in the simulator's record, got {len(asks)}: "
            + json.dumps([{k: a.get(k) for k in ("sessionId", "questionText")} for a in asks]),
        )
        ask1, ask2 = asks
        q2 = ask2.get("questionText")
        expect(
            q2 == second,
            f"the second chat/ask sent questionText={q2!r}; with session reuse it must be only "
            f"the new user message {second!r}",
        )
        s1, s2 = ask1.get("sessionId"), ask2.get("sessionId")
        expect(bool(s1), f"the first chat/ask has no sessionId: {ask1}")
        expect(
            s1 == s2,
            f"the second chat/ask used sessionId {s2!r}, not the first turn's {s1!r}",
        )
        return f"turn 2 sent only the new message in session {s1}"

    # -- helpers --------------------------------------------------------------------------------

    def _in_flight(self) -> int:
        req = urllib.request.Request(
            self.root + "/internal/stats", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2.0) as r:
                stats = json.load(r)
            return int(stats.get("admission", {}).get("in_flight", 0))
        except Exception:  # stats are only a hint; the response headers are the other signal
            return 0

    def _asks(self) -> list[dict]:
        return sim_record.asks(self.work_dir)

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="gateway root, e.g. http://127.0.0.1:8000")
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--work-dir", required=True, help="the gateway's --work-dir")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    checks = Checks(base, args.api_key, args.work_dir)
    print(f"openai {openai.__version__} against {base}/v1", flush=True)
    plan = [
        ("models", checks.models),
        ("chat", checks.chat),
        ("stream_include_usage", checks.stream),
        ("auth_error", checks.auth_error),
        ("rate_limit_429", checks.rate_limit),
        ("session_reuse", checks.session_reuse),
    ]
    failed = []
    for name, fn in plan:
        t0 = time.monotonic()
        try:
            detail = fn()
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s): {detail}", flush=True)
        except CheckFailed as e:
            failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
        except openai.OpenAIError as e:  # an SDK error where none was expected
            failed.append(name)
            extra = ""
            if isinstance(e, openai.APIStatusError):
                extra = f" (HTTP {e.status_code}, body {e.body!r})"
            elif e.__cause__ is not None:
                extra = f" (cause: {type(e.__cause__).__name__}: {e.__cause__})"
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}{extra}", flush=True)
        except Exception as e:  # a bug in this script or an unexpected response shape
            failed.append(name)
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
    passed = len(plan) - len(failed)
    # Not "N passed, N failed": CI reads that shape as a test runner's closing line.
    verdict = "ok" if not failed else "FAILED: " + ", ".join(failed)
    print(f"openai_client: {passed}/{len(plan)} checks passed; {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
