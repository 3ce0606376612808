"""End to end: `$/cancelRequest` for a request that is already running is answered with
RequestCancelled (-32800) at once, and the server keeps serving."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from lsp_session import capabilities, complete, inline, start, wait_idle
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from codehone.check.client import EditorSession, Kind

URI = "file:///project/cancel.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n"
REQUEST_CANCELLED = -32800
SLOW_SERVE = Path(__file__).with_name("slow_serve.py")


async def send_then_cancel(session: EditorSession, kind: Kind, automatic: bool) -> Exception:
    """Send a request, let the server start on it, cancel it; return the error it got."""
    request = session.send(kind, URI, types.Position(line=4, character=24), automatic)
    await asyncio.sleep(0.5)  # not a timing check: gives the server time to start working
    assert not request.future.done(), "the request ended before it could be cancelled"
    session.cancel(request)
    with pytest.raises(JsonRpcRequestCancelled) as caught:
        await session.wait("the cancelled request", request.future, 30)
    return caught.value


async def test_cancelling_a_request_running_on_the_model(tiny_model_dir: Path):
    # Every request waits on the model's worker before it decodes (the slow engine of
    # slow_serve.py, a wait a cancel ends), so the one below is surely running there when the
    # cancel arrives.
    session = await start(tiny_model_dir, prefix=[sys.executable, str(SLOW_SERVE), "serve"])
    try:
        await session.initialize(capabilities=capabilities())
        await wait_idle(session)
        session.open(URI, TEXT)
        error = await send_then_cancel(session, "completion", automatic=False)
        assert error.code == REQUEST_CANCELLED
        status = await wait_idle(session)
        assert status["cancelled"] == 1  # it had reached the model's worker
        # the worker is free again: the next request is answered (after its own pause)
        assert isinstance(await complete(session, URI, 4, 24), types.CompletionList)
    finally:
        await session.close()


async def test_cancelling_a_request_waiting_in_the_debounce(tiny_model_dir: Path):
    session = await start(tiny_model_dir)
    try:
        await session.initialize(
            capabilities=capabilities(), initialization_options={"debounceMs": 5000}
        )
        await wait_idle(session)
        session.open(URI, TEXT)
        error = await send_then_cancel(session, "inline", automatic=True)
        assert error.code == REQUEST_CANCELLED
        assert isinstance(await inline(session, URI, 4, 24), types.InlineCompletionList)
    finally:
        await session.close()
