"""End to end: a completion after an auto-closed bracket (``os.listdir(|)``) replaces the
closers it re-types, in the menu item's ``textEdit`` and in the inline item's ``range``, and
keeps a ``)`` that closes its own bracket. The shipped model (``models/default``) is a real
one: after ``os.listdir(`` it completes ``path):``."""

from __future__ import annotations

import pytest
from lsp_session import capabilities, complete, inline, start, wait_idle
from lsprotocol import types

from codehone.core import default_model
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.text_positions import offset_at
from codehone.core.tokenizer import TextTokenizer

SHIPPED = default_model.shipped_model_dir()
URI = "file:///project/brackets.py"
# What an editor that closes brackets has after typing each opening one.
TEXT = (
    "import os\n\n\ndef main(path):\n"
    "    for name in os.listdir()\n"
    "    if os.path.exists()\n"
    "    joined = os.path.join()\n"
)
CURSORS = [(4, 27), (5, 22), (6, 26)]


def apply(text: str, edit_range: types.Range, new_text: str) -> str:
    start = offset_at(text, edit_range.start.line, edit_range.start.character)
    end = offset_at(text, edit_range.end.line, edit_range.end.character)
    return text[:start] + new_text + text[end:]


def item_edits(result: types.CompletionList | types.InlineCompletionList) -> list[tuple]:
    edits = []
    for item in result.items:
        if isinstance(item, types.CompletionItem):
            assert isinstance(item.text_edit, types.TextEdit)
            edits.append((item.text_edit.range, item.text_edit.new_text))
        else:
            assert isinstance(item.insert_text, str) and item.range is not None
            edits.append((item.range, item.insert_text))
    return edits


@pytest.mark.parametrize("kind", ["completion", "inline"])
async def test_the_closers_after_the_cursor_are_replaced_not_doubled(kind: str) -> None:
    model_dir = load_model_dir(SHIPPED)
    local = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    session = await start(SHIPPED)
    try:
        await session.initialize(capabilities=capabilities())
        await wait_idle(session)
        session.open(URI, TEXT)
        replaced_any = False
        for line, character in CURSORS:
            cursor = types.Position(line, character)
            want = local.complete(
                CursorContext(TEXT, offset_at(TEXT, line, character)), CompletionOptions()
            )
            if kind == "completion":
                result = await complete(session, URI, line, character)
            else:
                result = await inline(session, URI, line, character)
            edits = item_edits(result)
            assert len(edits) == len(want.completions)
            for (edit_range, new_text), completion in zip(edits, want.completions, strict=True):
                assert new_text == completion.text
                end = types.Position(line, character + completion.replaced)
                assert edit_range == types.Range(start=cursor, end=end)
                replaced_any = replaced_any or completion.replaced > 0
                edited = apply(TEXT, edit_range, new_text).split("\n")[line]
                assert edited.count("(") == edited.count(")"), (
                    f"{new_text!r} at {TEXT.splitlines()[line]!r} gave {edited!r}"
                )
        # The shipped model closes the bracket and goes on after os.listdir( (`path):`): the
        # case this test is about must have come up.
        assert replaced_any, "no completion re-typed the auto-closed bracket"
    finally:
        await session.close()
