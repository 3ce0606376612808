"""Seeded mutations of LSP frames, for the transport's fuzz tests.

hypothesis is not installed here, so cases come from a seeded ``random.Random``: the same seed
gives the same cases, and a failing case is named by its seed, index and kind. Each mutation
is something a broken or hostile client could send: truncations, duplicated or garbled
headers, bad and huge lengths, random bytes, unicode, deep nesting, over-long header lines,
values that are not requests.

A mutation never claims more than ``MAX_SHORTFALL`` bytes beyond what it sends (or else a
length over the server's limit), so ``RESYNC`` after it always completes whatever body the
server is still waiting for; then a well-formed request must be answered. (A length under the
limit but far beyond the bytes sent makes any reader wait for those bytes: that is LSP, not a
bug, so such lengths are left out.)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from lsp_wire import body_frame, frame

from codehone.lsp.framing import MAX_MESSAGE_BYTES

MAX_SHORTFALL = 512
RESYNC = b"\r\n" * 1024  # blank lines: harmless between frames, and they fill a short body
HUGE_LENGTHS = [MAX_MESSAGE_BYTES + 1, 10**12, 2**64, 10**30, 10**200]
BAD_LENGTHS = [b"-5", b"-0", b"abc", b"", b" ", b"0x10", b"1e3", b"12a", "٣".encode(), b"+5"]
UNICODE = ["é", "😀", "\u2028", "\ufeff", "中文", "\u0000", "\ud7ff", "ﬃ"]


def base_messages(uri: str = "file:///fuzz.py") -> list[dict[str, Any]]:
    """Well-formed messages to mutate (no initialize, shutdown or exit: a mutation must never
    end the session it probes)."""
    position = {"line": 1, "character": 4}
    document = {"uri": uri}
    return [
        {
            "jsonrpc": "2.0",
            "id": 1000,
            "method": "textDocument/completion",
            "params": {"textDocument": document, "position": position},
        },
        {
            "jsonrpc": "2.0",
            "id": 1001,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": document,
                "position": position,
                "context": {"triggerKind": 1},
            },
        },
        {"jsonrpc": "2.0", "id": 1002, "method": "codehone/status", "params": {}},
        {"jsonrpc": "2.0", "id": 1003, "method": "codehone/nope", "params": {"x": [1, "é"]}},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1000}},
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": {"uri": uri, "version": 7},
                "contentChanges": [{"text": "def f(x):\n    return x + 1\n"}],
            },
        },
    ]


def _split(data: bytes) -> tuple[bytes, bytes]:
    header, _, body = data.partition(b"\r\n\r\n")
    return header, body


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One mutation of a well-formed frame: (its kind, the bytes)."""
    header, body = _split(data)
    kind = rng.choice(KINDS)
    if kind == "truncate":
        return kind, data[: rng.randrange(len(data))]
    if kind == "duplicate header":
        other = len(body) if rng.random() < 0.5 else len(body) + rng.randint(1, 50)
        return kind, header + b"\r\nContent-Length: %d\r\n\r\n" % other + body
    if kind == "header case":
        name = "".join(rng.choice((c.upper(), c.lower())) for c in "content-length").encode()
        return kind, body_frame(body, name=name)
    if kind == "LF only":
        return kind, body_frame(body, eol=b"\n")
    if kind == "no blank line":
        return kind, header + b"\r\n" + body
    if kind == "no colon":
        return kind, b"Content-Length %d\r\n\r\n" % len(body) + body
    if kind == "no header":
        return kind, body
    if kind == "other header only":
        return kind, b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body
    if kind == "length off":
        length = max(0, len(body) + rng.randint(-len(body), MAX_SHORTFALL))
        return kind, b"Content-Length: %d\r\n\r\n" % length + body
    if kind == "bad length":
        return kind, b"Content-Length: " + rng.choice(BAD_LENGTHS) + b"\r\n\r\n" + body
    if kind == "huge length":
        return kind, b"Content-Length: %d\r\n\r\n" % rng.choice(HUGE_LENGTHS) + body
    if kind == "random bytes":
        junk = rng.randbytes(rng.randint(1, 300))
        at = rng.randrange(len(data) + 1)
        return kind, data[:at] + junk + data[at:]
    if kind == "random bytes only":
        return kind, rng.randbytes(rng.randint(1, 300))
    if kind == "unicode in body":
        text = body.decode("utf-8")
        at = rng.randrange(len(text) + 1)
        new = (text[:at] + rng.choice(UNICODE) + text[at:]).encode("utf-8", "surrogatepass")
        return kind, body_frame(new)
    if kind == "unicode in header":
        return kind, rng.choice(UNICODE).encode("utf-8", "surrogatepass") + data
    if kind == "invalid UTF-8":
        at = rng.randrange(len(body) + 1)
        return kind, body_frame(
            body[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + body[at:]
        )
    if kind == "deep nesting":
        depth = rng.choice([1000, 10_000, 100_000])
        return kind, body_frame(b"[" * depth + b"]" * depth)
    if kind == "not an object":
        return kind, body_frame(rng.choice([b"5", b"null", b'"x"', b"[]", b"[" + body + b"]"]))
    if kind == "long header line":
        return kind, b"X-Junk: " + b"a" * rng.choice([65_000, 70_000, 200_000]) + b"\r\n" + data
    assert kind == "two at once"
    first, second = mutate(rng, data), mutate(rng, data)
    return f"{first[0]} + {second[0]}", first[1] + second[1]


KINDS = [
    "truncate",
    "duplicate header",
    "header case",
    "LF only",
    "no blank line",
    "no colon",
    "no header",
    "other header only",
    "length off",
    "bad length",
    "huge length",
    "random bytes",
    "random bytes only",
    "unicode in body",
    "unicode in header",
    "invalid UTF-8",
    "deep nesting",
    "not an object",
    "long header line",
    "two at once",
]


def cases(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` mutated frames from ``seed``."""
    rng = random.Random(seed)
    frames = [frame(message) for message in base_messages()]
    for _ in range(count):
        yield mutate(rng, rng.choice(frames))
