"""The server's copy of each open document: pygls's workspace, with edits applied in place.

pygls applies an incremental ``didChange`` by splitting the whole document into lines and
writing every one of them out again, and locates a position by splitting it again: a
one-character edit on a 5 MB single-line file held the event loop for 2-5 s. Its clamping and
line breaks also differ from the specification's (``str.splitlines`` breaks at form feeds and
U+2028; a reversed range duplicated or dropped text). Here each document is a
``codehone.core.text_document.EditableText``: an edit costs what the edit costs, a reversed
range is normalised and an unaddressable one rejected, each with a warning in the log.

``install_workspace`` swaps pygls's workspace for this one once ``initialize`` has created it (pygls
builds its own inside its ``initialize`` handler, before the server's handler runs).
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace

from codehone.core.text_document import EditableText

log = logging.getLogger("codehone.documents")


class TrackedDocument(TextDocument):
    """A pygls TextDocument whose text lives in an ``EditableText``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = EditableText(self._source or "")
        self._source = None  # the buffer holds the text

    @property
    def source(self) -> str:
        return self.buffer.text

    @property
    def encoding(self) -> str:
        return str(self.position_codec.encoding or types.PositionEncodingKind.Utf16)

    def offset_at(self, position: types.Position) -> int:
        """The string offset of an LSP position (clamped; PositionError inside a character)."""
        return self.buffer.offset_at(position.line, position.character, self.encoding)

    def apply_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start, end = change.range.start, change.range.end
            warning = self.buffer.apply(
                (start.line, start.character), (end.line, end.character), change.text, self.encoding
            )
            if warning is not None:
                log.warning("%s: %s", self.uri, warning)
        else:
            self.buffer.replace_all(change.text)


class TrackedWorkspace(Workspace):
    """pygls's Workspace making TrackedDocuments."""

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return TrackedDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )


def install_workspace(protocol: Any) -> None:
    """Replace the workspace pygls just made in ``initialize`` by a TrackedWorkspace with the
    same root, folders and position encoding (no document is open yet)."""
    old: Workspace = protocol.workspace
    new = TrackedWorkspace(
        old.root_uri, old._sync_kind, list(old.folders.values()), old.position_encoding
    )
    protocol._workspace = new
