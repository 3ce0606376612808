"""A soak over stdio: a few thousand mixed messages (completion, inline completion, status,
unknown methods, cancels, full-text changes, malformed frames), up to WINDOW requests in flight.
Every request is answered exactly once, and the server's memory stays flat.

The memory check compares VmRSS after a warm-up (model arenas, caches and pygls' state are
sized by then) with VmRSS at the end, ``MESSAGES - WARM_UP`` messages later. The bound,
``RSS_GROWTH_LIMIT_MIB``, is generous for a noisy machine (allocator slack, a grown buffer or
two), while a leak of anything per message breaks it: the full-text changes after the warm-up alone
carry over twice the bound (about 60 MiB: some 250 changes of ``TEXT_KIB``), so keeping each
version, each message's parsed params or frame buffer, or anything per request that holds
them, goes far past it.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from lsp_wire import INITIALIZED, RawSession, body_frame, frame, initialize

MESSAGES = 3000
WARM_UP = 500
WINDOW = 16
RSS_GROWTH_LIMIT_MIB = 24
TEXT_KIB = 256
URI = "file:///soak.py"
MALFORMED = [
    body_frame(b'{"jsonrpc": "2.0", "id": '),  # well framed, not JSON
    b"Content-Type: application/vscode-jsonrpc\r\n\r\n{}",  # no Content-Length
    b"Content-Length: 1000000000000\r\n\r\n{}",  # over the limit
    b"Content-Length: -1\r\n\r\n{}",
    frame({"jsonrpc": "2.0", "id": {"a": 1}, "method": "codehone/status"}),
    frame([{"jsonrpc": "2.0", "method": "initialized", "params": {}}]),
    body_frame(b"[" * 10_000 + b"]" * 10_000),
]


HEAD = "def main():\n    value = "  # the cursor is at its end, where a completion is offered
CURSOR = {"line": 1, "character": len("    value = ")}


def document(version: int) -> str:
    """A Python file of about TEXT_KIB KiB, different in each version. (The cursor is near the
    top: what the soak measures is the wire, not how positions deep in a big file convert.)"""
    line = f"\n\ndef function_{version}(argument):\n    return argument + {version}"
    return HEAD + line * (TEXT_KIB * 1024 // len(line))


class Soak:
    def __init__(self, session: RawSession, seed: int) -> None:
        self.session = session
        self.rng = random.Random(seed)
        self.text = document(0)
        self.version = 0
        self.next_id = 100
        self.sent: list[int] = []  # request ids, in order
        self.waited = 0  # requests before this index are answered
        self.changes = 0

    def request(self, method: str, params: Any) -> bytes:
        self.next_id += 1
        self.sent.append(self.next_id)
        return frame({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})

    def message(self) -> bytes:
        doc = {"textDocument": {"uri": URI}, "position": CURSOR}
        roll = self.rng.random()
        if roll < 0.25:
            return self.request("textDocument/completion", doc)
        if roll < 0.45:
            return self.request(
                "textDocument/inlineCompletion", {**doc, "context": {"triggerKind": 1}}
            )
        if roll < 0.60:
            return self.request("codehone/status", {})
        if roll < 0.70:
            return self.request("codehone/nope", {"x": self.next_id})
        if roll < 0.80:
            target = self.rng.choice(self.sent[-WINDOW:]) if self.sent else 1
            return frame({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": target}})
        if roll < 0.90:
            self.version += 1
            self.changes += 1
            self.text = document(self.version)
            change = {"textDocument": {"uri": URI, "version": self.version}}
            change["contentChanges"] = [{"text": self.text}]  # type: ignore[assignment]
            return frame({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change})
        return self.rng.choice(MALFORMED)

    def run(self, count: int) -> None:
        for _ in range(count):
            while len(self.sent) - self.waited >= WINDOW:
                self.session.by_id(self.sent[self.waited])
                self.waited += 1
            self.session.send(self.message())
        self.drain()

    def drain(self) -> None:
        for request_id in self.sent[self.waited :]:
            self.session.by_id(request_id)
        self.waited = len(self.sent)


def test_soak_every_request_answered_and_memory_flat(tiny_model_dir: Path, tmp_path: Path):
    log_file = tmp_path / "serve.log"
    session = RawSession(tiny_model_dir, extra=["--log-file", str(log_file)])
    try:
        session.send(frame(initialize(1)))
        session.by_id(1)
        soak = Soak(session, seed=7)
        opened = {"uri": URI, "languageId": "python", "version": 0, "text": soak.text}
        session.send(
            frame(INITIALIZED)
            + frame(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": opened},
                }
            )
        )
        soak.run(WARM_UP)
        warm_kib, warm_changes = session.rss_kib(), soak.changes
        soak.run(MESSAGES - WARM_UP)
        end_kib = session.rss_kib()

        answers: dict[Any, int] = {}
        for message in session.messages:
            if "result" in message or "error" in message:
                key = message.get("id")
                if isinstance(key, int | str):
                    answers[key] = answers.get(key, 0) + 1
        assert all(answers.get(i) == 1 for i in soak.sent), "a request was not answered once"
        assert set(answers) == {1, *soak.sent}  # and nothing else was answered
        leakable_mib = (soak.changes - warm_changes) * TEXT_KIB / 1024
        assert leakable_mib > 2 * RSS_GROWTH_LIMIT_MIB  # a leak of them would show
        growth_mib = (end_kib - warm_kib) / 1024
        print(f"VmRSS {warm_kib / 1024:.1f} MiB after warm-up, {end_kib / 1024:.1f} at the end")
        assert growth_mib < RSS_GROWTH_LIMIT_MIB, f"VmRSS grew {growth_mib:.1f} MiB"

        decoded = re.findall(r"ompletion model=\S+ tokens=\d+\+([1-9]\d*)", log_file.read_text())
        assert len(decoded) > 100  # the model really ran (most are cancelled by newer ones)

        session.shutdown_and_exit()
        assert session.process.wait(timeout=30) == 0
    finally:
        session.close()
