"""Test helpers on top of the one LSP client, ``codehone.check.client.EditorSession``: the real
server under a pytest-lsp client (which records the server's messages, progress reports and
the configuration it is answered with), client capabilities, and waiting for the server's
background work."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig

from codehone.check.client import EditorSession, serve_command


async def start(
    model_dir: Path | None,
    *extra: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] | None = None,
) -> EditorSession:
    """``codehone serve`` on ``model_dir`` (None: no --model) with ``extra`` arguments, not yet
    initialized: each test initializes with the capabilities it needs. ``prefix`` replaces
    ``python -m codehone serve`` (a test double of the server, like lsp/slow_serve.py)."""
    config = ClientServerConfig(
        server_command=serve_command(model_dir, extra=extra, prefix=prefix),
        server_env={**os.environ, **env} if env else None,
    )
    return EditorSession(await config.start(), drain_stderr=False)  # pytest-lsp reads stderr


async def status(session: EditorSession) -> dict[str, Any]:
    current = await session.status()
    assert current is not None, "codehone/status was not answered"
    return current


async def wait_idle(session: EditorSession, timeout: float = 120) -> dict[str, Any]:
    """The status once the server has no background work (configuration, loads) left."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await status(session)
        if current["pending"] == 0:
            return current
        assert asyncio.get_running_loop().time() < deadline, f"still busy: {current}"
        await asyncio.sleep(0.05)


def capabilities(
    configuration: bool = False, watch_files: bool = False, progress: bool = False
) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            configuration=configuration,
            did_change_configuration=types.DidChangeConfigurationClientCapabilities(
                dynamic_registration=configuration
            ),
            did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=watch_files
            ),
            workspace_folders=True,
        ),
        window=types.WindowClientCapabilities(work_done_progress=progress),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
        ),
    )


async def complete(
    session: EditorSession, uri: str, line: int, character: int, automatic: bool = False
) -> types.CompletionList:
    result = await session.ask(
        "completion", uri, types.Position(line, character), automatic=automatic
    )
    assert isinstance(result, types.CompletionList)
    return result


async def inline(
    session: EditorSession,
    uri: str,
    line: int,
    character: int,
    automatic: bool = False,
    selected: types.SelectedCompletionInfo | None = None,
) -> types.InlineCompletionList:
    position = types.Position(line, character)
    result = await session.ask("inline", uri, position, automatic=automatic, selected=selected)
    assert isinstance(result, types.InlineCompletionList)
    return result


def texts(result: types.CompletionList) -> list[str]:
    out = []
    for item in result.items:
        assert isinstance(item.text_edit, types.TextEdit)
        out.append(item.text_edit.new_text)
    return out
