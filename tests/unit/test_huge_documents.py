"""A huge document costs a completion no more than a small one: the cursor's line is read
within a window, and only a window of text is ever tokenized."""

from __future__ import annotations

import pytest

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import LINE_WINDOW, CursorContext, choose_mode, skip_reason
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import ModelDir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer


def test_the_cursor_line_is_read_within_a_window() -> None:
    line = "    values = [" + "1, " * 2_000_000  # one 6 MB line
    text = "def f():\n" + line + "\n    return values\n"
    ctx = CursorContext(text, len("def f():\n") + len(line))  # the end of the long line
    assert len(ctx.line_prefix) == LINE_WINDOW and line.endswith(ctx.line_prefix)
    assert ctx.indent == "    "  # from the line's real start, not the window's
    assert ctx.line_suffix == ""
    middle = CursorContext(text, len("def f():\n") + 16)
    assert len(middle.line_suffix) == LINE_WINDOW and middle.line_prefix == line[:16]
    assert skip_reason(middle) is None and choose_mode(middle, CompletionOptions()) == "single_line"
    short = CursorContext("if x:\n\tpass\n", 7)
    assert (short.line_prefix, short.line_suffix, short.indent) == ("\t", "pass", "\t")


def test_a_completion_tokenizes_a_window_of_a_huge_document(
    model: ModelDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 MB of code before the cursor and 30 MB after it: what reaches the tokenizer is a few
    thousand characters, however the text around the cursor looks."""
    completer = Completer(
        Engine(model, choose_provider("cpu")), TextTokenizer(model.tokenizer_path)
    )
    encoded: list[int] = []
    real = TextTokenizer.encode

    def counting(self: TextTokenizer, text: str) -> list[int]:
        encoded.append(len(text))
        return real(self, text)

    monkeypatch.setattr(TextTokenizer, "encode", counting)
    block = "def helper(x):\n    return x * 2 + 1\n\n"
    half = block * (30_000_000 // len(block))
    for before in (half + "def g(y):\n    return ", half + "x = [" + "7, " * 1_000_000):
        encoded.clear()
        outcome = completer.complete(
            CursorContext(before + "\n" + half, len(before)), CompletionOptions()
        )
        assert outcome.prompt_tokens > 0, outcome.reason
        assert encoded and sum(encoded) < 64 * CompletionOptions().max_prompt_tokens
