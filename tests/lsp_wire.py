"""LSP plumbing for tests: starting the real server, and raw framing for tests that must see
exactly what the server writes to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pytest_lsp import ClientServerConfig, LanguageClient


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


def read_frame(stream: Any) -> tuple[bytes, dict[str, Any]]:
    """Read one framed message from a binary stream; return its raw bytes and the message."""
    raw = b""
    length = None
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("server closed stdout")
        raw += line
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    assert length is not None, f"frame without Content-Length: {raw!r}"
    body = stream.read(length)
    return raw + body, json.loads(body)


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


def serve_command(model_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "codehone", "serve", "--model", str(model_dir), *extra]


async def start_client(model_dir: Path, *extra: str) -> LanguageClient:
    config = ClientServerConfig(server_command=serve_command(model_dir, *extra))
    return await config.start()  # type: ignore[return-value]


async def stop_client(client: LanguageClient, timeout: float = 10.0) -> None:
    """Stop the client; a server that has not exited in time (a failed test never sent
    `exit`) is killed, so a failure can never hang the suite."""
    import asyncio

    server = client._server  # type: ignore[attr-defined]
    if server is not None and server.returncode is None:
        try:
            await asyncio.wait_for(server.wait(), timeout)
        except TimeoutError:
            server.kill()
    await client.stop()
