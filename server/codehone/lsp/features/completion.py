"""textDocument/completion: the model's continuation at the cursor as a menu item.

Every editor has a completion menu, so this is the feature that works everywhere. Each item
puts the generated text at the cursor with a ``textEdit``: an empty range, or one that covers
the closing brackets and quotes after the cursor that the text re-types (``path):`` before an
auto-closed ``)``), so the editor replaces them instead of keeping a second copy. The range
never starts before the cursor, so the editor never replaces a word it guessed itself. With
``candidates`` > 1 the greedy completion comes first, then the sampled alternatives.

When the menu opens by itself: for a client that shows ghost text (it declares
``textDocument.inlineCompletion``: VS Code, Neovim 0.12) never, as the ghost text is the
automatic channel; the menu comes when asked for (Ctrl+Space, <C-x><C-o>). A menu that opens
on a space, ``(`` or a line break sits over ordinary typing, and the next Enter then accepts
it instead of breaking the line. For a client without inline completion the menu is the only
channel, so it opens after ``.``, where every language server opens it and where a user
expects a menu anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from codehone.lsp.objects import completion_item
from codehone.lsp.server import client_supports

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

# Typing (a trigger character, or re-asking an incomplete list) is automatic; Invoked is not.
_AUTOMATIC = (
    types.CompletionTriggerKind.TriggerCharacter,
    types.CompletionTriggerKind.TriggerForIncompleteCompletions,
)
MENU_ONLY_TRIGGER_CHARACTERS = ["."]


def trigger_characters(capabilities: Any) -> list[str] | None:
    """The trigger characters for a client with these capabilities (None: declare none)."""
    if client_supports(capabilities, "text_document.inline_completion"):
        return None
    return list(MENU_ONLY_TRIGGER_CHARACTERS)


def declare_trigger_characters(ls: CodehoneServer, capabilities: Any) -> None:
    """Set the menu's trigger characters for this client before ``initialize`` answers (pygls
    builds the server's capabilities from the registered options after the handler ran)."""
    options = ls.protocol.fm.feature_options[types.TEXT_DOCUMENT_COMPLETION]
    options.trigger_characters = trigger_characters(capabilities)


def register(server: CodehoneServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: CodehoneServer, params: types.CompletionParams
    ) -> types.CompletionList:
        uri = params.text_document.uri
        automatic = params.context is not None and params.context.trigger_kind in _AUTOMATIC
        answer = await ls.run_completion("completion", uri, params.position, automatic)
        completions = answer.completions if answer is not None else []
        ls.remember_menu_offer(uri, params.position, completions)
        model_name = answer.model_name if answer is not None else ""
        items = [
            completion_item(completion, params.position, model_name, rank)
            for rank, completion in enumerate(completions)
        ]
        return types.CompletionList(is_incomplete=True, items=items)
