"""LSP positions to string offsets, clamped, in any of the negotiated position encodings.

LSP lines end at \\n, \\r\\n or \\r (nothing else, unlike ``str.splitlines``), and a position's
``character`` counts UTF-16 code units unless the client negotiated UTF-8 or UTF-32. Positions
past the end of a line or of the file are clamped; a position that splits a character's code
units (inside a UTF-16 surrogate pair) is an error, reported to the client, not a crash.
"""

from __future__ import annotations

import re

from codehone.core.errors import CodehoneError

_LINE_END = re.compile(r"\r\n|\r|\n")


class PositionError(CodehoneError):
    """A position that cannot address a character boundary."""


def _units(char: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(char.encode("utf-8"))
    if encoding == "utf-32":
        return 1
    return 2 if ord(char) > 0xFFFF else 1


def line_span(text: str, line: int) -> tuple[int, int] | None:
    """Start and end offsets (end excludes the line break) of ``line``; None past the end."""
    start = 0
    for _ in range(line):
        match = _LINE_END.search(text, start)
        if match is None:
            return None
        start = match.end()
    match = _LINE_END.search(text, start)
    return start, (match.start() if match else len(text))


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """The string offset of an LSP position, clamped to its line and to the file."""
    if line < 0 or character < 0:
        raise PositionError(f"negative position ({line}, {character})")
    span = line_span(text, line)
    if span is None:  # past the last line: the end of the file
        return len(text)
    start, end = span
    units = 0
    offset = start
    while offset < end and units < character:
        units += _units(text[offset], encoding)
        offset += 1
    if units > character:
        raise PositionError(f"position ({line}, {character}) is inside a character's code units")
    return offset


def line_count(text: str) -> int:
    return len(_LINE_END.findall(text)) + 1


def position_at(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """The LSP (line, character) of a string offset."""
    offset = max(0, min(offset, len(text)))
    line = 0
    line_start = 0
    for match in _LINE_END.finditer(text, 0, offset):
        if match.end() > offset:
            break
        line += 1
        line_start = match.end()
    character = sum(_units(c, encoding) for c in text[line_start:offset])
    return line, character
