"""End to end: textDocument/completion from the real server process over stdio (pytest-lsp)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lsp_wire import start_client, stop_client
from lsprotocol import types
from pytest_lsp import LanguageClient

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


async def complete(client: LanguageClient, line: int, character: int) -> types.CompletionList:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=line, character=character),
        )
    )
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


def open_document(client: LanguageClient, text: str, uri: str = URI) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
async def test_completion_session(family: str, tiny_model: Callable[[str], Path]):
    """initialize, didOpen, completion, didChange, completion again, shutdown, exit."""
    model = tiny_model(family)
    client = await start_client(model)
    try:
        result = await client.initialize_session(
            types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=None)
        )
        assert result.capabilities.completion_provider is not None
        sync = result.capabilities.text_document_sync
        assert isinstance(sync, types.TextDocumentSyncOptions)
        assert sync.change == types.TextDocumentSyncKind.Incremental
        open_document(client, SOURCE)
        answers = []
        for line, character in POSITIONS:
            got = item_text(await complete(client, line, character), line, character)
            assert got == expected_text(model, SOURCE, line, character)
            answers.append(got)
        assert any(answers), "no position produced a completion"

        # Incremental edit: replace "total += " with "total = total + " on line 11.
        edit_range = types.Range(start=types.Position(11, 14), end=types.Position(11, 17))
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=edit_range, text="= total + ")
                ],
            )
        )
        changed = SOURCE.replace("total += ", "total = total + ")
        got = item_text(await complete(client, 11, 24), 11, 24)
        assert got == expected_text(model, changed, 11, 24)

        # Full-document sync works too.
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=3),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text="x = ")],
            )
        )
        got = item_text(await complete(client, 0, 4), 0, 4)
        assert got == expected_text(model, "x = ", 0, 4)
    finally:
        await client.shutdown_session()
        await stop_client(client, timeout=30)
    assert client._server.returncode == 0  # type: ignore[union-attr]  # clean exit


async def test_bad_positions_and_documents(gpt2_client: LanguageClient, tiny_model_dir: Path):
    """Unknown documents, positions past the end, empty and odd documents never crash."""
    client = gpt2_client
    await client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=None)
    )
    unknown = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri="file:///nowhere.py"),
            position=types.Position(0, 0),
        )
    )
    assert isinstance(unknown, types.CompletionList) and len(unknown.items) == 0

    open_document(client, SOURCE)
    end_line = SOURCE.count("\n")
    past_line = item_text(await complete(client, 10, 400), 10, 400)
    assert past_line == expected_text(tiny_model_dir, SOURCE, 10, 400)  # clamped to line end
    past_file = await complete(client, 500, 3)
    assert len(past_file.items) == 0 or past_file.items[0].text_edit is not None
    assert item_text(past_file, 500, 3) == expected_text(tiny_model_dir, SOURCE, end_line, 0)

    open_document(client, "", uri="file:///project/empty.py")
    empty = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri="file:///project/empty.py"),
            position=types.Position(0, 0),
        )
    )
    assert isinstance(empty, types.CompletionList)

    # An emoji is two UTF-16 code units: character 6 falls inside it.
    open_document(client, 'x = "😀"\n', uri="file:///project/emoji.py")
    with pytest.raises(Exception, match="inside a character"):
        await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri="file:///project/emoji.py"),
                position=types.Position(0, 6),
            )
        )
    # ... and the server keeps serving.
    assert isinstance(await complete(client, 1, 0), types.CompletionList)
    await client.shutdown_session()
