"""Helpers that build LSP objects, kept apart from the handlers."""

from __future__ import annotations

from lsprotocol import types

_LABEL_CHARS = 80


def completion_item(text: str, position: types.Position, model_name: str) -> types.CompletionItem:
    first_line = text.split("\n", 1)[0].strip() or text.strip()
    label = first_line if len(first_line) <= _LABEL_CHARS else first_line[: _LABEL_CHARS - 1] + "…"
    return types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Text,
        detail=f"codehone · {model_name}",
        documentation=types.MarkupContent(kind=types.MarkupKind.PlainText, value=text),
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start=position, end=position), new_text=text),
        sort_text="0",
        preselect=True,
    )


def inline_completion_item(text: str, position: types.Position) -> types.InlineCompletionItem:
    return types.InlineCompletionItem(
        insert_text=text, range=types.Range(start=position, end=position)
    )
