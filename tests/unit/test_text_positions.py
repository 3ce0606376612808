"""LSP positions <-> string offsets: line ends, clamping and the three position encodings."""

from __future__ import annotations

import re

import pytest

from codehone.core.errors import CodehoneError
from codehone.core.text_positions import (
    PositionError,
    line_count,
    line_span,
    offset_at,
    position_at,
)

ENCODINGS = ("utf-16", "utf-8", "utf-32")
EMOJI = "😀"  # U+1F600: 2 UTF-16 units, 4 UTF-8 bytes, 1 code point
CJK = "中"  # U+4E2D: 1 UTF-16 unit, 3 UTF-8 bytes
MIXED = f"def f(x):\r\n    s = '{EMOJI}{CJK}é'\r\tz{EMOJI}\n\n{CJK}{CJK} = 1\r\n\r{EMOJI}"


def units(char: str, encoding: str) -> int:
    """Independent reference: how many code units ``char`` takes in ``encoding``."""
    if encoding == "utf-8":
        return len(char.encode("utf-8"))
    if encoding == "utf-16":
        return len(char.encode("utf-16-le")) // 2
    return 1


def reference_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, splitting at \\r\\n, \\r and \\n only."""
    spans = []
    start = 0
    for match in re.finditer(r"\r\n|\r|\n", text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


# -- line ends -------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_each_line_end_starts_a_new_line(newline: str) -> None:
    text = newline.join(["alpha", "be", "", "gamma"])
    starts = [0, 5 + len(newline), 7 + 2 * len(newline), 7 + 3 * len(newline)]
    for line, start in enumerate(starts):
        assert offset_at(text, line, 0) == start
        assert position_at(text, start) == (line, 0)
    assert offset_at(text, 1, 2) == starts[1] + 2
    assert line_span(text, 0) == (0, 5)
    assert line_span(text, 1) == (starts[1], starts[1] + 2)
    assert line_span(text, 2) == (starts[2], starts[2])
    assert line_span(text, 3) == (starts[3], len(text))
    assert line_span(text, 4) is None
    assert line_count(text) == 4


def test_crlf_is_one_line_end_and_lone_cr_lf_are_each_one() -> None:
    text = "a\r\nb\n\rc\r\rd"
    # lines: "a", "b", "", "c", "", "d"  (\n\r is two line ends, \r\n is one)
    assert line_count(text) == 6
    assert [line_span(text, n) for n in range(7)] == [
        (0, 1),
        (3, 4),
        (5, 5),
        (6, 7),
        (8, 8),
        (9, 10),
        None,
    ]
    assert offset_at(text, 5, 0) == text.index("d")


def test_other_unicode_line_breaks_are_not_line_ends() -> None:
    # str.splitlines would split at these; LSP does not.
    text = "a\u2028b\x0bc\x0cd\x1ce\x85f\u2029g\nh"
    assert line_count(text) == 2
    assert line_span(text, 0) == (0, text.index("\n"))
    assert offset_at(text, 0, 6) == 6
    assert position_at(text, text.index("h")) == (1, 0)


def test_line_end_is_not_part_of_the_line() -> None:
    text = "ab\r\ncd"
    assert offset_at(text, 0, 2) == 2
    assert offset_at(text, 0, 3) == 2  # clamped before the \r\n, never between \r and \n
    assert offset_at(text, 0, 99) == 2


# -- clamping --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_character_past_end_of_line_clamps_to_the_line_end(encoding: str) -> None:
    text = f"x{EMOJI}\nnext line"
    assert offset_at(text, 0, 50, encoding) == 2
    assert offset_at(text, 1, 10_000, encoding) == len(text)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_line_past_end_of_file_clamps_to_the_end(encoding: str) -> None:
    text = "one\ntwo\n"
    assert offset_at(text, 2, 0, encoding) == len(text)  # the empty last line
    assert offset_at(text, 3, 0, encoding) == len(text)
    assert offset_at(text, 1_000_000, 7, encoding) == len(text)


def test_offset_past_end_clamps_in_position_at() -> None:
    assert position_at("ab\ncd", 999) == (1, 2)
    assert position_at("ab\ncd", -5) == (0, 0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_empty_text(encoding: str) -> None:
    assert offset_at("", 0, 0, encoding) == 0
    assert offset_at("", 0, 9, encoding) == 0
    assert offset_at("", 4, 2, encoding) == 0
    assert position_at("", 0, encoding) == (0, 0)
    assert position_at("", 3, encoding) == (0, 0)
    assert line_span("", 0) == (0, 0)
    assert line_span("", 1) is None
    assert line_count("") == 1


# -- encodings -------------------------------------------------------------------------------


def test_default_encoding_is_utf16() -> None:
    text = f"{EMOJI}x"
    assert offset_at(text, 0, 2) == offset_at(text, 0, 2, "utf-16") == 1
    assert position_at(text, 2) == position_at(text, 2, "utf-16") == (0, 3)


def test_astral_character_widths() -> None:
    text = f"a{EMOJI}b"
    assert offset_at(text, 0, 3, "utf-16") == 2  # a=1, emoji=2
    assert offset_at(text, 0, 5, "utf-8") == 2  # a=1, emoji=4
    assert offset_at(text, 0, 2, "utf-32") == 2  # a=1, emoji=1
    assert position_at(text, 2, "utf-16") == (0, 3)
    assert position_at(text, 2, "utf-8") == (0, 5)
    assert position_at(text, 2, "utf-32") == (0, 2)
    assert position_at(text, 3, "utf-16") == (0, 4)
    assert position_at(text, 3, "utf-8") == (0, 6)
    assert position_at(text, 3, "utf-32") == (0, 3)


def test_cjk_and_accented_widths() -> None:
    text = f"{CJK}é{CJK}!"
    assert position_at(text, 3, "utf-16") == (0, 3)
    assert position_at(text, 3, "utf-32") == (0, 3)
    assert position_at(text, 3, "utf-8") == (0, 3 + 2 + 3)
    assert offset_at(text, 0, 8, "utf-8") == 3
    assert offset_at(text, 0, 5, "utf-8") == 2
    assert offset_at(text, 0, 3, "utf-16") == 3


def test_inside_a_surrogate_pair_is_an_error() -> None:
    text = f"a{EMOJI}b"
    with pytest.raises(PositionError, match="inside"):
        offset_at(text, 0, 2, "utf-16")


@pytest.mark.parametrize("character", [2, 3, 4])
def test_inside_a_utf8_sequence_is_an_error(character: int) -> None:
    text = f"a{EMOJI}b"
    with pytest.raises(PositionError):
        offset_at(text, 0, character, "utf-8")


@pytest.mark.parametrize("character", [1, 2])
def test_inside_a_cjk_utf8_sequence_is_an_error(character: int) -> None:
    with pytest.raises(PositionError):
        offset_at(CJK, 0, character, "utf-8")


def test_utf32_never_splits_a_character() -> None:
    text = f"{EMOJI}{EMOJI}{CJK}"
    assert [offset_at(text, 0, c, "utf-32") for c in range(5)] == [0, 1, 2, 3, 3]


@pytest.mark.parametrize(("line", "character"), [(-1, 0), (0, -1), (-3, -3)])
def test_negative_position_is_an_error(line: int, character: int) -> None:
    with pytest.raises(PositionError, match="negative"):
        offset_at("abc\ndef", line, character)


def test_position_error_is_a_codehone_error() -> None:
    assert issubclass(PositionError, CodehoneError)


# -- property-style round trips --------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_position_matches_the_reference(encoding: str) -> None:
    lines = reference_lines(MIXED)
    assert line_count(MIXED) == len(lines)
    checked_errors = 0
    for line in range(len(lines) + 2):
        if line >= len(lines):
            assert offset_at(MIXED, line, 0, encoding) == len(MIXED)
            assert line_span(MIXED, line) is None
            continue
        start, end = lines[line]
        assert line_span(MIXED, line) == (start, end)
        boundaries = {0: start}  # code units from the line start -> offset
        total = 0
        for offset in range(start, end):
            total += units(MIXED[offset], encoding)
            boundaries[total] = offset + 1
        for character in range(total + 3):
            if character in boundaries:
                offset = offset_at(MIXED, line, character, encoding)
                assert offset == boundaries[character]
                assert position_at(MIXED, offset, encoding) == (line, character)
            elif character > total:  # past the end of the line: clamped
                assert offset_at(MIXED, line, character, encoding) == end
                assert position_at(MIXED, end, encoding) == (line, total)
            else:  # splits a character's code units
                with pytest.raises(PositionError):
                    offset_at(MIXED, line, character, encoding)
                checked_errors += 1
    if encoding != "utf-32":
        assert checked_errors > 0  # the sample really does exercise mid-character positions


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_offset_round_trips(encoding: str) -> None:
    for offset in range(len(MIXED) + 1):
        if MIXED[offset - 1 : offset + 1] == "\r\n":
            continue  # between \r and \n: not a position any client can name
        line, character = position_at(MIXED, offset, encoding)
        assert offset_at(MIXED, line, character, encoding) == offset


def test_round_trip_on_a_document_without_trailing_newline_and_with_one() -> None:
    for text in ("a\nb", "a\nb\n", "a\r\nb\r\n", "\n\n\n"):
        for offset in range(len(text) + 1):
            if text[offset - 1 : offset + 1] == "\r\n":
                continue
            assert offset_at(text, *position_at(text, offset)) == offset
