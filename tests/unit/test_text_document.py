"""EditableText and the line index: an edit costs what the edit costs, and no range, however
hostile, corrupts the text."""

from __future__ import annotations

import random

import pytest

from codehone.core import text_positions
from codehone.core.text_document import EditableText
from codehone.core.text_positions import LineIndex, PositionError, position_at

PIECES = ["a", "bc", " ", "\n", "\r\n", "\r", "😀", "中", "é", "\t", "\n\n", "\r\r\n"]


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(n))


def test_an_edited_index_is_the_index_of_the_new_text() -> None:
    """Every kind of edit, at every kind of boundary (a \\r\\n split or joined, an edit at
    either end): the updated index equals the one built from scratch."""
    rng = random.Random(7)
    for _ in range(3000):
        text = random_text(rng, rng.randrange(0, 12))
        index = LineIndex.of(text)
        for _ in range(4):
            start = rng.randrange(0, len(text) + 1)
            end = rng.randrange(start, len(text) + 1)
            inserted = random_text(rng, rng.randrange(0, 4))
            text = text[:start] + inserted + text[end:]
            index = index.edited(text, start, end, len(inserted))
            assert index.starts.tolist() == LineIndex.of(text).starts.tolist(), repr(text)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_positions_round_trip_through_the_index(encoding: str) -> None:
    rng = random.Random(3)
    for _ in range(300):
        text = random_text(rng, rng.randrange(0, 15))
        index = LineIndex.of(text)
        for offset in range(len(text) + 1):
            if 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n":
                continue  # between \r and \n: not a position
            line, character = index.position_at(text, offset, encoding)
            assert index.offset_at(text, line, character, encoding) == offset


def test_apply_matches_a_plain_splice() -> None:
    rng = random.Random(11)
    for _ in range(500):
        text = random_text(rng, rng.randrange(0, 15))
        doc = EditableText(text)
        for _ in range(5):
            a = rng.randrange(0, len(text) + 1)
            b = rng.randrange(a, len(text) + 1)
            if any(0 < x < len(text) and text[x - 1 : x + 1] == "\r\n" for x in (a, b)):
                continue
            new = random_text(rng, rng.randrange(0, 3))
            start, end = position_at(text, a), position_at(text, b)
            assert doc.apply(start, end, new) is None
            text = text[:a] + new + text[b:]
            assert doc.text == text


def test_a_reversed_range_is_the_range_between_its_positions() -> None:
    """pygls duplicated the text between them (or dropped the edit); VS Code's Range swaps
    reversed positions, and so does the server, with a warning."""
    doc = EditableText("alpha\nbeta\ngamma\n")
    warning = doc.apply((2, 3), (0, 2), "X")
    assert warning is not None and "after its end" in warning
    assert doc.text == "alXma\n"
    assert doc.index.starts.tolist() == [0, 6]


def test_positions_past_the_end_are_clamped_as_the_spec_says() -> None:
    doc = EditableText("ab\ncd")
    assert doc.apply((0, 99), (0, 99), "!") is None  # past the line's end: its end
    assert doc.text == "ab!\ncd"
    assert doc.apply((7, 0), (9, 3), "?") is None  # past the last line: the file's end
    assert doc.text == "ab!\ncd?"
    assert doc.apply((1, 1), (40, 0), "") is None  # a range ending past the end
    assert doc.text == "ab!\nc"


def test_a_position_inside_a_character_rejects_the_change() -> None:
    doc = EditableText("x😀y")
    warning = doc.apply((0, 2), (0, 3), "Z")  # UTF-16 unit 2 is the emoji's second half
    assert warning is not None and "kept as it was" in warning
    assert doc.text == "x😀y"
    with pytest.raises(PositionError):
        doc.offset_at(0, 2)
    assert doc.offset_at(0, 3) == 2 and doc.offset_at(0, 3, "utf-32") == 3
    assert doc.offset_at(0, 5, "utf-8") == 2
    with pytest.raises(PositionError):
        doc.offset_at(0, 3, "utf-8")


def test_an_edit_scans_only_what_it_inserts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-character edit at the end of a 5 MB line, and in the middle of a 200,000-line
    file: the text is scanned for line breaks over three characters, not the document."""
    scanned: list[int] = []
    real = text_positions.scan_line_starts

    def counting(text: str, lo: int = 0, hi: int | None = None):  # type: ignore[no-untyped-def]
        top = len(text) if hi is None else min(hi, len(text))
        scanned.append(top + 1 - max(0, lo - 1))
        return real(text, lo, hi)

    for text, position in (
        ("x" * 5_000_000, (0, 5_000_000)),
        ("line of code\n" * 200_000, (100_000, 5)),
    ):
        doc = EditableText(text)
        monkeypatch.setattr(text_positions, "scan_line_starts", counting)
        scanned.clear()
        assert doc.apply(position, position, "y") is None
        assert scanned == [3]
        monkeypatch.setattr(text_positions, "scan_line_starts", real)
