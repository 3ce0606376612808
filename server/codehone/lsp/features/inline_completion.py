"""textDocument/inlineCompletion (LSP 3.18): the continuation as ghost text.

VS Code and Neovim 0.12 show inline completions as grey text after the cursor, accepted with
Tab; that is how code completion models are meant to be used. pygls advertises the capability
only because it is registered with ``InlineCompletionOptions``. Requests triggered by typing
(Automatic) are debounced when ``debounceMs`` is set; Invoked ones never are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codehone.lsp.objects import inline_completion_item

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer


def register(server: CodehoneServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CodehoneServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        answer = await ls.run_completion(
            "inlineCompletion", params.text_document.uri, params.position, automatic
        )
        items = []
        if answer is not None:
            items = [inline_completion_item(text, params.position) for text in answer.texts]
        return types.InlineCompletionList(items=items)
