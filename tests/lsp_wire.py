"""Raw LSP framing for tests that must send bytes no client would and see exactly what the server
writes: Content-Length frames in, every byte out, over stdio (``RawSession``) or TCP
(``TcpClient``). Everything else goes through the one LSP client (``codehone.check.client``,
helpers in ``lsp_session``); the server command is that client's ``serve_command``."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from codehone.check.client import serve_command


def body_frame(body: bytes, name: bytes = b"Content-Length", eol: bytes = b"\r\n") -> bytes:
    """``body`` framed (``name`` and ``eol`` let a test garble the header)."""
    return name + b": %d" % len(body) + eol + eol + body


def frame(message: Any) -> bytes:
    return body_frame(json.dumps(message).encode("utf-8"))


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


class RawClient:
    """Raw bytes out and parsed messages in, over a byte stream from the server (``incoming``)
    and a way to send it bytes; everything read is kept (``received``), framed or not."""

    def __init__(self, incoming: IO[bytes], send: Callable[[bytes], None]) -> None:
        self._incoming = _Recording(incoming)
        self._send = send
        self.messages: list[dict[str, Any]] = []
        self.answers: dict[Any, dict[str, Any]] = {}  # the responses, by (hashable) id
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                message = read_frame(self._incoming)
            except (EOFError, OSError):
                break
            except ValueError:  # not a frame: keep the rest of it for ``received``
                with contextlib.suppress(OSError):
                    self._incoming.read()
                break
            with self._lock:
                self.messages.append(message)
                msg_id = message.get("id")
                if ("result" in message or "error" in message) and isinstance(
                    msg_id, int | str | None
                ):
                    self.answers.setdefault(msg_id, message)
                self._lock.notify_all()
        with self._lock:
            self.closed = True
            self._lock.notify_all()

    closed = False  # the server closed its end

    def received(self) -> bytes:
        """Every byte read from the server so far (all of them once it has closed)."""
        if self.closed:
            self._reader.join(timeout=30)
        return bytes(self._incoming.data)

    def send(self, data: bytes) -> None:
        self._send(data)

    def send_body(self, body: bytes) -> None:
        self.send(body_frame(body))

    def answer(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"no matching answer; got {self.messages[-20:]}"
                self._lock.wait(left)

    def by_id(self, request_id: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while request_id not in self.answers:
                left = deadline - time.monotonic()
                assert left > 0 and not self.closed, (
                    f"no answer to {request_id!r}; the last messages: {self.messages[-5:]}"
                )
                self._lock.wait(min(left, 1.0))
            return self.answers[request_id]

    def exchange(self, data: bytes, marker_id: str) -> list[dict[str, Any]]:
        """Send ``data`` and then a ``codehone/status`` request with id ``marker_id``: the
        messages that arrived in between (the server answers in order what it answers at once)."""
        with self._lock:
            start = len(self.messages)
        self.send(data + frame(status_request(marker_id)))
        marker = self.by_id(marker_id)
        with self._lock:
            return [m for m in self.messages[start:] if m is not marker]

    def shutdown_and_exit(self, request_id: Any = "shutdown") -> None:
        """A session's clean end: ``shutdown``, answered with null, then ``exit``."""
        self.send(frame(shutdown(request_id)))
        assert self.by_id(request_id)["result"] is None
        self.send(frame(EXIT))

    def wait_closed(self, timeout: float = 30) -> None:
        self._reader.join(timeout)
        assert self.closed, "the server did not close the connection"


def status_request(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "codehone/status", "params": {}}


class RawSession(RawClient):
    """The real server over stdio (``serve_command(model)`` and ``extra``, or ``command``)."""

    def __init__(
        self, model: Path | None, extra: Sequence[str] = (), command: list[str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            command or serve_command(model, extra=extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        stdin = self.process.stdin

        def send(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        super().__init__(self.process.stdout, send)

    @property
    def stdout(self) -> bytes:
        """Every byte the server has written to stdout (all of it once it has exited)."""
        if self.process.poll() is not None:
            self._reader.join(timeout=30)
        return bytes(self._incoming.data)

    def rss_kib(self) -> int:
        """The server's resident memory (VmRSS in /proc/PID/status), in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]

    def close(self) -> None:
        """Kill the server if it is still running (a failed test never sent ``exit``)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class TcpClient(RawClient):
    """A connection to ``codehone serve --tcp`` on 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.settimeout(None)
        super().__init__(self.socket.makefile("rb"), self.socket.sendall)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
