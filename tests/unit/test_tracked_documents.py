"""The server's workspace: didOpen / didChange as pygls delivers them, applied by EditableText
without pygls's whole-document line splitting."""

from __future__ import annotations

import logging

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument

from codehone.lsp.text_documents import TrackedDocument, TrackedWorkspace

URI = "file:///w/big.py"


def edit(ws: TrackedWorkspace, version: int, a: tuple[int, int], b: tuple[int, int], text: str):
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(*a), end=types.Position(*b)), text=text
    )
    ws.update_text_document(types.VersionedTextDocumentIdentifier(uri=URI, version=version), change)


def test_edits_never_split_the_document_into_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """pygls rebuilt the whole text from its lines for every keystroke (a 5 MB line: seconds
    on the event loop): an edit here must not ask for the document's lines at all."""

    def refuse(self: TextDocument) -> None:
        raise AssertionError("the whole document was split into lines")

    monkeypatch.setattr(TextDocument, "lines", property(refuse))
    ws = TrackedWorkspace(None)
    ws.put_text_document(
        types.TextDocumentItem(uri=URI, language_id="python", version=1, text="x" * 5_000_000)
    )
    edit(ws, 2, (0, 5_000_000), (0, 5_000_000), "\ny = ")
    document = ws.get_text_document(URI)
    assert isinstance(document, TrackedDocument) and document.version == 2
    assert document.source.endswith("x\ny = ") and len(document.source) == 5_000_005
    assert document.offset_at(types.Position(1, 4)) == 5_000_005
    ws.update_text_document(
        types.VersionedTextDocumentIdentifier(uri=URI, version=3),
        types.TextDocumentContentChangeWholeDocument(text="fresh\n"),
    )
    assert document.source == "fresh\n" and document.offset_at(types.Position(9, 9)) == 6


def test_a_reversed_range_is_logged_and_normalised(caplog: pytest.LogCaptureFixture) -> None:
    ws = TrackedWorkspace(None)
    ws.put_text_document(
        types.TextDocumentItem(uri=URI, language_id="python", version=1, text="abcdef")
    )
    with caplog.at_level(logging.WARNING, logger="codehone.documents"):
        edit(ws, 2, (0, 4), (0, 1), "-")
    assert ws.get_text_document(URI).source == "a-ef"
    assert "after its end" in caplog.text and URI in caplog.text
