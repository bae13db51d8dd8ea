#!/usr/bin/env python3
"""The official `anthropic` Python SDK against a running `lingma-gw serve --sim`: messages
(stream and not), thinking blocks of a reasoning model, tool use (parallel, `tool_choice`,
`disable_parallel_tool_use`), stop sequences and max_tokens, count_tokens, the model map and the
`x-lingma-model` header, Claude Code's session header keeping a tool loop in one Lingma session,
and every error type the SDK maps (checked by the SDK's own exception classes).

The gateway must run with `--max-in-flight 1 --queue-timeout 0 --model-map 'claude-*haiku*=
dashscope_qwen_max_latest'` (for the 429 and model map checks). Usage:

    python3 tests/python/anthropic_client.py --base-url http://127.0.0.1:PORT --api-key KEY \
        --work-dir DIR

One `PASS name` / `FAIL name: why` line per check; exit 0 only when all passed (2: the package is
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
import uuid

import sim_record  # beside this script: asks read the same in both dialects

try:
    import anthropic
except ImportError as e:  # pragma: no cover - fresh machines only
    print(f"FAIL setup: cannot import anthropic ({e}); run `python3 -m pip install -r tests/requirements.txt`",
          file=sys.stderr)
    sys.exit(2)

OPUS = "claude-opus-5-5"
WRITE = {
    "name": "Write",
    "description": "Writes a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}
READ = {
    "name": "Read",
    "description": "Reads a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def tag() -> str:
    return uuid.uuid4().hex[:8]


class Checks:
    def __init__(self, base_url: str, api_key: str, work_dir: str):
        self.base_url = base_url
        self.api_key = api_key
        self.work_dir = work_dir
        self.c = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)

    def asks_for(self, marker: str) -> list[dict]:
        asks = sim_record.asks(self.work_dir)
        first = next((a for a in asks if marker in a.get("questionText", "")), None)
        expect(first is not None, f"no ask contains {marker!r}")
        return [a for a in asks if a.get("sessionId") == first["sessionId"]]

    def text_message(self) -> str:
        raw = self.c.messages.with_raw_response.create(
            model=OPUS, max_tokens=100, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": "Reply with exactly: pong"}],
        )
        m = raw.parse()
        expect(m.type == "message" and m.role == "assistant", f"{m}")
        expect(m.model == OPUS, f"model {m.model!r} (Claude Code compares it)")
        expect([b.type for b in m.content] == ["text"] and m.content[0].text == "pong", f"{m.content}")
        expect(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason!r}")
        expect(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage {m.usage}")
        expect(raw.headers.get("x-lingma-model") == "auto", f"x-lingma-model {raw.headers.get('x-lingma-model')!r}")
        return "one text block, end_turn, usage, x-lingma-model"

    def stream_events_in_order(self) -> str:
        with self.c.messages.stream(model=OPUS, max_tokens=100,
                                    messages=[{"role": "user", "content": "Reply with exactly: streamed text"}]) as s:
            kinds = [ev.type for ev in s]
            final = s.get_final_message()
        core = [k for k in kinds if k in ("message_start", "content_block_start", "content_block_stop",
                                          "message_delta", "message_stop")]
        expect(core == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"],
               f"event order {kinds}")
        expect("text" in kinds, f"no text deltas: {kinds}")
        expect(final.content[0].text == "streamed text" and final.stop_reason == "end_turn", f"{final}")
        return f"{len(kinds)} events"

    def thinking_blocks(self) -> str:
        model = "dashscope_qwen_plus_20250428_thinking"
        m = self.c.messages.create(model=model, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
                                   messages=[{"role": "user", "content": "Reply with exactly: thought"}])
        kinds = [b.type for b in m.content]
        expect(kinds == ["thinking", "text"], f"blocks {kinds}")
        expect(m.content[0].thinking and m.content[1].text == "thought", f"{m.content}")
        with self.c.messages.stream(model=model, max_tokens=2000, thinking={"type": "adaptive"},
                                    messages=[{"role": "user", "content": "Reply with exactly: thought2"}]) as s:
            final = s.get_final_message()
        expect([b.type for b in final.content] == ["thinking", "text"], f"streamed {final.content}")
        m = self.c.messages.create(model=model, max_tokens=2000,
                                   messages=[{"role": "user", "content": "Reply with exactly: quiet"}])
        expect([b.type for b in m.content] == ["text"], f"thinking without asking: {m.content}")
        return "thinking blocks only when asked"

    def tool_use(self) -> str:
        t = tag()
        with self.c.messages.stream(model=OPUS, max_tokens=1000, tools=[WRITE, READ], messages=[
            {"role": "user", "content": f'{t} [[tool:Write {{"file_path": "/a", "content": "x"}}]] [[tool&:Read {{"file_path": "/b"}}]]'}
        ]) as s:
            kinds = [ev.type for ev in s]
            m = s.get_final_message()
        expect(m.stop_reason == "tool_use", f"stop_reason {m.stop_reason}")
        uses = [b for b in m.content if b.type == "tool_use"]
        expect([(u.name, u.input) for u in uses] == [("Write", {"file_path": "/a", "content": "x"}), ("Read", {"file_path": "/b"})],
               f"tool uses {uses}")
        expect(all(u.id.startswith("toolu_") for u in uses), "ids")
        expect("input_json" in kinds, f"no input_json_delta events: {kinds}")
        # disable_parallel_tool_use keeps one; tool_choice any + a refusal first is re-asked.
        m = self.c.messages.create(model=OPUS, max_tokens=1000, tools=[WRITE, READ],
                                   tool_choice={"type": "auto", "disable_parallel_tool_use": True},
                                   messages=[{"role": "user", "content": f'{tag()} [[tool:Write {{"file_path": "/a", "content": "x"}}]] [[tool&:Read {{"file_path": "/b"}}]]'}])
        expect(len([b for b in m.content if b.type == "tool_use"]) == 1, "disable_parallel_tool_use")
        m = self.c.messages.create(model=OPUS, max_tokens=1000, tools=[WRITE, READ], tool_choice={"type": "any"},
                                   messages=[{"role": "user", "content": f'{tag()} [[sim:tool-fault=refuse]] [[tool:Read {{"file_path": "/c"}}]]'}])
        expect(m.stop_reason == "tool_use", f"any + refusal: {m}")
        m = self.c.messages.create(model=OPUS, max_tokens=1000, tools=[WRITE, READ], tool_choice={"type": "tool", "name": "Read"},
                                   messages=[{"role": "user", "content": f'{tag()} [[tool:Read {{"file_path": "/c"}}]]'}])
        expect([b.name for b in m.content if b.type == "tool_use"] == ["Read"], "tool_choice tool")
        m = self.c.messages.create(model=OPUS, max_tokens=1000, tools=[WRITE], tool_choice={"type": "none"},
                                   messages=[{"role": "user", "content": "Reply with exactly: no tools"}])
        expect(m.content[0].text == "no tools" and m.stop_reason == "end_turn", "tool_choice none")
        return "parallel, disable_parallel_tool_use, any (re-asked), tool, none"

    def tool_loop_keeps_its_session(self) -> str:
        t = tag()
        session = str(uuid.uuid4())
        headers = {"X-Claude-Code-Session-Id": session}
        messages = [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": f'{t} [[tool:Write {{"file_path": "/a", "content": "x"}}]] [[tool:Read {{"file_path": "/a"}}]]'}]},
            # Claude Code puts a system entry inside messages.
            {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /p"}]}]
        final = None
        for step in range(3):
            m = self.c.messages.create(model=OPUS, max_tokens=1000, tools=[WRITE, READ], messages=messages,
                                       extra_headers=headers)
            if m.stop_reason != "tool_use":
                final = m
                break
            messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": f"{b.name} ok {step}",
                 "cache_control": {"type": "ephemeral"}} for b in m.content if b.type == "tool_use"]})
        expect(final is not None and final.content[0].text == "Done. The tool said: Read ok 1", f"final {final}")
        asks = self.asks_for(t)
        sizes = [len(a["questionText"].encode()) for a in asks]
        expect(len(asks) == 3 and all(s < 300 for s in sizes[1:]), f"question bytes per step {sizes}")
        return f"question bytes per step {sizes}"

    def stops_and_limits(self) -> str:
        m = self.c.messages.create(model=OPUS, max_tokens=100, stop_sequences=["STOP"],
                                   messages=[{"role": "user", "content": "Reply with exactly: before STOP after"}])
        expect(m.stop_reason == "stop_sequence" and m.stop_sequence == "STOP", f"{m.stop_reason} {m.stop_sequence}")
        expect(m.content[0].text == "before ", f"{m.content[0].text!r}")
        m = self.c.messages.create(model=OPUS, max_tokens=3, messages=[{"role": "user", "content": "[[sim:len=50]] x"}])
        expect(m.stop_reason == "max_tokens", f"{m.stop_reason}")
        return "stop_sequence, max_tokens"

    def count_tokens_and_model_map(self) -> str:
        n = self.c.messages.count_tokens(model=OPUS, tools=[WRITE], messages=[{"role": "user", "content": "hello world"}])
        expect(n.input_tokens > 10, f"{n}")
        raw = self.c.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=50,
                                                       messages=[{"role": "user", "content": "Reply with exactly: mapped"}])
        m = raw.parse()
        expect(m.model == "claude-haiku-4-5", f"model echoed {m.model}")
        expect(raw.headers.get("x-lingma-model") == "dashscope_qwen_max_latest", f"{raw.headers.get('x-lingma-model')}")
        return f"count_tokens {n.input_tokens}; haiku -> dashscope_qwen_max_latest"

    def errors(self) -> str:
        seen = []
        bad = anthropic.Anthropic(base_url=self.base_url, api_key="wrong", max_retries=0)
        cases = [
            (anthropic.AuthenticationError, 401, "authentication_error",
             lambda: bad.messages.create(model=OPUS, max_tokens=5, messages=[{"role": "user", "content": "x"}])),
            (anthropic.BadRequestError, 400, "invalid_request_error",
             lambda: self.c.messages.create(model=OPUS, max_tokens=5, messages=[{"role": "user", "content": [
                 {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])),
            (anthropic.InternalServerError, 502, "api_error",
             lambda: self.c.messages.create(model=OPUS, max_tokens=5, messages=[{"role": "user", "content": "[[sim:error=500]] x"}])),
            (anthropic.APIStatusError, 413, "request_too_large",
             lambda: self.c.messages.create(model=OPUS, max_tokens=5, messages=[{"role": "user", "content": "x" * (11 * 1024 * 1024)}])),
        ]
        for cls, status, kind, call in cases:
            try:
                call()
            except cls as e:
                expect(e.status_code == status, f"{kind}: status {e.status_code}")
                body = e.body if isinstance(e.body, dict) else {}
                expect(body.get("type") == "error" and body.get("error", {}).get("type") == kind, f"{kind}: body {e.body}")
                expect(str(body.get("request_id", "")).startswith("req_"), f"{kind}: request_id {body}")
                seen.append(kind)
            else:
                raise CheckFailed(f"{kind}: no error")
        # 429 under backpressure: one slot, held by a slow stream.
        started = threading.Event()

        def hold():
            with self.c.messages.stream(model=OPUS, max_tokens=10000,
                                        messages=[{"role": "user", "content": "[[sim:len=400,delay=10]] hold"}]) as s:
                for _ in s:
                    started.set()

        th = threading.Thread(target=hold)
        th.start()
        expect(started.wait(30), "the holding stream did not start")
        try:
            self.c.messages.create(model=OPUS, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        except anthropic.RateLimitError as e:
            expect(e.response.headers.get("retry-after"), "no retry-after")
            expect(e.body["error"]["type"] == "rate_limit_error", f"{e.body}")
            seen.append("rate_limit_error")
        else:
            raise CheckFailed("no 429 while the only slot was held")
        finally:
            th.join(60)
        # A failure after the stream started is an `error` event.
        try:
            with self.c.messages.stream(model=OPUS, max_tokens=1000,
                                        messages=[{"role": "user", "content": "[[sim:len=50,crash=5]] x"}]) as s:
                for _ in s:
                    pass
        except anthropic.APIStatusError as e:
            seen.append(f"stream error event ({e.body.get('error', {}).get('type') if isinstance(e.body, dict) else e})")
        except anthropic.APIError as e:
            seen.append(f"stream error event ({e})")
        else:
            raise CheckFailed("the stream of a crashed answer ended cleanly")
        return ", ".join(seen)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()
    checks = Checks(args.base_url.rstrip("/"), args.api_key, args.work_dir)
    names = ["text_message", "stream_events_in_order", "thinking_blocks", "tool_use",
             "tool_loop_keeps_its_session", "stops_and_limits", "count_tokens_and_model_map", "errors"]
    passed = 0
    for name in names:
        try:
            print(f"PASS {name}: {getattr(checks, name)()}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()
    print(f"{passed}/{len(names)} checks passed")
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
