"""Helpers that build LSP objects, kept apart from the handlers."""

from __future__ import annotations

from lsprotocol import types

from codehone.core.completion.postprocess import Completion

_LABEL_CHARS = 80


def replaced_range(start: types.Position, end: types.Position, replaced: int) -> types.Range:
    """From ``start`` to ``replaced`` characters past ``end`` on its line: what an item whose
    text re-types the closers after ``end`` replaces (closers are ASCII: one unit each in any
    position encoding)."""
    return types.Range(
        start=start, end=types.Position(line=end.line, character=end.character + replaced)
    )


def completion_item(
    completion: Completion, position: types.Position, model_name: str, rank: int = 0
) -> types.CompletionItem:
    """A menu item putting ``completion`` at ``position``; ``rank`` 0 is the preselected best."""
    text = completion.text
    first_line = text.split("\n", 1)[0].strip() or text.strip()
    label = first_line if len(first_line) <= _LABEL_CHARS else first_line[: _LABEL_CHARS - 1] + "…"
    edit_range = replaced_range(position, position, completion.replaced)
    return types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Text,
        detail=f"codehone · {model_name}",
        documentation=text,  # a plain string: valid whatever formats the client lists
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=edit_range, new_text=text),
        sort_text=str(rank),  # at most 8 candidates: one digit sorts right
        preselect=rank == 0,
    )


def inline_completion_item(text: str, edit_range: types.Range) -> types.InlineCompletionItem:
    return types.InlineCompletionItem(insert_text=text, range=edit_range)
