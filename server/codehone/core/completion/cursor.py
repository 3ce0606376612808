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
    def line_prefix(self) -> str:
        start = max(self.text.rfind("\n", 0, self.offset), self.text.rfind("\r", 0, self.offset))
        return self.text[start + 1 : self.offset]

    @property
    def line_suffix(self) -> str:
        match = _LINE_BREAK.search(self.text, self.offset)
        return self.text[self.offset : match.start() if match else len(self.text)]


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
