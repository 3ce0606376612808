"""`codehone serve --tcp`: one editor at a time on 127.0.0.1, a fresh session per connection.

A stray connection (a connect-and-close, garbage, half a frame) never ends the server; a second
connection while an editor is connected is refused and never receives the first one's
responses; after an editor leaves (with ``exit`` or without) the next one starts from scratch;
the transport's limits are those of stdio.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from lsp_wire import (
    INITIALIZED,
    TcpClient,
    frame,
    initialize,
    parse_frames,
    status_request,
)

from codehone.check.client import serve_command


class Server(NamedTuple):
    process: subprocess.Popen
    port: int
    log_file: Path

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log_file.read_text().splitlines() if text in line]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.log_lines(text)) < count:
            assert self.process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"no log line with {text!r}"
            time.sleep(0.05)
        return self.log_lines(text)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_file = tmp_path_factory.mktemp("tcp") / "serve.log"
    log_file.touch()
    command = serve_command(
        tiny_model_dir, extra=["--tcp", "--port", "0", "--log-file", str(log_file)]
    )
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        line = Server(process, 0, log_file).wait_for_log("serving on 127.0.0.1:")[0]
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        yield Server(process, port, log_file)
        assert process.poll() is None, "the server exited"
    finally:
        process.kill()
        process.wait()
    assert process.stdout is not None and process.stdout.read() == b""  # TCP: stdout unused


def editor_session(server: Server, request_id: int = 1) -> TcpClient:
    client = TcpClient(server.port)
    client.send(frame(initialize(request_id)))
    assert "capabilities" in client.by_id(request_id)["result"]  # a fresh session each time
    client.send(frame(INITIALIZED))
    return client


def leave(client: TcpClient) -> None:
    client.shutdown_and_exit()
    client.wait_closed()  # exit ends the session: the server closes the connection
    parse_frames(client.received())  # nothing but protocol came over it
    client.close()


def test_stray_connections_never_end_the_server(server: Server):
    strays = [b"", b"\x00\xff garbage", b"Content-Length: 100\r\n\r\n{", frame(initialize(1))]
    ended = len(server.log_lines("listening for the next editor"))
    for stray in strays:
        client = TcpClient(server.port)
        if stray:
            client.send(stray)
        client.close()  # gone without shutdown or exit
        ended += 1  # (the next one waits for this session's end: one editor at a time)
        server.wait_for_log("listening for the next editor", count=ended)
    leave(editor_session(server))  # an editor after them is served from scratch ...
    leave(editor_session(server))  # ... and after an editor's own exit, the next one too


def test_a_second_connection_is_refused_and_never_gets_the_first_ones_answers(server: Server):
    first = editor_session(server)
    refused_before = len(server.log_lines("refused a connection"))
    second = TcpClient(server.port)
    second.send(frame(status_request(5)))
    second.wait_closed()  # refused: closed by the server
    assert second.received() == b""  # ... with nothing of anyone's
    second.close()
    assert len(server.wait_for_log("refused a connection", count=refused_before + 1)) == (
        refused_before + 1
    )
    first.send(frame(status_request(5)))
    assert "result" in first.by_id(5)  # the first editor's answer came to the first editor
    leave(first)


def test_a_header_line_over_64_kib_is_handled_as_on_stdio(server: Server):
    client = editor_session(server)
    answers = client.exchange(b"X-Junk: " + b"a" * 70_000 + b"\r\n", "marker")
    assert [(m["id"], m["error"]["code"]) for m in answers] == [(None, -32700)]
    huge = client.exchange(b"Content-Length: 1000000000000\r\n\r\n{}", "marker-2")
    assert [(m["id"], m["error"]["code"]) for m in huge] == [(None, -32700)]
    leave(client)


def listening_addresses(table: Path, port: int) -> list[str]:
    """The local addresses (hex, as /proc writes them) of the sockets listening on ``port``."""
    if not table.exists():
        return []
    rows = (line.split() for line in table.read_text().splitlines()[1:])
    return [
        row[1].split(":")[0]
        for row in rows
        if row[3] == "0A" and int(row[1].split(":")[1], 16) == port
    ]


def test_it_listens_on_loopback_only(server: Server):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp here")
    assert listening_addresses(Path("/proc/net/tcp"), server.port) == ["0100007F"]  # 127.0.0.1
    assert listening_addresses(Path("/proc/net/tcp6"), server.port) == []
