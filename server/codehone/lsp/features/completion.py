"""textDocument/completion: the model's continuation at the cursor as a menu item.

Every editor has a completion menu, so this is the feature that works everywhere. Each item
inserts the generated text at the cursor with a ``textEdit`` (an empty range), so the editor
never replaces a word it guessed itself. With ``candidates`` > 1 the greedy completion comes
first, then the sampled alternatives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codehone.lsp.objects import completion_item

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

# Typing (a trigger character, or re-asking an incomplete list) is automatic; Invoked is not.
_AUTOMATIC = (
    types.CompletionTriggerKind.TriggerCharacter,
    types.CompletionTriggerKind.TriggerForIncompleteCompletions,
)


def register(server: CodehoneServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", " ", "\n"]),
    )
    async def completion(
        ls: CodehoneServer, params: types.CompletionParams
    ) -> types.CompletionList:
        automatic = params.context is not None and params.context.trigger_kind in _AUTOMATIC
        answer = await ls.run_completion(
            "completion", params.text_document.uri, params.position, automatic
        )
        items = []
        if answer is not None:
            items = [
                completion_item(text, params.position, answer.model_name, rank)
                for rank, text in enumerate(answer.texts)
            ]
        return types.CompletionList(is_incomplete=True, items=items)
