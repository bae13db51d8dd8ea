"""The questions a gateway's simulators were asked, read from their request logs
(`<work dir>/<instance>/logs/sim-requests.jsonl`), the same in both Lingma dialects: a legacy
`chat/ask`'s params as sent, and an ACP `session/prompt` in the same shape (`questionText`,
`sessionId`, `requestId`), so the scripts that check what reached Lingma need not know which
dialect the simulators spoke (the Rust harness's `asks()` does the same).
"""

from __future__ import annotations

import glob
import json
import os


def ask_of(record: dict) -> dict | None:
    """The ask a request-log record carries, or None when it is not one."""
    params = record.get("params") or {}
    method = record.get("method")
    if method == "chat/ask":
        return params
    if method == "session/prompt":
        blocks = params.get("prompt") or []
        text = "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        meta = params.get("_meta") or {}
        return {
            "questionText": text,
            "sessionId": params.get("sessionId"),
            "requestId": meta.get("ai-coding/request-id"),
        }
    return None


def asks(work_dir: str) -> list[dict]:
    """Every ask of every instance under `work_dir`, oldest first."""
    out = []
    for path in sorted(glob.glob(os.path.join(work_dir, "*", "logs", "sim-requests.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                ask = ask_of(record)
                if ask is not None:
                    out.append((record.get("ts", 0), ask))
    out.sort(key=lambda x: x[0])
    return [a for _, a in out]
