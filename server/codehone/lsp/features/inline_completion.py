"""textDocument/inlineCompletion (LSP 3.18): the continuation as ghost text.

VS Code and Neovim 0.12 show inline completions as grey text after the cursor, accepted with
Tab; that is how code completion models are meant to be used. pygls advertises the capability
only because it is registered with ``InlineCompletionOptions``. Each item's range starts at the
cursor and covers the closing brackets and quotes after it that the text re-types, as the menu
item's does (``codehone.lsp.features.completion``). Requests triggered by typing (Automatic)
are debounced when ``debounceMs`` is set, unless the client said it debounces them itself
(the VS Code extension does); Invoked ones never are.

**With the menu open.** While the suggestion menu is open, VS Code asks again and passes the
selected menu item, ``context.selectedCompletionInfo`` (the range it would replace and its
text), and shows ghost text only when an item extends that one (same start, its text starting
with the item's). What shows then:

- the selected item is one of ours (the menu's last answer for this document at this position
  had that text): no ghost text. The menu row is already the completion, and ghost text behind
  it would show the same text twice; once it is accepted, the next request brings the
  continuation.
- any other item (a language server's ``path``, a word from the file): the completion as if
  that item were already accepted, the cursor after it, each answer being the item's text
  followed by the model's continuation, over the item's range (extended over re-typed
  closers). Nothing when the model has nothing to add after it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from codehone.lsp.objects import inline_completion_item, replaced_range

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

log = logging.getLogger("codehone.server")


def register(server: CodehoneServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CodehoneServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        uri, position = params.text_document.uri, params.position
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        selected = params.context.selected_completion_info
        if selected is not None and ls.offered_in_menu(uri, selected):
            log.info(
                "request=%s inlineCompletion: the menu's selected item is ours: no ghost text",
                ls.protocol.msg_id,
            )
            return types.InlineCompletionList(items=[])
        answer = await ls.run_completion("inlineCompletion", uri, position, automatic, selected)
        if answer is None:
            return types.InlineCompletionList(items=[])
        if selected is None:
            items = [
                inline_completion_item(c.text, replaced_range(position, position, c.replaced))
                for c in answer.completions
            ]
        else:
            start, end = selected.range.start, selected.range.end
            items = [
                inline_completion_item(
                    selected.text + c.text, replaced_range(start, end, c.replaced)
                )
                for c in answer.completions
            ]
        return types.InlineCompletionList(items=items)
