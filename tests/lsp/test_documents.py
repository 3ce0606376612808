"""End to end: the server's copy of a document after hostile didChange ranges, seen through
the completions it gives (the tiny model is deterministic: the same text, the same answer)."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from test_completion import SOURCE, URI, complete, expected_text, item_text

from codehone.check.client import EditorSession


def change(session: EditorSession, version: int, *edits: tuple[types.Range, str]) -> None:
    """A raw didChange (the client helper only makes well-formed ranges)."""
    session.client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=r, text=t) for r, t in edits
            ],
        )
    )


def span(a: tuple[int, int], b: tuple[int, int]) -> types.Range:
    return types.Range(start=types.Position(*a), end=types.Position(*b))


async def test_reversed_and_past_the_end_ranges(
    gpt2_session: EditorSession, tiny_model_dir: Path
) -> None:
    """A reversed range replaces the text between its two positions (pygls duplicated the
    text between them); a range past the end of the file appends at its end."""
    session = gpt2_session
    await session.initialize(capabilities=types.ClientCapabilities())
    session.open(URI, SOURCE)
    # line 11 is "        total += ": "+=" (characters 14-16) becomes "=", given backwards
    change(session, 2, (span((11, 16), (11, 14)), "="))
    lines = SOURCE.split("\n")
    lines[11] = "        total = "
    text = "\n".join(lines)
    want = expected_text(tiny_model_dir, text, 11, 16)
    assert want is not None
    assert item_text(await complete(session, 11, 16), 11, 16) == want

    # past the last line: clamped to the end of the file
    change(session, 3, (span((40, 3), (50, 0)), "def tail():\n    return "))
    text += "def tail():\n    return "
    end = text.count("\n")
    character = len(text.split("\n")[-1])
    want = expected_text(tiny_model_dir, text, end, character)
    assert want is not None
    assert item_text(await complete(session, end, character), end, character) == want
