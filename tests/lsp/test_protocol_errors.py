"""The server answers every request, even bad ones, with the JSON-RPC error the spec names,
keeps serving afterwards, and exits when the editor that started it dies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lsp_wire import EXIT, INITIALIZED, frame, initialize, read_frame, serve_command, shutdown


class RawSession:
    """The real server over stdio, with raw bytes in and parsed messages out."""

    def __init__(self, model: Path) -> None:
        self.process = subprocess.Popen(
            serve_command(model),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                _, message = read_frame(self.process.stdout)
            except (EOFError, ValueError, OSError):
                return
            with self._lock:
                self.messages.append(message)
                self._lock.notify_all()

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
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def completion(request_id: int, uri: str = "file:///a.py") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "textDocument/completion",
        "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
    }


def test_bad_requests_get_errors_and_the_server_keeps_serving(tiny_model_dir: Path):
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(completion(100)))
        assert session.by_id(100)["error"]["code"] == -32002  # before initialize

        session.send(frame(initialize(1)))
        assert "capabilities" in session.by_id(1)["result"]
        session.send(frame(INITIALIZED))

        session.send_body(b'{"jsonrpc": "2.0", "id": 5, "method": "textDocument/completion", ')
        parse_error = session.answer(lambda m: m.get("error", {}).get("code") == -32700)
        assert "data" not in parse_error["error"]

        session.send_body(
            b'{"jsonrpc": "2.0", "id": 6, "method": "textDocument/completion", '
            b'"params": {"textDocument": 3}}'
        )
        assert session.by_id(6)["error"]["code"] == -32602  # invalid params are answered

        session.send_body(b'{"jsonrpc": "2.0", "id": 7, "method": "codehone/nope", "params": {}}')
        assert session.by_id(7)["error"]["code"] == -32601

        session.send(frame(completion(8)))  # unknown document: empty, not an error
        assert session.by_id(8)["result"]["items"] == []

        session.send(frame(shutdown(9)))
        assert session.by_id(9)["result"] is None
        session.send(frame(completion(10)))
        assert session.by_id(10)["error"]["code"] == -32600  # after shutdown
        session.send(frame(EXIT))
        assert session.process.wait(timeout=30) == 0
        for message in session.messages:  # no tracebacks or local paths reach the client
            assert "Traceback" not in str(message.get("error", ""))
            assert "data" not in message.get("error", {})
    finally:
        session.close()


def test_server_exits_when_the_editor_dies(tiny_model_dir: Path):
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(initialize(1, processId=editor.pid)))
        assert "capabilities" in session.by_id(1)["result"]
        editor.wait()
        assert session.process.wait(timeout=30) == 0  # it noticed and left on its own
    finally:
        session.close()
