"""End to end: `$/cancelRequest` for a request that is already running is answered with
RequestCancelled (-32800) at once, and the server keeps serving."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from lsp_session import capabilities, complete, inline, open_document, wait_idle
from lsp_wire import start_client, stop_client
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

URI = "file:///project/cancel.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n"
REQUEST_CANCELLED = -32800
SLOW_SERVE = Path(__file__).with_name("slow_serve.py")


async def send_then_cancel(client, method: str, params: object) -> Exception:  # type: ignore[no-untyped-def]
    """Send a request, let the server start on it, cancel it; return the error it got."""
    msg_id = str(uuid.uuid4())
    future = client.protocol.send_request(method, params, msg_id=msg_id)
    await asyncio.sleep(0.5)  # not a timing check: gives the server time to start working
    assert not future.done(), "the request ended before it could be cancelled"
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcRequestCancelled) as caught:
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    return caught.value


def completion_params() -> types.CompletionParams:
    return types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=types.Position(line=4, character=24),
    )


async def start_slow(model_dir: Path) -> LanguageClient:
    """The server with an engine that waits before every generation (a wait a cancel ends)."""
    command = [sys.executable, str(SLOW_SERVE), "serve", "--model", str(model_dir)]
    return await ClientServerConfig(server_command=command).start()  # type: ignore[return-value]


async def test_cancelling_a_request_running_on_the_model(tiny_model_dir: Path):
    # Every request waits on the model's worker before it decodes, so the one below is surely
    # running there when the cancel arrives.
    client = await start_slow(tiny_model_dir)
    try:
        await client.initialize_session(
            types.InitializeParams(capabilities=capabilities(), process_id=None)
        )
        await wait_idle(client)
        open_document(client, URI, TEXT)
        error = await send_then_cancel(client, types.TEXT_DOCUMENT_COMPLETION, completion_params())
        assert error.code == REQUEST_CANCELLED
        status = await wait_idle(client)
        assert status["cancelled"] == 1  # it had reached the model's worker
        # the worker is free again: the next request is answered (after its own pause)
        assert isinstance(await complete(client, URI, 4, 24), types.CompletionList)
    finally:
        await client.shutdown_session()
        await stop_client(client)


async def test_cancelling_a_request_waiting_in_the_debounce(tiny_model_dir: Path):
    client = await start_client(tiny_model_dir)
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities(),
                initialization_options={"debounceMs": 5000},
                process_id=None,
            )
        )
        await wait_idle(client)
        open_document(client, URI, TEXT)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=4, character=24),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        error = await send_then_cancel(client, types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        assert error.code == REQUEST_CANCELLED
        assert isinstance(await inline(client, URI, 4, 24), types.InlineCompletionList)
    finally:
        await client.shutdown_session()
        await stop_client(client)
