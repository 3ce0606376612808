"""LSP positions to string offsets, clamped, in any of the negotiated position encodings.

LSP lines end at \\n, \\r\\n or \\r (nothing else, unlike ``str.splitlines``), and a position's
``character`` counts UTF-16 code units unless the client negotiated UTF-8 or UTF-32. Positions
past the end of a line or of the file are clamped (the LSP specification's rule for a
character past the line's end, and the file's end for a line past the last); a position that
splits a character's code units (inside a UTF-16 surrogate pair) is an error, reported to the
client, not a crash.

A ``LineIndex`` holds where each line starts, so a position is found without scanning the text
before it; an edit updates the index by scanning only the inserted text and its two neighbours
(``LineIndex.edited``). Within a line, code units are counted at C speed (encoding a slice of
the line, or nothing at all for ASCII text), never a character at a time in Python.
"""

from __future__ import annotations

import re

import numpy as np

from codehone.core.errors import CodehoneError

_LINE_END = re.compile(r"\r\n|\r|\n")


class PositionError(CodehoneError):
    """A position that cannot address a character boundary."""


def scan_line_starts(text: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """The offsets ``p`` with ``lo <= p <= hi`` (default: the text's end) where a line
    starts after a line break (offset 0 is not included). Looks at ``text[lo - 1 : hi + 1]``
    only: whether ``p`` starts a line depends on the characters at ``p - 1`` and ``p``. The
    characters are compared as an array (numpy), not one at a time."""
    hi = len(text) if hi is None else min(hi, len(text))
    base = max(0, lo - 1)
    region = text[base : hi + 1]
    if "\n" not in region and "\r" not in region:
        return np.zeros(0, dtype=np.int64)
    if region.isascii():
        codes = np.frombuffer(region.encode("ascii"), dtype=np.uint8)
    else:  # one 32-bit unit per code point, so indexes stay string offsets
        codes = np.frombuffer(region.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    newline = codes == 10
    ends = newline.copy()  # a line ends at \n, and at \r not followed by \n
    ends[:-1] |= (codes[:-1] == 13) & ~newline[1:]
    ends[-1] |= bool(codes[-1] == 13)  # a \r last in the region: the next line starts after
    starts = np.flatnonzero(ends).astype(np.int64) + 1 + base
    return starts[(starts >= max(lo, 1)) & (starts <= hi)]


def _units(text: str, encoding: str) -> int:
    """Code units of ``text`` in the position encoding."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _column_offset(text: str, start: int, end: int, character: int, encoding: str) -> int:
    """The offset of ``character`` code units after ``start`` on a line ending at ``end``,
    clamped to ``end``. A code point is at least one unit, so the offset is at most
    ``start + character``: only that slice of the line is looked at."""
    stop = min(end, start + character)
    if encoding == "utf-32" or text.isascii():
        return stop
    segment = text[start:stop]
    if segment.isascii():
        return stop
    if encoding == "utf-8":
        data = segment.encode("utf-8", "surrogatepass")
        if len(data) <= character:
            return stop
        try:
            return start + len(data[:character].decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise PositionError(
                f"character {character} is inside a character's code units"
            ) from None
    data = segment.encode("utf-16-le", "surrogatepass")
    if len(data) // 2 <= character:
        return stop
    last = int.from_bytes(data[2 * character - 2 : 2 * character], "little") if character else 0
    following = int.from_bytes(data[2 * character : 2 * character + 2], "little")
    if 0xD800 <= last < 0xDC00 and 0xDC00 <= following < 0xE000:
        raise PositionError(f"character {character} is inside a character's code units")
    return start + len(data[: 2 * character].decode("utf-16-le", "surrogatepass"))


class LineIndex:
    """Where each line of a text starts (``starts[0] == 0``), as an int64 array."""

    def __init__(self, starts: np.ndarray) -> None:
        self.starts = starts

    @classmethod
    def of(cls, text: str) -> LineIndex:
        return cls(np.concatenate([np.zeros(1, dtype=np.int64), scan_line_starts(text)]))

    @property
    def line_count(self) -> int:
        return len(self.starts)

    def line_span(self, text: str, line: int) -> tuple[int, int] | None:
        """Start and end offsets (end excludes the line break) of ``line``; None past the end."""
        if line < 0 or line >= len(self.starts):
            return None
        start = int(self.starts[line])
        if line + 1 == len(self.starts):
            return start, len(text)
        end = int(self.starts[line + 1]) - 1
        if end > start and text[end] == "\n" and text[end - 1] == "\r":
            end -= 1
        return start, end

    def offset_at(self, text: str, line: int, character: int, encoding: str = "utf-16") -> int:
        """The string offset of an LSP position, clamped to its line and to the file."""
        if line < 0 or character < 0:
            raise PositionError(f"negative position ({line}, {character})")
        span = self.line_span(text, line)
        if span is None:  # past the last line: the end of the file
            return len(text)
        try:
            return _column_offset(text, span[0], span[1], character, encoding)
        except PositionError:
            raise PositionError(
                f"position ({line}, {character}) is inside a character's code units"
            ) from None

    def position_at(self, text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
        """The LSP (line, character) of a string offset (clamped to the text)."""
        offset = max(0, min(offset, len(text)))
        line = int(np.searchsorted(self.starts, offset, side="right")) - 1
        start = int(self.starts[line])
        if offset > start and text[offset - 1] == "\r" and text[offset : offset + 1] == "\n":
            offset -= 1  # between \r and \n: the end of the line
        return line, _units(text[start:offset], encoding)

    def edited(self, new_text: str, start: int, old_end: int, inserted: int) -> LineIndex:
        """The index of ``new_text``: this index's text with ``[start, old_end)`` replaced by
        ``inserted`` characters. Only the inserted text and the characters on either side of it
        are scanned; the other line starts are kept, those after the edit shifted."""
        starts = self.starts
        delta = inserted - (old_end - start)
        head = starts[: int(np.searchsorted(starts, max(start, 1), side="left"))]
        tail = starts[int(np.searchsorted(starts, old_end + 1, side="left")) :] + delta
        middle = scan_line_starts(new_text, start, start + inserted)
        return LineIndex(np.concatenate([head, middle, tail]))


def line_span(text: str, line: int) -> tuple[int, int] | None:
    """Start and end offsets (end excludes the line break) of ``line``; None past the end."""
    return LineIndex.of(text).line_span(text, line)


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """The string offset of an LSP position, clamped to its line and to the file."""
    return LineIndex.of(text).offset_at(text, line, character, encoding)


def line_count(text: str) -> int:
    return LineIndex.of(text).line_count


def position_at(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of a string offset."""
    return LineIndex.of(text).position_at(text, offset, encoding)
