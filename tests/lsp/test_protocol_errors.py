"""The server answers every request, even bad ones, with the JSON-RPC error the spec names,
keeps serving afterwards, refuses a second initialize, exits with the spec's status, and exits
when the editor that started it dies (or, for a processId that names no process, its parent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsp_wire import (
    EXIT,
    INITIALIZED,
    RawSession,
    body_frame,
    frame,
    initialize,
    parse_frames,
    shutdown,
)

from codehone.check.client import serve_command


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


def request(request_id: Any, method: str, **fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **fields}


def test_every_request_gets_an_answer(tiny_model_dir: Path):
    """Requests pygls left unanswered get a result or the JSON-RPC error that fits; what is not
    a request with a usable id is answered with id null. One answer each, none after."""
    deep = b"[" * 100_000 + b"]" * 100_000
    cases: list[tuple[bytes, Any, int | None]] = [  # (what is sent, the id answered, error code)
        (frame(request(5, "codehone/status")), 5, None),  # no params: they are optional
        (frame(request(6, "codehone/nope")), 6, -32601),
        (frame(request({"a": 1}, "codehone/status", params={})), None, -32600),
        (frame(request([1], "codehone/status", params={})), None, -32600),
        (frame(request(7, "codehone/status", params={}, extra=1)), 7, None),
        (frame([request(8, "codehone/status", params={}), INITIALIZED]), 8, -32600),  # batch
        (frame([]), None, -32600),
        (frame({"id": 9}), 9, -32600),  # no method, no jsonrpc
        (frame(request(10, "exit")), 10, -32600),  # a notification sent as a request
        (frame(request(11, "textDocument/completion", params=3)), 11, -32600),
        (frame(request(12, "textDocument/completion", params={})), 12, -32602),
        (frame("just a string"), None, -32600),
        (body_frame(deep), None, -32700),
        (body_frame(b'{"jsonrpc": "2.0", "id": 13, "method": "codehone/status"'), None, -32700),
    ]
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(initialize(1)))
        session.by_id(1)
        session.send(frame(INITIALIZED))
        for index, (data, answer_id, code) in enumerate(cases):
            answers = session.exchange(data, f"marker-{index}")
            assert len(answers) == 1, (index, answers)
            assert answers[0]["id"] == answer_id, (index, answers)
            if code is None:
                assert "result" in answers[0], (index, answers)
            else:
                assert answers[0]["error"]["code"] == code, (index, answers)
                assert "data" not in answers[0]["error"]
        session.shutdown_and_exit()
        assert session.process.wait(timeout=30) == 0
    finally:
        session.close()


def test_exit_without_shutdown_exits_1(tiny_model_dir: Path):
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(initialize(1)))
        session.by_id(1)
        session.send(frame(EXIT))
        assert session.process.wait(timeout=30) == 1  # the spec's status for it
        parse_frames(session.stdout)
    finally:
        session.close()


def test_a_second_initialize_is_refused_and_the_session_goes_on(tiny_model_dir: Path):
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(initialize(1, initializationOptions={"debounceMs": 7})))
        assert "capabilities" in session.by_id(1)["result"]
        session.send(frame(INITIALIZED))
        session.send(frame(initialize(2, initializationOptions={"debounceMs": 9})))
        assert session.by_id(2)["error"]["code"] == -32600
        session.send(frame(request(3, "codehone/status")))
        assert session.by_id(3)["result"]["options"]["debounce_ms"] == 7  # the first one's
        session.shutdown_and_exit()
        assert session.process.wait(timeout=30) == 0
    finally:
        session.close()


# A parent between the test and the server: the server's stdin and stdout are still the test's
# pipes, and killing this parent orphans the server.
WRAPPER = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)"


@pytest.mark.parametrize("process_id", [-1, 2**40, 0])
def test_a_bad_process_id_is_logged_and_the_parent_is_watched(
    process_id: int, tiny_model_dir: Path, tmp_path: Path
):
    log_file = tmp_path / "serve.log"
    serve = serve_command(tiny_model_dir, extra=["--log-file", str(log_file)])
    session = RawSession(None, command=[sys.executable, "-c", WRAPPER, *serve])
    try:
        session.send(frame(initialize(1, processId=process_id)))
        assert "capabilities" in session.by_id(1)["result"]
        session.send(frame(request(2, "codehone/status", params={})))
        session.by_id(2)
        session.process.kill()  # the server's parent dies ...
        session.wait_closed(timeout=30)  # ... and the server leaves: its stdout closes
        lines = [line for line in log_file.read_text().splitlines() if "processId" in line]
        assert len(lines) == 1 and "watching the parent process" in lines[0], lines
    finally:
        session.close()
