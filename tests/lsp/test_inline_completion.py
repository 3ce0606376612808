"""End to end: textDocument/inlineCompletion (ghost text) from the real server process."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsp_session import complete, inline
from lsprotocol import types

from codehone.check.client import EditorSession
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.text_positions import offset_at
from codehone.core.tokenizer import TextTokenizer

URI = "file:///project/inline.py"
SOURCE = "import os\n\n\ndef main():\n    path = os.path.\n    print(path)\n"


def capabilities_with_inline_completion() -> types.ClientCapabilities:
    """What VS Code / Neovim 0.12 send: inline completion is a 3.18 text-document capability."""
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
            completion=types.CompletionClientCapabilities(),
        ),
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
    )


def local_completer(model: Path) -> Completer:
    model_dir = load_model_dir(model)
    return Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )


async def test_inline_completion(gpt2_session: EditorSession, tiny_model_dir: Path):
    result = await gpt2_session.initialize(capabilities=capabilities_with_inline_completion())
    assert result.capabilities.inline_completion_provider is not None
    gpt2_session.open(URI, SOURCE)
    completer = local_completer(tiny_model_dir)
    answered = 0
    for line, character in [(4, 19), (3, 11), (5, 15), (0, 9)]:
        got = await inline(gpt2_session, URI, line, character, automatic=True)
        ctx = CursorContext(SOURCE, offset_at(SOURCE, line, character))
        expected = completer.complete(ctx, CompletionOptions()).completions
        if not expected:
            assert len(got.items) == 0
            continue
        answered += 1
        (item,) = got.items
        assert item.insert_text == expected[0].text
        cursor = types.Position(line=line, character=character)
        end = types.Position(line=line, character=character + expected[0].replaced)
        assert item.range == types.Range(start=cursor, end=end)
    assert answered > 0


async def test_with_the_menu_open_ghost_text_never_repeats_our_item(
    gpt2_session: EditorSession, tiny_model_dir: Path
):
    """VS Code asks again while the menu is open, with the selected item: ours (what the menu
    just offered here) gets no ghost text; another one gets the completion after it."""
    session = gpt2_session
    await session.initialize(capabilities=capabilities_with_inline_completion())
    session.open(URI, SOURCE)
    completer = local_completer(tiny_model_dir)
    ours_seen = extended = 0
    for line, character in [(4, 19), (3, 11), (5, 15)]:
        cursor = types.Position(line=line, character=character)
        offset = offset_at(SOURCE, line, character)
        menu = await complete(session, URI, line, character)
        for item in menu.items:
            assert isinstance(item.text_edit, types.TextEdit)
            ours = types.SelectedCompletionInfo(
                range=item.text_edit.range, text=item.text_edit.new_text
            )
            got = await inline(session, URI, line, character, automatic=True, selected=ours)
            assert not got.items, f"our menu item {ours.text!r} came back as ghost text"
            ours_seen += 1
        # Another provider's item, replacing nothing or the word before the cursor.
        for start, text in [(offset, "join"), (offset - 2, "th.sep"), (offset, "(")]:
            begin = types.Position(line=line, character=character - (offset - start))
            selected = types.SelectedCompletionInfo(range=types.Range(begin, cursor), text=text)
            got = await inline(session, URI, line, character, automatic=True, selected=selected)
            virtual = SOURCE[:start] + text + SOURCE[offset:]
            want = completer.complete(
                CursorContext(virtual, start + len(text)), CompletionOptions()
            )
            assert [i.insert_text for i in got.items] == [text + c.text for c in want.completions]
            for item, c in zip(got.items, want.completions, strict=True):
                end = types.Position(line=line, character=character + c.replaced)
                assert item.range == types.Range(start=begin, end=end)  # the item's, extended
            extended += len(got.items)
    assert ours_seen and extended, "the tiny model offered nothing to check"


async def test_a_selected_item_with_a_backwards_range_is_an_invalid_params_error(
    gpt2_session: EditorSession,
):
    session = gpt2_session
    await session.initialize(capabilities=capabilities_with_inline_completion())
    session.open(URI, SOURCE)
    backwards = types.Range(types.Position(4, 19), types.Position(4, 10))
    with pytest.raises(Exception, match="ends before it starts"):
        await inline(session, URI, 4, 19, selected=types.SelectedCompletionInfo(backwards, "x"))
    assert isinstance(await inline(session, URI, 4, 19), types.InlineCompletionList)
