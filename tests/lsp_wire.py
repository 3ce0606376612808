"""Raw LSP framing for tests that must send bytes no client would and see exactly what the server
writes to stdout: Content-Length frames in, every byte out. Everything else goes through the
one LSP client (``codehone.check.client``, helpers in ``lsp_session``); the server command is
that client's ``serve_command``."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from codehone.check.client import serve_command


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def parse_frames(stream: bytes) -> list[dict[str, Any]]:
    """Parse a whole stdout capture; fail on any byte that is not a framed JSON-RPC message."""
    messages = []
    rest = stream
    while rest:
        header, separator, rest = rest.partition(b"\r\n\r\n")
        assert separator, f"stdout has bytes outside LSP framing: {header[:200]!r}"
        length = None
        for line in header.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        assert length is not None, f"frame without Content-Length: {header!r}"
        body, rest = rest[:length], rest[length:]
        message = json.loads(body)
        assert message.get("jsonrpc") == "2.0", message
        messages.append(message)
    return messages


def read_frame(stream: Any) -> dict[str, Any]:
    """Read one framed message from a binary stream."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("server closed stdout")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("a frame without Content-Length")
    return json.loads(stream.read(length))


def initialize(request_id: int = 1, **params: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"processId": None, "rootUri": None, "capabilities": {}, **params},
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "initialized", "params": {}}


def shutdown(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "shutdown", "params": None}


EXIT = {"jsonrpc": "2.0", "method": "exit", "params": None}


class _Recording:
    """A binary stream that keeps every byte read from it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.data = bytearray()

    def readline(self) -> bytes:
        line = self.stream.readline()
        self.data += line
        return line

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.data += chunk
        return chunk


class RawSession:
    """The real server over stdio, with raw bytes in and parsed messages out; everything it
    writes to stdout is kept (``stdout``), framed or not."""

    def __init__(self, model: Path) -> None:
        self.process = subprocess.Popen(
            serve_command(model),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        self._stdout = _Recording(self.process.stdout)
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                message = read_frame(self._stdout)
            except EOFError:
                return
            except (ValueError, OSError):  # not a frame: keep the rest of it for ``stdout``
                self._stdout.read()
                return
            with self._lock:
                self.messages.append(message)
                self._lock.notify_all()

    @property
    def stdout(self) -> bytes:
        """Every byte the server has written to stdout (all of it once it has exited)."""
        if self.process.poll() is not None:
            self._reader.join(timeout=30)
        return bytes(self._stdout.data)

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send_body(self, body: bytes) -> None:
        self.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def answer(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"no matching answer; got {self.messages}"
                self._lock.wait(left)

    def by_id(self, request_id: Any) -> dict[str, Any]:
        return self.answer(lambda m: m.get("id") == request_id and ("result" in m or "error" in m))

    def close(self) -> None:
        """Kill the server if it is still running (a failed test never sent ``exit``)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
