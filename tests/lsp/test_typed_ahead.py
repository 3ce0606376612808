"""End to end: the typed-ahead answer (codehone.core.completion.typed_ahead). A user who types
the first characters of the ghost text just offered gets the rest of it without a model call
(codehone/status counts it, and no request reaches the model); typing something else reaches
the model again; ``typedAhead: false`` always asks the model. A request the editor cancels
because the user typed on is left to finish when what it generated agrees with the typing, and
the next keystroke's request is answered from its completion."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from lsp_session import capabilities, inline, start, status, wait_idle
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from codehone.check.client import EditorSession

URI = "file:///project/typed.py"
# Cursor positions that end a line: the tiny random model offers something at most of them.
LINES = ["import os", "def main(", "    value = ", "    return ", "class Item", "x = os."]


SLOW_SERVE = Path(__file__).with_name("slow_serve.py")


async def started(model: Path, options: dict[str, Any], slow: bool = False) -> EditorSession:
    session = await start(
        model, prefix=[sys.executable, str(SLOW_SERVE), "serve"] if slow else None
    )
    init = {"completion": {"multiline": "never"}, "backgroundPrefill": False, **options}
    await session.initialize(capabilities=capabilities(), initialization_options=init)
    await wait_idle(session)
    return session


async def offer(session: EditorSession) -> tuple[str, str]:
    """A document and the ghost text offered at its end, two characters long at least."""
    for line in LINES:
        session.open(URI, line)
        result = await inline(session, URI, 0, len(line))
        text = result.items[0].insert_text if result.items else ""
        assert isinstance(text, str)
        if len(text.strip()) >= 2 and not text.startswith((" ", "\t")):
            return line, text
        session.close_document(URI)
    raise AssertionError(f"the tiny model offered nothing to type at any of {LINES}")


async def model_requests(session: EditorSession) -> int:
    return (await status(session))["prefix_cache"]["requests"]


async def test_typing_the_start_of_the_ghost_text_answers_with_the_rest(tiny_model_dir: Path):
    session = await started(tiny_model_dir, {})
    try:
        line, text = await offer(session)
        asked = await model_requests(session)
        session.change(URI, text[0], (len(line), len(line)))
        result = await inline(session, URI, 0, len(line) + 1)
        assert [item.insert_text for item in result.items] == [text[1:]]
        current = await status(session)
        assert current["typed_ahead"] == 1
        assert current["prefix_cache"]["requests"] == asked  # no model call
        # typing what the ghost text does not say asks the model again
        session.change(URI, "\u00a7", (len(line) + 1, len(line) + 1))
        await inline(session, URI, 0, len(line) + 2)
        assert await model_requests(session) == asked + 1
        assert (await status(session))["typed_ahead"] == 1
    finally:
        await session.close()


async def test_typed_ahead_false_always_asks_the_model(tiny_model_dir: Path):
    session = await started(tiny_model_dir, {"typedAhead": False})
    try:
        line, text = await offer(session)
        asked = await model_requests(session)
        session.change(URI, text[0], (len(line), len(line)))
        await inline(session, URI, 0, len(line) + 1)
        current = await status(session)
        assert current["typed_ahead"] == 0
        assert current["prefix_cache"]["requests"] == asked + 1
    finally:
        await session.close()


async def test_a_request_cancelled_by_typing_what_it_completes_answers_the_next(
    tiny_model_dir: Path,
):
    fast = await started(tiny_model_dir, {})
    try:
        line, text = await offer(fast)  # what the model completes there (greedy: the same below)
    finally:
        await fast.close()
    # every generation of the slow server first waits (slow_serve.py), so the first request
    # is surely still running when the user types the next character and the editor cancels it
    # (within a time budget longer than the slow engine's wait)
    budget = {"completion": {"multiline": "never", "timeBudgetMs": 30000}}
    session = await started(tiny_model_dir, budget, slow=True)
    try:
        session.open(URI, line)
        first = session.send("inline", URI, types.Position(0, len(line)), True)
        await asyncio.sleep(0.5)  # not a timing check: lets the server start on it
        session.change(URI, text[0], (len(line), len(line)))
        session.cancel(first)
        second = session.send("inline", URI, types.Position(0, len(line) + 1), True)
        with pytest.raises(JsonRpcRequestCancelled):
            await session.wait("the cancelled request", first.future, 30)
        result = await session.wait("the next request", second.future, 60)
        assert isinstance(result, types.InlineCompletionList)
        assert [item.insert_text for item in result.items] == [text[1:]]
        current = await status(session)
        assert current["typed_ahead"] == 1  # answered from the first request's completion
        assert current["prefix_cache"]["requests"] == 0  # which the editor had cancelled
    finally:
        await session.close()
