"""End to end over stdio, a fresh server per case: no frame kills or deafens the server. Each bad
frame gets one log line and one -32700 with id null, and the messages after it are read; header
names are case-insensitive and LF-only line ends are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsp_wire import (
    INITIALIZED,
    RawSession,
    body_frame,
    frame,
    initialize,
    parse_frames,
    status_request,
)

STATUS = frame(status_request(50))
STATUS_BODY = STATUS.partition(b"\r\n\r\n")[2]

BAD_FRAMES = {
    "huge length": b"Content-Length: 1000000000000\r\n\r\n{}",
    "no Content-Length": b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + STATUS_BODY,
    "negative length": b"Content-Length: -5\r\n\r\n" + STATUS_BODY,
    "non-numeric length": b"Content-Length: abc\r\n\r\n" + STATUS_BODY,
    "length past the body": b"Content-Length: 150\r\n\r\n{}" + STATUS,
    "header line over 64 KiB": b"X-Junk: " + b"a" * 70_000 + b"\r\n" + STATUS,
}
GOOD_FRAMES = {
    "lower-case header name": body_frame(STATUS_BODY, name=b"content-length"),
    "LF-only header lines": body_frame(STATUS_BODY, eol=b"\n"),
}


def run_case(model: Path, data: bytes, log_file: Path) -> tuple[RawSession, list[dict]]:
    """A fresh server: initialize, ``data``, then shutdown and exit, which must work."""
    session = RawSession(model, extra=["--log-file", str(log_file)])
    session.send(frame(initialize(1)))
    session.by_id(1)
    session.send(frame(INITIALIZED))
    session.send(data)
    session.shutdown_and_exit()  # the server still hears ...
    assert session.process.wait(timeout=30) == 0  # ... and never died of the frame
    return session, parse_frames(session.stdout)  # stdout is still only protocol


@pytest.mark.parametrize("case", BAD_FRAMES)
def test_a_bad_frame_is_answered_logged_once_and_survived(
    case: str, tiny_model_dir: Path, tmp_path: Path
):
    log_file = tmp_path / "serve.log"
    session, messages = run_case(tiny_model_dir, BAD_FRAMES[case], log_file)
    try:
        null_errors = [m for m in messages if "id" in m and m["id"] is None]
        assert [m["error"]["code"] for m in null_errors] == [-32700], messages
        lines = [line for line in log_file.read_text().splitlines() if "unreadable input" in line]
        assert len(lines) == 1, lines
        if STATUS in BAD_FRAMES[case]:  # a message right after the bad one is not lost
            assert "result" in session.answers[50]
    finally:
        session.close()


@pytest.mark.parametrize("case", GOOD_FRAMES)
def test_header_variants_are_read(case: str, tiny_model_dir: Path, tmp_path: Path):
    session, messages = run_case(tiny_model_dir, GOOD_FRAMES[case], tmp_path / "serve.log")
    try:
        assert "result" in session.answers[50]
        assert not [m for m in messages if "id" in m and m["id"] is None]
    finally:
        session.close()
