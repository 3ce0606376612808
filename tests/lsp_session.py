"""Helpers for end-to-end tests that need more of a session than lsp_wire gives: client
capabilities, status as plain JSON, waiting for the server's background work."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient


def plain(value: Any) -> Any:
    """pygls returns custom results as namedtuples: turn them back into JSON values."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def status(client: LanguageClient) -> dict[str, Any]:
    return plain(await client.protocol.send_request_async("codehone/status", {}))


async def wait_idle(client: LanguageClient, timeout: float = 120) -> dict[str, Any]:
    """The status once the server has no background work (configuration, loads) left."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await status(client)
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


def record_registrations(client: LanguageClient) -> list[types.Registration]:
    """Answer client/registerCapability (pytest-lsp does not) and keep what was registered."""
    registered: list[types.Registration] = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(ls: LanguageClient, params: types.RegistrationParams) -> None:
        registered.extend(params.registrations)

    return registered


def open_document(
    client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1
) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)
        )
    )


async def complete(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    trigger: types.CompletionTriggerKind | None = None,
) -> types.CompletionList:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.CompletionContext(trigger_kind=trigger) if trigger else None,
        )
    )
    assert isinstance(result, types.CompletionList)
    return result


async def inline(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Invoked,
) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    return result


def texts(result: types.CompletionList) -> list[str]:
    out = []
    for item in result.items:
        assert isinstance(item.text_edit, types.TextEdit)
        out.append(item.text_edit.new_text)
    return out
