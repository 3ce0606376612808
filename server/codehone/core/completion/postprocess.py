"""From generated text to a completion: where it ends, loops the model fell into, characters
that never belong in one, and how it meets the closing brackets after the cursor (``closers``).

The same rules run twice: as the decode loop's stop rule (so generation stops as soon as the
completion is complete or looping, not at max_new_tokens) and on the final text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from codehone.core.completion.closers import merge_closers
from codehone.core.completion.cursor import CursorContext, Mode
from codehone.core.completion.prompt import Prompt

# C0 control characters but tab and newline, and DEL: never part of a completion.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Repetition guard: a token n-gram of up to this many tokens repeated to fill _LOOP_MIN_TOKENS
# (and at least 3 times) is a loop; three equal non-blank lines in a row are one too.
_LOOP_MAX_PERIOD = 8
_LOOP_MIN_TOKENS = 16


@dataclass(frozen=True)
class Completion:
    """A completion: ``text`` goes in at the cursor, replacing the ``replaced`` characters right
    after it (closing brackets and quotes on its line that the text re-types; 0: an insertion).
    They are ASCII, so ``replaced`` counts the same in every LSP position encoding."""

    text: str
    replaced: int = 0


def cut_completion(text: str, mode: Mode, base_indent: str) -> tuple[str, bool]:
    """Cut generated text where the completion should end; True if it is complete there."""
    if mode == "single_line":
        for index, char in enumerate(text):
            if char in "\r\n":
                return text[:index], True
        return text, False
    lines = text.split("\n")
    kept: list[str] = [lines[0]]
    for line in lines[1:-1]:  # the last piece may be an unfinished line
        if not line.strip():
            return "\n".join(kept), True  # a blank line ends the block
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) <= len(base_indent):
            return "\n".join(kept), True  # indentation dropped back: the block ended
        kept.append(line)
    if len(lines) > 1:
        last = lines[-1]
        indent = last[: len(last) - len(last.lstrip())]
        if last.strip() and len(indent) <= len(base_indent):
            return "\n".join(kept), True  # an unfinished line that already dedented
        kept.append(last)
    return "\n".join(kept), False


def cut_repeated_lines(text: str) -> tuple[str, bool]:
    """Cut at a line the model repeats: three equal non-blank finished lines in a row keep the
    first one only. True if it cut."""
    lines = text.split("\n")
    finished = lines[:-1]  # the last piece may be an unfinished line
    for index in range(2, len(finished)):
        line = finished[index]
        if line.strip() and line == finished[index - 1] == finished[index - 2]:
            return "\n".join(lines[: index - 1]), True
    return text, False


def token_loop_length(ids: Sequence[int]) -> int | None:
    """If ``ids`` end in a loop (one n-gram of at most _LOOP_MAX_PERIOD tokens repeated at
    least three times and over at least _LOOP_MIN_TOKENS tokens), how many ids to keep: up to
    the end of the loop's first round. None when there is no loop."""
    n = len(ids)
    for period in range(1, _LOOP_MAX_PERIOD + 1):
        span = period * max(3, -(-_LOOP_MIN_TOKENS // period))
        if span > n:
            continue
        start = n - span
        if all(ids[i] == ids[i - period] for i in range(start + period, n)):
            return start + period
    return None


def strip_control_chars(text: str) -> str:
    """Remove NUL and the other C0 control characters except tab and newline, and DEL."""
    return _CONTROL_CHARS.sub("", text)


def postprocess(text: str, ctx: CursorContext, prompt: Prompt) -> Completion | None:
    """Trim the generated text into a completion, or None if nothing useful is left."""
    text = text.replace("\ufffd", "")  # a character cut in half by the token limit
    text, _ = cut_completion(text, prompt.mode, prompt.base_indent)
    text, _ = cut_repeated_lines(text)
    text = strip_control_chars(text)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    text, replaced = merge_closers(text, ctx.line_suffix)
    if not text.strip():
        return None
    return Completion(text, replaced)
