"""What the text around the cursor says before anything is tokenized: whether to complete at
all (``skip_reason``) and whether to complete one line or a block (``choose_mode``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from codehone.core.completion.options import CompletionOptions

Mode = Literal["single_line", "multi_line"]
_IDENTIFIER_CHAR = re.compile(r"\w")
_LINE_BREAK = re.compile(r"\r|\n")
_INDENT = re.compile(r"\s*")
# What the steps here and in post-processing read of the cursor's line, on each side of the
# cursor: a line can be megabytes long (minified code, data), and copying or stripping all of
# it for every request would cost what the line costs. The prompt itself is cut by tokens.
LINE_WINDOW = 4096
# A line ending in one of these opens a block: complete several lines.
_BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->", " do", " then")


@dataclass(frozen=True)
class Neighbor:
    """Another open file given to the model as context before the current one."""

    header: str  # one line naming it, e.g. "# path: util.py\n"
    text: str


@dataclass(frozen=True)
class CursorContext:
    """The text around the cursor that completion looks at.

    ``neighbors`` (most relevant first) and ``header`` (the current file's own path line, put
    between them and its text) are optional context from other open files."""

    text: str
    offset: int
    neighbors: tuple[Neighbor, ...] = ()
    header: str = ""

    @property
    def line_start(self) -> int:
        """The offset where the cursor's line starts."""
        text, offset = self.text, self.offset
        return max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1

    @property
    def line_prefix(self) -> str:
        """The cursor's line before the cursor (its last LINE_WINDOW characters at most)."""
        return self.text[max(self.line_start, self.offset - LINE_WINDOW) : self.offset]

    @property
    def line_suffix(self) -> str:
        """The cursor's line after the cursor (its first LINE_WINDOW characters at most)."""
        end = min(len(self.text), self.offset + LINE_WINDOW)
        match = _LINE_BREAK.search(self.text, self.offset, end)
        return self.text[self.offset : match.start() if match else end]

    @property
    def indent(self) -> str:
        """The whitespace that starts the cursor's line (before the cursor)."""
        start = self.line_start
        match = _INDENT.match(self.text, start, min(self.offset, start + LINE_WINDOW))
        return match.group() if match else ""


def skip_reason(ctx: CursorContext) -> str | None:
    """Should we complete here? None if yes, else why not."""
    suffix = ctx.line_suffix
    if suffix and _IDENTIFIER_CHAR.match(suffix[0]):
        return "cursor is in the middle of a word"
    return None


def choose_mode(ctx: CursorContext, options: CompletionOptions) -> Mode:
    """One line, or a block: ``options.multiline`` decides, or with "auto" the line before the
    cursor (a block opener with nothing after the cursor: a block)."""
    if options.multiline != "auto":
        return "multi_line" if options.multiline == "always" else "single_line"
    before = ctx.line_prefix.rstrip()
    if before.endswith(_BLOCK_OPENERS) and not ctx.line_suffix.strip():
        return "multi_line"
    return "single_line"
