"""textDocument/didOpen, didChange, didClose: which documents the user touched last, and where
the next completion may come (a background prefill there: codehone.lsp.prefill).

pygls keeps the documents' text itself; codehone also needs their order of use, because the
``otherDocuments`` option gives the model the most recently edited other files as context, and
when each was last edited, because the server-side debounce waits for a quiet document; a
closed document's state goes with it (including what the menu last offered there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer


def register(server: CodehoneServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodehoneServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.recency.touch(params.text_document.uri)
        ls.debouncer.edited(params.text_document.uri)
        ls.prefill.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodehoneServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.recency.touch(params.text_document.uri)
        ls.debouncer.edited(params.text_document.uri)
        ls.prefill.changed(params.text_document.uri, params.content_changes)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodehoneServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.recency.forget(params.text_document.uri)
        ls.debouncer.forget(params.text_document.uri)
        ls.menu_offers.pop(params.text_document.uri, None)
        ls.prefill.forget(params.text_document.uri)
