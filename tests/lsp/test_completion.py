"""End to end: textDocument/completion from the real server process over stdio (pytest-lsp)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lsp_session import capabilities as lsp_capabilities
from lsp_session import start
from lsprotocol import types

from codehone.check.capabilities import editor_capabilities
from codehone.check.client import EditorSession
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.text_positions import offset_at
from codehone.core.tokenizer import TextTokenizer

URI = "file:///project/example.py"
SOURCE = (
    "import os\n\n\ndef read_lines(path):\n    with open(path) as handle:\n"
    "        return handle.read().splitlines()\n\n\ndef count(items):\n    total = 0\n"
    "    for item in items:\n        total += \n    return total\n"
)
POSITIONS = [(3, 15), (5, 15), (9, 12), (11, 17), (12, 11), (12, 0)]


def expected_text(model: Path, text: str, line: int, character: int) -> str | None:
    """What the completion pipeline gives in-process for the same text and position."""
    model_dir = load_model_dir(model)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    ctx = CursorContext(text, offset_at(text, line, character))
    return completer.complete(ctx, CompletionOptions()).text


async def complete(
    session: EditorSession, line: int, character: int, uri: str = URI
) -> types.CompletionList:
    result = await session.ask("completion", uri, types.Position(line=line, character=character))
    assert isinstance(result, types.CompletionList)
    return result


def item_text(result: types.CompletionList, line: int, character: int) -> str | None:
    if not result.items:
        return None
    edit = result.items[0].text_edit
    assert isinstance(edit, types.TextEdit)
    cursor = types.Position(line=line, character=character)
    assert edit.range == types.Range(start=cursor, end=cursor)  # inserted at the cursor
    assert edit.new_text.strip() and edit.new_text == edit.new_text.rstrip()
    return edit.new_text


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
async def test_completion_session(family: str, tiny_model: Callable[[str], Path]):
    """initialize, didOpen, completion, didChange, completion again, shutdown, exit."""
    model = tiny_model(family)
    session = await start(model)
    try:
        result = await session.initialize(capabilities=types.ClientCapabilities())
        assert result.capabilities.completion_provider is not None
        sync = result.capabilities.text_document_sync
        assert isinstance(sync, types.TextDocumentSyncOptions)
        assert sync.change == types.TextDocumentSyncKind.Incremental
        session.open(URI, SOURCE)
        answers = []
        for line, character in POSITIONS:
            got = item_text(await complete(session, line, character), line, character)
            assert got == expected_text(model, SOURCE, line, character)
            answers.append(got)
        assert any(answers), "no position produced a completion"

        # Incremental edit: replace "+=" with "= total +" on line 11 ("total += ").
        plus = SOURCE.index("total += ") + len("total ")
        session.change(URI, "= total +", (plus, plus + 2))
        changed = SOURCE.replace("total += ", "total = total + ")
        assert session.text(URI) == changed
        got = item_text(await complete(session, 11, 24), 11, 24)
        assert got == expected_text(model, changed, 11, 24)

        # Full-document sync works too.
        session.change(URI, "x = ")
        got = item_text(await complete(session, 0, 4), 0, 4)
        assert got == expected_text(model, "x = ", 0, 4)
    finally:
        exit_code = await session.close(timeout=30)
    assert exit_code == 0  # a clean exit


async def test_bad_positions_and_documents(gpt2_session: EditorSession, tiny_model_dir: Path):
    """Unknown documents, positions past the end, empty and odd documents never crash."""
    session = gpt2_session
    await session.initialize(capabilities=types.ClientCapabilities())
    unknown = await complete(session, 0, 0, uri="file:///nowhere.py")
    assert len(unknown.items) == 0

    session.open(URI, SOURCE)
    end_line = SOURCE.count("\n")
    past_line = item_text(await complete(session, 10, 400), 10, 400)
    assert past_line == expected_text(tiny_model_dir, SOURCE, 10, 400)  # clamped to line end
    past_file = await complete(session, 500, 3)
    assert len(past_file.items) == 0 or past_file.items[0].text_edit is not None
    assert item_text(past_file, 500, 3) == expected_text(tiny_model_dir, SOURCE, end_line, 0)

    empty = session.open("file:///project/empty.py", "")
    assert isinstance(await complete(session, 0, 0, uri=empty), types.CompletionList)

    # An emoji is two UTF-16 code units: character 6 falls inside it.
    emoji = session.open("file:///project/emoji.py", 'x = "😀"\n')
    with pytest.raises(Exception, match="inside a character"):
        await complete(session, 0, 6, uri=emoji)
    # ... and the server keeps serving.
    assert isinstance(await complete(session, 1, 0), types.CompletionList)


async def test_trigger_characters_leave_the_menu_to_ghost_text(tiny_model_dir: Path):
    """A client with inline completion gets no trigger characters (the menu comes when asked
    for: Ctrl+Space); one without gets "." only, never a space, "(" or a line break."""
    for capabilities, expected in [
        (lsp_capabilities(), []),
        (editor_capabilities(), []),  # VS Code's
        (types.ClientCapabilities(), ["."]),
    ]:
        session = await start(tiny_model_dir)
        try:
            result = await session.initialize(capabilities=capabilities)
            provider = result.capabilities.completion_provider
            assert provider is not None
            assert list(provider.trigger_characters or []) == expected
        finally:
            await session.close()
