"""End to end: textDocument/inlineCompletion (ghost text) from the real server process."""

from __future__ import annotations

from pathlib import Path

from lsp_session import inline
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


async def test_inline_completion(gpt2_session: EditorSession, tiny_model_dir: Path):
    result = await gpt2_session.initialize(capabilities=capabilities_with_inline_completion())
    assert result.capabilities.inline_completion_provider is not None
    gpt2_session.open(URI, SOURCE)
    model_dir = load_model_dir(tiny_model_dir)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    answered = 0
    for line, character in [(4, 19), (3, 11), (5, 15), (0, 9)]:
        got = await inline(gpt2_session, URI, line, character, automatic=True)
        ctx = CursorContext(SOURCE, offset_at(SOURCE, line, character))
        expected = completer.complete(ctx, CompletionOptions()).text
        if expected is None:
            assert len(got.items) == 0
            continue
        answered += 1
        (item,) = got.items
        assert item.insert_text == expected
        cursor = types.Position(line=line, character=character)
        assert item.range == types.Range(start=cursor, end=cursor)
    assert answered > 0
