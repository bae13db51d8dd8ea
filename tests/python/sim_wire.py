#!/usr/bin/env python3
"""Talks to a running Lingma simulator byte for byte as the Lingma wire protocol describes
(shared/lingma-protocol.md §2, §3, §9), independently of the Rust codec:

  * every message is `Content-Length: N\\r\\n\\r\\n` + exactly N bytes of UTF-8 JSON, N in bytes,
    one frame per WebSocket text message;
  * initialize (int id) -> window/logMessage notification + InitializeResult;
  * auth/status and config/queryModels (string ids echoed);
  * chat/ask streams, every id-bearing callback acked (true for chat/answer and chat/finish,
    null otherwise), exact callback order, chat/finish, a follow-up turn in the same session;
  * a bare JSON message is ignored, unknown methods fail with -32601.

Usage: sim_wire.py --port WS_PORT [--timeout SECONDS]
Exits 0 and prints "sim_wire.py: OK" on success; exits 1 with a message on the first mismatch.
Needs only the standard library and the `websockets` package.
"""

import argparse
import asyncio
import json
import re
import sys
import uuid

try:
    from websockets.asyncio.client import connect
except ImportError:  # websockets < 13
    try:
        from websockets import connect  # type: ignore
    except ImportError:
        print("sim_wire.py: the python package 'websockets' is not installed "
              "(pip install -r tests/requirements.txt)", file=sys.stderr)
        sys.exit(2)


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


HEADER = re.compile(rb"^Content-Length: (\d+)\r\n\r\n")


def encode(obj):
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return (b"Content-Length: %d\r\n\r\n" % len(body) + body).decode("utf-8")


def decode_message(raw):
    """One WebSocket message from the server must hold exactly one well-formed frame."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    m = HEADER.match(data)
    check(m is not None, f"message does not start with a Content-Length header: {data[:60]!r}")
    n = int(m.group(1))
    body = data[m.end():]
    check(len(body) == n, f"Content-Length {n} but {len(body)} body bytes: {data[:80]!r}")
    msg = json.loads(body.decode("utf-8"))
    check(msg.get("jsonrpc") == "2.0", f"not JSON-RPC 2.0: {msg}")
    return msg


class Conn:
    def __init__(self, ws, timeout):
        self.ws = ws
        self.timeout = timeout
        self.next_id = 0

    async def send(self, obj):
        await self.ws.send(encode(obj))

    async def recv(self):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), self.timeout)
        except asyncio.TimeoutError:
            raise Mismatch("timed out waiting for a message from the simulator")
        return decode_message(raw)

    async def request(self, method, params, id_=None):
        if id_ is None:
            self.next_id += 1
            id_ = self.next_id
        await self.send({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})
        return id_

    async def ack(self, msg):
        result = True if msg["method"] in ("chat/answer", "chat/finish") else None
        await self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    async def call(self, method, params, id_=None):
        id_ = await self.request(method, params, id_)
        while True:
            msg = await self.recv()
            if "method" not in msg:
                check(msg.get("id") == id_, f"response to {method}: expected id {id_!r}, got {msg}")
                return msg
            if "id" in msg:
                await self.ack(msg)


def ask_params(request_id, session_id, question):
    return {
        "requestId": request_id, "chatTask": "FREE_INPUT", "chatContext": None,
        "sessionId": session_id, "codeLanguage": "", "isReply": False, "source": 1,
        "questionText": question, "stream": True, "taskDefinitionType": "", "extra": None,
        "sessionType": "chat", "targetAgent": "", "pluginPayloadConfig": None, "mode": "normal",
        "shellType": "", "customModel": None,
    }


async def chat(conn, request_id, session_id, question):
    resp = await conn.call("chat/ask", ask_params(request_id, session_id, question))
    check(resp.get("result") == {"success": True, "errorCode": "", "errorMessage": ""},
          f"chat/ask result: {resp}")
    stream = []
    while True:
        msg = await conn.recv()
        check("method" in msg and isinstance(msg.get("id"), int),
              f"callbacks must be requests with integer ids: {msg}")
        await conn.ack(msg)
        stream.append(msg)
        if msg["method"] == "chat/finish":
            return stream


def check_stream(stream, request_id, expect_title, expected_answer):
    methods = [m["method"] for m in stream]
    check(methods[0] == "chat/process_step_callback"
          and stream[0]["params"]["step"] == "step_start"
          and stream[0]["params"]["status"] == "done", f"stream must open with step_start: {methods}")
    i = 1
    if expect_title:
        check(methods[1] == "session/title/update", f"title update expected second: {methods}")
        check(stream[1]["params"]["sessionTitle"], "empty session title")
        i = 2
    else:
        check("session/title/update" not in methods, f"no title update on a follow-up: {methods}")
    check(methods[-2] == "chat/process_step_callback"
          and stream[-2]["params"]["step"] == "step_end", f"step_end before finish: {methods}")
    check(methods[-1] == "chat/finish", f"stream must end with chat/finish: {methods}")
    answers = stream[i:-2]
    check(answers and all(m["method"] == "chat/answer" for m in answers),
          f"only chat/answer between the steps: {methods}")
    session_id = stream[0]["params"]["sessionId"]
    check(session_id, "callbacks carry a sessionId")
    ids = set()
    text = ""
    for m in stream:
        p = m["params"]
        check(p["sessionId"] == session_id, f"sessionId changed mid-stream: {m}")
        if m["method"] != "session/title/update":
            check(p["requestId"] == request_id, f"requestId mismatch: {m}")
        check(m["id"] not in ids, f"duplicate server id {m['id']}")
        ids.add(m["id"])
        if m["method"] == "chat/answer":
            for k in ("text", "overwrite", "isFiltered", "timestamp", "extra"):
                check(k in p, f"chat/answer lacks {k}: {m}")
            check(p["extra"].get("sessionType") == "chat", f"extra.sessionType: {m}")
            text = p["text"] if p["overwrite"] else text + p["text"]
    check(any(m["params"]["text"] == "" for m in answers), "expected empty deltas as real Lingma sends")
    check(text == expected_answer, f"answer {text!r} != {expected_answer!r}")
    fin = stream[-1]["params"]
    check(fin["reason"] == "success" and fin["statusCode"] == 200, f"finish: {fin}")
    check(fin["fullAnswer"] == expected_answer, f"fullAnswer: {fin}")
    return session_id


async def run(port, timeout):
    async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        conn = Conn(ws, timeout)

        # Any method before initialize is refused.
        r = await conn.call("ping", {}, id_=100)
        check(r.get("error", {}).get("code") == -32002, f"ping before initialize: {r}")

        conn.next_id = 0
        await conn.request("initialize", {
            "processId": None, "clientInfo": {"name": "sim_wire.py", "version": "1"},
            "rootUri": "file:///tmp", "capabilities": {},
            "workspaceFolders": [{"uri": "file:///tmp", "name": "tmp"}],
        })
        note = await conn.recv()
        check(note.get("method") == "window/logMessage" and "id" not in note,
              f"initialize must emit a window/logMessage notification first: {note}")
        init = await conn.recv()
        check(init.get("id") == 1, f"initialize response id: {init}")
        check(init.get("result") == {"capabilities": {},
                                     "serverInfo": {"name": "lingma", "version": "2.11.1"}},
              f"InitializeResult: {init}")
        await conn.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

        st = await conn.call("auth/status", {}, id_="auth-1")
        s = st["result"]
        check(s["status"] == 2 and s["whitelist"] == 3, f"auth/status: {s}")
        check(s["token"].startswith("pt-") and s["refreshToken"].startswith("rt-"), f"tokens: {s}")

        models = (await conn.call("config/queryModels", {}, id_="models-1"))["result"]
        check(set(models) == {"chat", "assistant", "developer", "inline", "quest"},
              f"scenes: {sorted(models)}")
        default = [m for m in models["chat"] if m["isDefault"]]
        check(len(default) == 1 and default[0]["key"] == "auto", f"chat default: {default}")
        for m in models["chat"]:
            check(m["format"] == "openai" and m["source"] == "system", f"model item: {m}")

        rid1 = uuid.uuid4().hex
        s1 = await chat(conn, rid1, "", "Reply with exactly: pong 通义灵码")
        sid = check_stream(s1, rid1, True, "pong 通义灵码")

        rid2 = uuid.uuid4().hex
        s2 = await chat(conn, rid2, sid, "second turn")
        check(check_stream(s2, rid2, False, "echo: second turn") == sid, "follow-up kept the session")

        sess = (await conn.call("chat/getSessionById", {"sessionId": sid}))["result"]
        recs = sess["chatRecords"]
        check([r["requestId"] for r in recs] == [rid1, rid2], f"session records: {recs}")
        check(recs[0]["question"] == "Reply with exactly: pong 通义灵码", f"record: {recs[0]}")

        # A bare JSON message is ignored: the next answer is the framed ping's.
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": "bare", "method": "ping"}))
        r = await conn.call("ping", {}, id_="after-bare")
        check(r.get("result") == {"success": True}, f"ping: {r}")

        r = await conn.call("no/such/method", {})
        check(r.get("error", {}).get("code") == -32601, f"unknown method: {r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="the simulator's WebSocket port")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for any message")
    args = ap.parse_args()
    try:
        asyncio.run(run(args.port, args.timeout))
    except Mismatch as e:
        print(f"sim_wire.py: MISMATCH: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, json.JSONDecodeError) as e:
        print(f"sim_wire.py: ERROR: {e!r}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # websockets' ConnectionClosed and the like
        print(f"sim_wire.py: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("sim_wire.py: OK")


if __name__ == "__main__":
    main()
