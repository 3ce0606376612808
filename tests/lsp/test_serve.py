"""`codehone serve` at the edges: bad model directories at startup, and a stdout that carries
nothing but protocol, even for odd input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_wire import EXIT, INITIALIZED, RawSession, frame, initialize, parse_frames, shutdown


def run_serve(
    args: list[str], stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codehone", "serve", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "make_dir, message",
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (
            lambda tmp: (tmp / "empty").mkdir() or tmp / "empty",
            "manifest 'codehone.json' is missing",
        ),
        (
            lambda tmp: (
                (tmp / "bad").mkdir()
                or ((tmp / "bad" / "codehone.json").write_text("{") and tmp / "bad")
            ),
            "not valid JSON",
        ),
    ],
)
def test_bad_model_dir_fails_at_startup_with_one_line(tmp_path: Path, make_dir, message: str):
    model = make_dir(tmp_path)
    result = run_serve(["--model", str(model)])
    assert result.returncode == 2
    assert result.stdout == b""  # nothing but protocol on stdout, and no protocol was started
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("codehone: error:") and message in lines[0]


def test_stdout_is_only_protocol(tiny_model_dir: Path):
    """A whole session, including a document that is not valid Unicode and a completion
    request past its end: stdout must parse as LSP frames from its first to its last byte."""
    uri = "file:///x.py"
    # "\ud800" is a lone surrogate: JSON can carry it, UTF-8 cannot encode it.
    did_open = (
        b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": '
        b'{"uri": "file:///x.py", "languageId": "python", "version": 1, '
        b'"text": "def f(x):\\n    return x \\ud800 + "}}}'
    )
    completion = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "textDocument/completion",
        "params": {"textDocument": {"uri": uri}, "position": {"line": 9, "character": 99}},
    }
    session = RawSession(tiny_model_dir)
    try:
        session.send(frame(initialize(1)))
        session.by_id(1)
        session.send(frame(INITIALIZED))
        session.send_body(did_open)
        session.send(frame(completion))
        session.by_id(2)
        session.send(frame(shutdown(3)))
        session.by_id(3)
        session.send(frame(EXIT))
        assert session.process.stdin is not None
        session.process.stdin.close()
        assert session.process.wait(timeout=30) == 0
    finally:
        session.close()
    messages = parse_frames(session.stdout)  # from its first byte to its last
    by_id = {m.get("id"): m for m in messages if "id" in m}
    assert "result" in by_id[1] and "capabilities" in by_id[1]["result"]
    assert "result" in by_id[2], by_id[2]  # answered, not an error, not a crash
    assert by_id[3] == {"jsonrpc": "2.0", "id": 3, "result": None}
    json.dumps(messages)  # every message was valid JSON


def test_tcp_binds_loopback_only():
    serve_help = run_serve(["--help"]).stdout.decode()
    assert "--tcp" in serve_help and "--host" not in serve_help
