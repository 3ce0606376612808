"""Line-completion cases cut from held-out files: what ``codehone eval`` scores and what
``codehone check`` samples when a project has no cases file, so both measure the same thing.

In randomly chosen lines (seeded), the cursor goes at a random point inside the line; the text
before it is the prompt, the rest of the line the target. Pure Python: the checker imports it
without the training stack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


class HasText(Protocol):
    """A held-out file: its path in the project and its text (``prepare.SourceFile``)."""

    path: str
    text: str


@dataclass(frozen=True)
class LineCase:
    path: str
    text: str  # the document with the rest of the line removed
    offset: int  # the cursor
    target: str  # the rest of the line


def line_cases(files: list[HasText], count: int, seed: int, min_chars: int = 4) -> list[LineCase]:
    """``count`` cases from lines of ``files``, chosen and cut with a fixed seed."""
    candidates: list[tuple[int, int, str]] = []  # (file index, line start offset, line)
    for index, f in enumerate(files):
        start = 0
        for line in f.text.split("\n"):
            if len(line.strip()) >= min_chars:
                candidates.append((index, start, line))
            start += len(line) + 1
    rng = random.Random(seed)
    chosen = sorted(rng.sample(candidates, min(count, len(candidates))))
    cases = []
    for index, start, line in chosen:
        text = files[index].text
        indent = len(line) - len(line.lstrip())
        end = len(line.rstrip())
        cursor = rng.randint(indent, end - 1)  # at least one character is left to complete
        cases.append(
            LineCase(
                path=files[index].path,
                text=text[: start + cursor] + text[start + len(line) :],
                offset=start + cursor,
                target=line[cursor:end],
            )
        )
    return cases
