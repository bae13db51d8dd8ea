#!/usr/bin/env python3
"""The official `openai` Python SDK's `client.responses` against a running `lingma-gw serve --sim`:
create and stream (every event type parsed by the SDK's own models, with sequence numbers in
order), function, namespace and custom (free-form) tools, hosted tools left out and named in a
header, reasoning summaries, `previous_response_id` continuing the same Lingma session, a Codex-
style `store: false` history reusing it too, retrieve and delete, and errors (404, 400, 429 with
the "try again in" wording Codex parses).

The gateway must run with `--max-in-flight 1 --queue-timeout 0` (the 429 check). Usage:

    python3 tests/python/openai_responses.py --base-url http://127.0.0.1:PORT --api-key KEY \
        --work-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import traceback
import uuid

import sim_record  # beside this script: asks read the same in both dialects

try:
    import openai
except ImportError as e:  # pragma: no cover
    print(f"FAIL setup: cannot import openai ({e}); run `python3 -m pip install -r tests/requirements.txt`",
          file=sys.stderr)
    sys.exit(2)

MODEL = "gpt-5.5"
EXEC = {"type": "function", "name": "exec_command", "description": "Runs a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
        "strict": False}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
    {"type": "function", "name": "spawn_agent", "description": "Spawn one",
     "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}]}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}
HOSTED = {"type": "web_search", "external_web_access": False}
TOOLS = [EXEC, AGENTS, PATCH, HOSTED]


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def tag() -> str:
    return uuid.uuid4().hex[:8]


class Checks:
    def __init__(self, base_url: str, api_key: str, work_dir: str):
        self.c = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
        self.work_dir = work_dir

    def asks_for(self, marker: str) -> list[dict]:
        asks = sim_record.asks(self.work_dir)
        first = next((a for a in asks if marker in a.get("questionText", "")), None)
        expect(first is not None, f"no ask contains {marker!r}")
        return [a for a in asks if a.get("sessionId") == first["sessionId"]]

    def create_text(self) -> str:
        r = self.c.responses.create(model=MODEL, instructions="Be brief.", input="Reply with exactly: pong")
        expect(r.object == "response" and r.status == "completed", f"{r.status}")
        expect(r.output_text == "pong", f"output_text {r.output_text!r}")
        expect(r.model == MODEL and r.usage.total_tokens > 0, f"{r.model} {r.usage}")
        return f"{r.id}: {r.output_text!r}"

    def stream_events(self) -> str:
        seqs, kinds, final = [], [], None
        with self.c.responses.stream(model=MODEL, input="Reply with exactly: streamed") as s:
            for ev in s:
                seqs.append(ev.sequence_number)
                kinds.append(ev.type)
            final = s.get_final_response()
        expect(seqs == list(range(len(seqs))), f"sequence numbers {seqs}")
        expect(kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed", f"{kinds}")
        for k in ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
                  "response.output_text.done", "response.content_part.done", "response.output_item.done"]:
            expect(k in kinds, f"no {k}: {kinds}")
        expect(final.output_text == "streamed", f"{final.output_text!r}")
        return f"{len(kinds)} events in order"

    def function_namespace_custom_and_hosted_tools(self) -> str:
        raw = self.c.responses.with_raw_response.create(
            model=MODEL, tools=TOOLS,
            input=f'{tag()} [[tool:exec_command {{"cmd": "ls"}}]] [[tool&:multi_agent_v1.spawn_agent {{"task": "t"}}]] [[tool&:apply_patch {{"input": "*** Begin Patch"}}]]')
        r = raw.parse()
        expect(raw.headers.get("x-lingma-gw-ignored-tools") == "web_search", f"{raw.headers.get('x-lingma-gw-ignored-tools')}")
        calls = [o for o in r.output if o.type in ("function_call", "custom_tool_call")]
        expect(len(calls) == 3, f"output {r.output}")
        f, ns, custom = calls
        expect(f.type == "function_call" and f.name == "exec_command" and json.loads(f.arguments) == {"cmd": "ls"}, f"{f}")
        expect(ns.name == "spawn_agent" and ns.namespace == "multi_agent_v1", f"namespaced {ns}")
        expect(custom.type == "custom_tool_call" and custom.input == "*** Begin Patch", f"custom {custom}")
        expect(all(c.call_id.startswith("call_") for c in calls), "call ids")
        # Streamed: each call is its own item, its arguments in delta events.
        kinds = []
        with self.c.responses.stream(model=MODEL, tools=TOOLS,
                                     input=f'{tag()} [[tool:exec_command {{"cmd": "pwd"}}]]') as s:
            for ev in s:
                kinds.append(ev.type)
            done = s.get_final_response()
        expect("response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds, f"{kinds}")
        expect([o.type for o in done.output][-1] == "function_call", f"{done.output}")
        return "function, namespace (namespace field), custom (raw input), web_search ignored"

    def previous_response_id_keeps_the_session(self) -> str:
        t = tag()
        r1 = self.c.responses.create(model=MODEL, tools=[EXEC], input=f'{t} [[tool:exec_command {{"cmd": "date"}}]]')
        call = next(o for o in r1.output if o.type == "function_call")
        r2 = self.c.responses.create(model=MODEL, tools=[EXEC], previous_response_id=r1.id,
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Tuesday"}])
        expect(r2.output_text == "Done. The tool said: Tuesday", f"{r2.output_text!r}")
        expect(r2.previous_response_id == r1.id, "previous_response_id not echoed")
        asks = self.asks_for(t)
        expect(len(asks) == 2 and asks[1]["questionText"].startswith("[Tool result]"), f"{[a['questionText'][:40] for a in asks]}")
        got = self.c.responses.retrieve(r2.id)
        expect(got.id == r2.id and got.output_text == r2.output_text, "retrieve")
        self.c.responses.delete(r2.id)
        try:
            self.c.responses.retrieve(r2.id)
        except openai.NotFoundError:
            pass
        else:
            raise CheckFailed("retrieve after delete")
        return f"second question {len(asks[1]['questionText'])} bytes in the same session; retrieve, delete"

    def codex_style_history_without_store(self) -> str:
        t = tag()
        inp = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base"}]},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f'{t} [[tool:exec_command {{"cmd": "id"}}]]'}]}]
        r1 = self.c.responses.create(model=MODEL, tools=[EXEC], input=inp, store=False)
        for o in r1.output:
            inp.append(o.model_dump(exclude_none=True))
        call = next(o for o in r1.output if o.type == "function_call")
        inp.append({"type": "function_call_output", "call_id": call.call_id,
                    "output": "Chunk ID: 1\nProcess exited with code 0\nOutput:\nuid=0"})
        r2 = self.c.responses.create(model=MODEL, tools=[EXEC], input=inp, store=False)
        expect("uid=0" in r2.output_text, f"{r2.output_text!r}")
        asks = self.asks_for(t)
        expect(len(asks) == 2 and len(asks[1]["questionText"]) < 300, f"{[len(a['questionText']) for a in asks]}")
        try:
            self.c.responses.retrieve(r2.id)
        except openai.NotFoundError:
            pass
        else:
            raise CheckFailed("store: false was stored")
        return "the history maps onto the same session; nothing stored"

    def reasoning_summaries(self) -> str:
        r = self.c.responses.create(model="dashscope_qwen_plus_20250428_thinking", reasoning={"summary": "auto"},
                                    input="Reply with exactly: reasoned")
        kinds = [o.type for o in r.output]
        expect(kinds == ["reasoning", "message"], f"{kinds}")
        expect(r.output[0].summary[0].text, "empty summary")
        kinds = []
        with self.c.responses.stream(model="dashscope_qwen_plus_20250428_thinking", reasoning={"summary": "auto"},
                                     input="Reply with exactly: reasoned2") as s:
            kinds = [ev.type for ev in s]
        expect("response.reasoning_summary_text.delta" in kinds, f"{kinds}")
        return "reasoning item with a summary"

    def errors(self) -> str:
        seen = []
        try:
            self.c.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")
        except openai.NotFoundError as e:
            seen.append("404")
        try:
            self.c.responses.create(model=MODEL, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}])
        except openai.BadRequestError as e:
            expect(e.body.get("param") == "input[0].content[0]", f"{e.body}")
            seen.append("400")
        started = threading.Event()

        def hold():
            with self.c.responses.stream(model=MODEL, input="[[sim:len=400,delay=10]] hold") as s:
                for _ in s:
                    started.set()

        th = threading.Thread(target=hold)
        th.start()
        expect(started.wait(30), "holding stream did not start")
        try:
            self.c.responses.create(model=MODEL, input="x")
        except openai.RateLimitError as e:
            # Codex reads the delay from this wording.
            expect(re.search(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)", e.message), f"{e.message}")
            seen.append("429 'try again in'")
        else:
            raise CheckFailed("no 429")
        finally:
            th.join(60)
        # A failure after the start: `response.failed`, and the half-built message never "done".
        failed = None
        with self.c.responses.stream(model=MODEL, input="[[sim:len=50,crash=5]] x") as s:
            kinds = []
            for ev in s:
                kinds.append(ev.type)
                if ev.type == "response.failed":
                    failed = ev.response
        expect(kinds[-1] == "response.failed" and failed is not None, f"{kinds}")
        expect(failed.status == "failed" and failed.error and failed.error.message, f"{failed}")
        expect("response.output_item.done" not in kinds, f"a half answer was finished: {kinds}")
        seen.append("response.failed")
        return ", ".join(seen)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    checks = Checks(base, args.api_key, args.work_dir)
    names = ["create_text", "stream_events", "function_namespace_custom_and_hosted_tools",
             "previous_response_id_keeps_the_session", "codex_style_history_without_store",
             "reasoning_summaries", "errors"]
    passed = 0
    for name in names:
        try:
            print(f"PASS {name}: {getattr(checks, name)()}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()
    print(f"{passed}/{len(names)} checks passed")
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
