#!/usr/bin/env python3
"""Tool calling through a running `lingma-gw serve --sim`, with the official `openai` SDK and
LangChain's `bind_tools`: every call syntax the gateway parses, the broken variants and the
corrective re-ask, `tool_choice` and `parallel_tool_calls`, legacy `functions`, and a multi-step
loop whose follow-ups send Lingma only the tool results (checked in the simulator's record).

The simulator plays the model: `[[tool:NAME {json}]]` in the user's text scripts its calls
(docs/simulator.md, "Playing an agent"). Usage:

    python3 tests/python/openai_tools.py --base-url http://127.0.0.1:PORT --api-key KEY \
        --work-dir DIR

One `PASS name` / `FAIL name: why` line per check; exit 0 only when all passed (2: a package is
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import uuid

import sim_record  # beside this script: asks read the same in both dialects

try:
    import openai
    from langchain_core.tools import tool as lc_tool
    from langchain_openai import ChatOpenAI
except ImportError as e:  # pragma: no cover - fresh machines only
    print(
        f"FAIL setup: cannot import the Python test packages ({e}); "
        "run `python3 -m pip install -r tests/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

MODEL = "auto"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER, TIME]


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
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)

    # -- helpers -------------------------------------------------------------------------------

    def ask(self, text: str, **kw):
        return self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], tools=kw.pop("tools", TOOLS), **kw
        )

    def stream_calls(self, text: str, **kw):
        """Streams a request; returns (text, calls by index, finish_reason)."""
        stream = self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": text}],
            tools=kw.pop("tools", TOOLS),
            stream=True,
            **kw,
        )
        content, calls, finish = "", {}, None
        for chunk in stream:
            if not chunk.choices:
                continue
            c = chunk.choices[0]
            if c.delta.content:
                content += c.delta.content
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    expect(slot["id"] is None, f"call {tc.index} got a second id")
                    slot["id"] = tc.id
                    expect(tc.type == "function", f"type {tc.type!r}")
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if c.finish_reason:
                finish = c.finish_reason
        return content, calls, finish

    def asks(self) -> list[dict]:
        return sim_record.asks(self.work_dir)

    def asks_for(self, marker: str) -> list[dict]:
        """The asks of the conversation whose first question contains `marker`, in order."""
        asks = self.asks()
        first = next((a for a in asks if marker in a.get("questionText", "")), None)
        expect(first is not None, f"no ask contains {marker!r}")
        session = first["sessionId"]
        return [a for a in asks if a.get("sessionId") == session]

    # -- checks --------------------------------------------------------------------------------

    def stream_hermes(self) -> str:
        t = tag()
        content, calls, finish = self.stream_calls(f'weather {t} [[tool:get_weather {{"city": "Paris"}}]]')
        expect(finish == "tool_calls", f"finish_reason {finish!r}")
        expect(list(calls) == [0], f"calls {calls}")
        c = calls[0]
        expect(c["id"] and c["id"].startswith("call_"), f"id {c['id']!r}")
        expect(c["name"] == "get_weather", f"name {c['name']!r}")
        expect(json.loads(c["arguments"]) == {"city": "Paris"}, f"arguments {c['arguments']!r}")
        expect("<tool_call>" not in content, f"markup leaked into the text: {content!r}")
        return f"one call, text {content.strip()!r}"

    def non_stream_and_every_syntax(self) -> str:
        seen = []
        for syntax in ["hermes", "qwen3-coder", "function", "json"]:
            t = tag()
            r = self.ask(f'{t} [[sim:tool-syntax={syntax}]] [[tool:get_weather {{"city": "Oslo", "days": 3}}]]')
            ch = r.choices[0]
            expect(ch.finish_reason == "tool_calls", f"{syntax}: finish_reason {ch.finish_reason!r}")
            calls = ch.message.tool_calls or []
            expect(len(calls) == 1, f"{syntax}: {len(calls)} calls")
            args = json.loads(calls[0].function.arguments)
            # Qwen3-Coder writes 3 as text: the schema makes it an integer again.
            expect(args == {"city": "Oslo", "days": 3}, f"{syntax}: arguments {args}")
            expect("tool_call" not in (ch.message.content or ""), f"{syntax}: markup in content")
            seen.append(syntax)
        return ", ".join(seen)

    def broken_calls_are_reasked(self) -> str:
        out = []
        for fault in ["bad-json", "unknown-tool", "missing-arg"]:
            t = tag()
            r = self.ask(f'{t} [[sim:tool-fault={fault}]] [[tool:get_weather {{"city": "Rome"}}]]')
            calls = r.choices[0].message.tool_calls or []
            expect(len(calls) == 1 and json.loads(calls[0].function.arguments) == {"city": "Rome"},
                   f"{fault}: {r.choices[0].message}")
            asks = self.asks_for(t)
            expect(len(asks) == 2, f"{fault}: {len(asks)} asks in the session, want the re-ask")
            expect("could not be used" in asks[1]["questionText"], f"{fault}: re-ask {asks[1]['questionText'][:200]!r}")
            out.append(fault)
        return "re-asked and fixed: " + ", ".join(out)

    def still_broken_is_an_error(self) -> str:
        t = tag()
        try:
            self.ask(f'{t} [[sim:tool-fault=bad-json]] [[sim:tool-fault-sticky]] [[tool:get_weather {{"city": "Rome"}}]]')
        except openai.APIStatusError as e:
            expect(e.status_code == 502, f"status {e.status_code}")
            expect("tool call" in str(e.message), f"message {e.message!r}")
        else:
            raise CheckFailed("a call still broken after the re-ask was answered")
        # Streaming: the error arrives as an error event (the preamble text went out already).
        try:
            self.stream_calls(f'{tag()} [[sim:tool-fault=bad-json]] [[sim:tool-fault-sticky]] [[tool:get_weather {{"city": "Rome"}}]]')
        except openai.APIError as e:
            expect("tool call" in str(e), f"stream error {e}")
        else:
            raise CheckFailed("the stream ended cleanly although the call stayed broken")
        return "502, and an error event in a stream"

    def tool_choice_variants(self) -> str:
        # required, and the model refuses first: re-asked, then the call.
        t = tag()
        r = self.ask(f'{t} [[sim:tool-fault=refuse]] [[tool:get_time {{"city": "Lima"}}]]', tool_choice="required")
        calls = r.choices[0].message.tool_calls or []
        expect(len(calls) == 1 and calls[0].function.name == "get_time", f"required: {r.choices[0].message}")
        expect(len(self.asks_for(t)) == 2, "required + refusal: no re-ask")
        # A named function.
        r = self.ask(f'{tag()} [[tool:get_time {{"city": "Lima"}}]]',
                     tool_choice={"type": "function", "function": {"name": "get_time"}})
        expect(r.choices[0].message.tool_calls[0].function.name == "get_time", "named")
        # none: the tools are not offered, so the model answers in words.
        t = tag()
        r = self.ask(f'{t} Reply with exactly: no tools here', tool_choice="none")
        expect(not r.choices[0].message.tool_calls, "none: a call")
        expect(r.choices[0].message.content == "no tools here", f"none: {r.choices[0].message.content!r}")
        expect("# Tools" not in self.asks_for(t)[0]["questionText"], "none: tools were described")
        return "required (with a re-ask), named, none"

    def parallel_calls(self) -> str:
        text = f'{tag()} [[tool:get_weather {{"city": "Paris"}}]] [[tool&:get_time {{"city": "Paris"}}]]'
        content, calls, finish = self.stream_calls(text)
        names = [calls[i]["name"] for i in sorted(calls)]
        expect(names == ["get_weather", "get_time"] and finish == "tool_calls", f"parallel: {calls}")
        expect(len({c["id"] for c in calls.values()}) == 2, "ids are not distinct")
        r = self.ask(text.replace(text[:8], tag()), parallel_tool_calls=False)
        expect(len(r.choices[0].message.tool_calls) == 1, "parallel_tool_calls=false kept two calls")
        return "two calls streamed; one with parallel_tool_calls=false"

    def multi_step_loop_reuses_the_session(self) -> str:
        t = tag()
        messages = [{
            "role": "user",
            "content": f'{t} plan [[tool:get_weather {{"city": "Bern"}}]] [[tool:get_time {{"city": "Bern"}}]]',
        }]
        for step in range(3):
            r = self.client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            m = r.choices[0].message
            if not m.tool_calls:
                break
            messages.append(m.model_dump(exclude_none=True))
            for c in m.tool_calls:
                messages.append({"role": "tool", "tool_call_id": c.id,
                                 "content": [{"type": "text", "text": f"{c.function.name} result {step}"}]})
        expect(step == 2, f"the loop ended at step {step}")
        expect(r.choices[0].message.content == "Done. The tool said: get_time result 1",
               f"final {r.choices[0].message.content!r}")
        asks = self.asks_for(t)
        expect(len(asks) == 3, f"{len(asks)} asks")
        sizes = [len(a["questionText"].encode()) for a in asks]
        expect(all(s < 300 for s in sizes[1:]), f"follow-ups are not one step's size: {sizes}")
        expect(all(a["questionText"].startswith("[Tool result]") for a in asks[1:]), "follow-up shape")
        return f"question bytes per step {sizes}"

    def legacy_functions(self) -> str:
        r = self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f'{tag()} [[tool:get_time {{"city": "Kyiv"}}]]'}],
            functions=[TIME["function"]],
        )
        ch = r.choices[0]
        expect(ch.finish_reason == "function_call", f"finish_reason {ch.finish_reason!r}")
        expect(ch.message.function_call.name == "get_time", f"{ch.message}")
        expect(json.loads(ch.message.function_call.arguments) == {"city": "Kyiv"}, "arguments")
        return "function_call"

    def langchain_bind_tools(self) -> str:
        @lc_tool
        def get_weather(city: str) -> str:
            """Current weather of a city."""
            return f"sunny in {city}"

        llm = ChatOpenAI(model=MODEL, base_url=self.base_url, api_key=self.api_key, max_retries=0)
        msg = llm.bind_tools([get_weather]).invoke(f'{tag()} [[tool:get_weather {{"city": "Nice"}}]]')
        expect(len(msg.tool_calls) == 1, f"tool_calls {msg.tool_calls}")
        call = msg.tool_calls[0]
        expect(call["name"] == "get_weather" and call["args"] == {"city": "Nice"}, f"{call}")
        return f"AIMessage.tool_calls {call['name']}({call['args']})"


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
    names = [
        "stream_hermes",
        "non_stream_and_every_syntax",
        "broken_calls_are_reasked",
        "still_broken_is_an_error",
        "tool_choice_variants",
        "parallel_calls",
        "multi_step_loop_reuses_the_session",
        "legacy_functions",
        "langchain_bind_tools",
    ]
    passed = 0
    for name in names:
        try:
            detail = getattr(checks, name)()
            print(f"PASS {name}: {detail}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()
    print(f"{passed}/{len(names)} checks passed")
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
