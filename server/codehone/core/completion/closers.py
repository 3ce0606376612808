"""How a completion meets the closing brackets and quotes already after the cursor.

Editors close brackets and quotes as they are typed: after ``os.listdir(`` the line is
``os.listdir(|)``. A model that sees only the text before the cursor (and often one that sees
both) completes the call and goes on, ``path):``; inserted as it is, the line reads
``os.listdir(path):)``. The other way round, a ``)`` at the end of ``path.join(path)`` closes
the bracket the completion opened itself, not the one after the cursor, and must stay.

So the completion is read bracket by bracket, against the closing characters that follow the
cursor on its line (``)``, ``]``, ``}`` and quotes, innermost first): a closer that takes the
completion's own bracket depth below zero re-types the next one of them. Then
(``merge_closers``):

- the completion re-types the whole rest of the line at its end (``x)`` before ``)``): that
  part is dropped, as the line already has it;
- it re-types closers and stops there (``a)`` before ``))``): those closers are dropped;
- it re-types closers and goes on (``path):`` before ``)``, ``a), b`` before ``))``): the text
  stays whole and replaces the closers it re-typed, which an editor does when the item's range
  covers them (the way Copilot and Tabby merge auto-closed brackets);
- nothing re-typed, or a closer that does not match (``]`` where ``)`` follows): unchanged.

Inside a string (the cursor before a closing quote, or a quote the completion opened) only that
quote and backslash escapes count; a string does not go on past a line break.
"""

from __future__ import annotations

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = frozenset(")]}")
_QUOTES = frozenset("\"'`")
CLOSERS = frozenset(")]}\"'`")


def leading_closers(line_suffix: str) -> str:
    """The closing characters right after the cursor (the start of the line's suffix)."""
    end = 0
    while end < len(line_suffix) and line_suffix[end] in CLOSERS:
        end += 1
    return line_suffix[:end]


def retyped_closers(text: str, closers: str) -> tuple[list[int], bool]:
    """Where ``text`` re-types ``closers`` (in order: their indices in ``text``), and whether
    ``text`` leaves nothing of its own open (every bracket and string it opens it closes, and
    its brackets match)."""
    inner: list[str] = []  # what closes the brackets and strings ``text`` opened, innermost last
    found: list[int] = []
    index = 0
    while index < len(text):
        char = text[index]
        expected = closers[len(found)] if len(found) < len(closers) else None
        if inner:
            quote = inner[-1] if inner[-1] in _QUOTES else None
        else:
            quote = expected if expected in _QUOTES else None
        if quote is not None:  # inside a string
            if char == "\\":
                index += 2
                continue
            if char == "\n" and quote != "`":
                return found, False  # the string was not closed on its line
            if char == quote:
                if inner:
                    inner.pop()
                else:
                    found.append(index)
        elif char in _OPEN:
            inner.append(_OPEN[char])
        elif char in _QUOTES:
            inner.append(char)
        elif char in _CLOSE:
            if inner:
                if inner[-1] != char:
                    return found, False  # brackets that do not match: stop reading
                inner.pop()
            elif char == expected:
                found.append(index)
            elif expected is not None:
                return found, False  # it closes something other than what follows the cursor
        index += 1
    return found, not inner


def merge_closers(text: str, line_suffix: str) -> tuple[str, int]:
    """``text`` fitted to the rest of the cursor's line: the text to insert, and how many
    characters right after the cursor it replaces (closers only, so as many in any position
    encoding). The text may come back empty: the completion only re-typed what is there."""
    suffix = line_suffix.rstrip()
    if not suffix:
        return text, 0
    closers = leading_closers(suffix)
    rest = suffix.strip()
    if text.endswith(rest):  # the whole rest of the line, re-typed at the end
        head = text[: len(text) - len(rest)]
        found, closed = retyped_closers(head, closers)
        if not found and closed:
            return head.rstrip(), 0
    found, _ = retyped_closers(text, closers)
    if not found:
        return text, 0
    after = "".join(
        char for index, char in enumerate(text) if index >= found[0] and index not in found
    )
    if not after.strip():  # nothing but the re-typed closers after the first of them
        return text[: found[0]].rstrip(), 0
    return text, len(found)
