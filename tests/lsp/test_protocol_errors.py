"""The server answers every request, even bad ones, with the JSON-RPC error the spec names,
keeps serving afterwards, and exits when the editor that started it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from lsp_wire import EXIT, INITIALIZED, RawSession, frame, initialize, shutdown


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
