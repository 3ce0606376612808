"""Helpers that build LSP objects, kept apart from the handlers."""

from __future__ import annotations

from lsprotocol import types

_LABEL_CHARS = 80


def completion_item(
    text: str, position: types.Position, model_name: str, rank: int = 0
) -> types.CompletionItem:
    """A menu item inserting ``text`` at ``position``; ``rank`` 0 is the preselected best."""
    first_line = text.split("\n", 1)[0].strip() or text.strip()
    label = first_line if len(first_line) <= _LABEL_CHARS else first_line[: _LABEL_CHARS - 1] + "…"
    return types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Text,
        detail=f"codehone · {model_name}",
        documentation=text,  # a plain string: valid whatever formats the client lists
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start=position, end=position), new_text=text),
        sort_text=str(rank),  # at most 8 candidates: one digit sorts right
        preselect=rank == 0,
    )


def inline_completion_item(text: str, position: types.Position) -> types.InlineCompletionItem:
    return types.InlineCompletionItem(
        insert_text=text, range=types.Range(start=position, end=position)
    )
