"""LSP's base protocol, read defensively: bytes in, JSON values (or one reason per bad stretch) out.

pygls' reader trusts its input: it matches ``Content-Length: N\\r\\n`` exactly (so a lower-case
name or LF-only line ends are never seen), reads N bytes whatever N is (``Content-Length:
1000000000000`` dies of MemoryError) and, once a frame is misread, reads every later header in
the middle of a line, so the server goes deaf for good, silently. This parser is what the
transport (``codehone.lsp.transport``) feeds instead, for stdio and TCP alike. It has no I/O, so
any split of the same bytes gives the same events, and the tests fuzz it directly.

The rules:

- Header names are case-insensitive and lines may end in CRLF or LF alone (the spec takes its
  headers from HTTP, whose parsers accept both). Headers other than Content-Length are ignored.
- A message may be at most ``MAX_MESSAGE_BYTES`` (64 MiB). VS Code never hands an extension a
  document over 50 MiB (``TextModel._MODEL_SYNC_LIMIT``: larger ones are not synced to the
  extension host, so no language client can send them), and a ``didOpen`` or full ``didChange``
  of a 50 MiB document is that text JSON-escaped plus a few hundred bytes: 64 MiB is the first
  round number above it, with room for the escaping. A larger Content-Length is refused without
  reading its body. A header line may be at most ``MAX_HEADER_LINE_BYTES`` (64 KiB); real ones
  are a few dozen bytes.
- Anything that is not a frame (no or a bad Content-Length, a refused size, a header line over
  64 KiB, bytes between frames) starts a bad stretch: it is reported once (one ``Unreadable``
  event) and skipped up to the next ``Content-Length:`` header, wherever in a line that starts,
  which is where the next frame begins. A frame whose body is not JSON is reported too; when a
  ``Content-Length:`` header occurs inside that body (the length was too long and the body ran
  into the next message), the bytes from there are read again, so the message after a
  too-long length is not lost.
- Bodies are UTF-8 JSON. Nesting deeper than Python's recursion limit is unreadable, not a
  crash.

Memory is bounded by one message plus one header line, whatever arrives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LINE_BYTES = 64 * 1024

_HEADER_START = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token
_BYTE_COUNT = re.compile(rb"[0-9]{1,20}")
_KEEP = len(b"content-length:") - 1  # a skipped stretch keeps this much: a header may start there


@dataclass(frozen=True)
class Message:
    """One frame's body, decoded: any JSON value (checking it is JSON-RPC is the protocol's job)."""

    value: Any


@dataclass(frozen=True)
class Unreadable:
    """Bytes that held no message: why, in words for the log and the client."""

    reason: str


Event = Message | Unreadable


def _shown(value: bytes, limit: int = 40) -> str:
    text = repr(value[:limit])[2:-1]
    return text + ("..." if len(value) > limit else "")


class FrameParser:
    """Feed it bytes as they arrive; it returns the messages (and problems) they complete."""

    def __init__(
        self,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_header_line_bytes: int = MAX_HEADER_LINE_BYTES,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_header_line_bytes = max_header_line_bytes
        self._buf = bytearray()
        self._start = 0  # where the unread bytes begin in _buf
        self._body_length: int | None = None  # set between a frame's headers and its body
        self._in_headers = False  # some header lines of the next frame were read
        self._lengths: list[bytes] = []  # the Content-Length values of those lines
        self._lost = False  # in a bad stretch that was already reported

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a frame."""
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while self._step(events):
            pass
        if self._start > 65536 or self._start == len(self._buf):
            del self._buf[: self._start]
            self._start = 0
        return events

    def _step(self, events: list[Event]) -> bool:
        if self._body_length is not None:
            return self._read_body(events)
        return self._read_header_line(events)

    def _read_body(self, events: list[Event]) -> bool:
        assert self._body_length is not None
        end = self._start + self._body_length
        if len(self._buf) < end:
            return False
        body = bytes(self._buf[self._start : end])
        self._start = end
        self._body_length = None
        try:
            value = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
            reason = f"a message that is not JSON ({_json_problem(exc)})"
            inner = _HEADER_START.search(body)
            if inner is not None:  # the length ran past the body, into the next message
                self._buf[self._start : self._start] = body[inner.start() :]
                reason += "; reading again from the Content-Length header inside it"
            events.append(Unreadable(reason))
            self._lost = True  # whatever follows up to the next header is the rest of it
            return True
        events.append(Message(value))
        return True

    def _read_header_line(self, events: list[Event]) -> bool:
        buf, start = self._buf, self._start
        newline = buf.find(b"\n", start, start + self.max_header_line_bytes + 1)
        if newline == -1:
            if len(buf) - start <= self.max_header_line_bytes:
                return False  # wait for the rest of the line
            return self._skip_long_line(events)
        header = _HEADER_START.search(buf, start + 1, newline)
        if header is not None:  # bytes, then a header: the next frame starts there
            self._junk(events, "bytes outside any message")
            self._start = header.start()
            return True
        line = bytes(buf[start:newline]).rstrip(b"\r")
        self._start = newline + 1
        if not line.strip():
            if self._in_headers:
                self._end_of_headers(events)
            return True  # (a blank line between frames is harmless)
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not _HEADER_NAME.fullmatch(name):
            self._junk(events, "bytes outside any message")
            return True
        self._in_headers = True
        if name.lower() == b"content-length":
            self._lengths.append(value.strip(b" \t"))
        return True

    def _skip_long_line(self, events: list[Event]) -> bool:
        """A line over the limit: skip to the next header or line end, keeping a tail that may
        be the start of a header."""
        buf, start = self._buf, self._start
        self._junk(events, f"a header line over {self.max_header_line_bytes // 1024} KiB")
        header = _HEADER_START.search(buf, start + 1)
        newline = buf.find(b"\n", start)
        if header is not None and (newline == -1 or header.start() < newline):
            self._start = header.start()
        elif newline != -1:
            self._start = newline + 1
        else:
            self._start = max(start + 1, len(buf) - _KEEP)
        return True

    def _end_of_headers(self, events: list[Event]) -> None:
        lengths = set(self._lengths)
        self._in_headers = False
        self._lengths = []
        if not lengths:
            self._junk(events, "a message without a Content-Length header")
            return
        if len(lengths) > 1:
            self._junk(events, "a message with conflicting Content-Length headers")
            return
        value = lengths.pop()
        if not _BYTE_COUNT.fullmatch(value):
            if value.isdigit():
                self._junk(events, f"a Content-Length of {len(value)} digits")
            else:
                self._junk(events, f"a Content-Length that is not a byte count: '{_shown(value)}'")
            return
        length = int(value)
        if length > self.max_message_bytes:
            limit = self.max_message_bytes / (1024 * 1024)
            self._junk(events, f"a message of {length} bytes, over the {limit:g} MiB limit")
            return
        self._body_length = length
        self._lost = False

    def _junk(self, events: list[Event], reason: str) -> None:
        """Bytes that are not a frame: report the first of a stretch, then skip quietly."""
        self._in_headers = False
        self._lengths = []
        if not self._lost:
            events.append(Unreadable(f"{reason}: skipped to the next Content-Length header"))
            self._lost = True


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc).split(":")[0]
