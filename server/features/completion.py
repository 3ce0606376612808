"""textDocument/completion: the model's continuation at the cursor as a menu item.

Every editor has a completion menu, so this is the feature that works everywhere. The item
inserts the generated text at the cursor with a ``textEdit`` (an empty range), so the editor
never replaces a word it guessed itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from codehone.lsp_objects import completion_item

if TYPE_CHECKING:
    from codehone.lsp_server import CodehoneServer


def register(server: CodehoneServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", " ", "\n"]),
    )
    async def completion(
        ls: CodehoneServer, params: types.CompletionParams
    ) -> types.CompletionList:
        outcome, position = await ls.run_completion(
            "completion", params.text_document.uri, params.position
        )
        items = []
        if outcome is not None and outcome.text is not None:
            items.append(completion_item(outcome.text, position, ls.model.model_dir.root.name))
        return types.CompletionList(is_incomplete=True, items=items)
