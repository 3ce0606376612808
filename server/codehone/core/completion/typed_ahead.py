"""Typing what the suggestion says: when the user types the first characters of the completion
just offered, the rest of it is the answer, without a model call.

A user who follows a suggestion by typing it (rather than accepting it with Tab) sends a
request at each keystroke, and each would cost a model call: the prefill of what was typed and
the decode of the rest of the line. With a 135M-parameter model on 2 CPU cores that is about as
long as the pause between two keystrokes, so the next keystroke cancels it and nothing shows.
But the model already said how the line goes on: the completion, less what was typed, is what
a new greedy call would give in nearly every case (it can differ when the typed characters are
tokenized otherwise than the generated tokens were). Editors do the same on their side (VS
Code keeps ghost text that the typing matches); this makes the server agree and answer at once.

A ``TypedAhead`` remembers the greedy completion of the last request per key (one kind of
request for one document) and answers from it only when nothing else changed: the text after
the cursor, the other files given as context, the options; the typed text has no line break
and leaves some of the completion to offer. A request for several candidates (a menu) is never
answered from it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from codehone.core.completion.completer import CompletionOutcome
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.postprocess import Completion

REASON = "typed ahead"  # the CompletionOutcome.reason of an answer from the remembered one


@dataclass(frozen=True)
class _Offer:
    """What was offered at a cursor."""

    ctx: CursorContext
    options: CompletionOptions
    completion: Completion


class TypedAhead:
    """The last completion offered per key, and the answers typing it gives."""

    def __init__(self) -> None:
        self._offers: dict[str, _Offer] = {}
        self.hits = 0  # requests answered from an offer
        self._lock = threading.Lock()  # the server's event loop and its model worker both ask

    def remember(
        self, key: str, ctx: CursorContext, options: CompletionOptions, outcome: CompletionOutcome
    ) -> None:
        """Keep ``outcome``'s greedy completion for ``key`` (or forget the key's offer when it
        has none)."""
        if not outcome.completions or not outcome.completions[0].text:
            self.forget(key)
            return
        with self._lock:
            self._offers[key] = _Offer(ctx, options, outcome.completions[0])

    def forget(self, key: str) -> None:
        with self._lock:
            self._offers.pop(key, None)

    def answer(
        self, key: str, ctx: CursorContext, options: CompletionOptions
    ) -> CompletionOutcome | None:
        """The rest of the completion offered for ``key`` when ``ctx`` is that offer's text with
        the completion's first characters typed at its cursor; None otherwise (and a request for
        ``key`` that it cannot answer then replaces the offer with its own outcome)."""
        with self._lock:
            return self._answer(key, ctx, options)

    def _answer(
        self, key: str, ctx: CursorContext, options: CompletionOptions
    ) -> CompletionOutcome | None:
        offer = self._offers.get(key)
        if offer is None or options != offer.options:
            return None
        typed = typed_after(offer.ctx, ctx)
        completion = offer.completion
        if (
            typed is None
            or len(typed) >= len(completion.text)
            or not completion.text.startswith(typed)
        ):
            return None
        rest = Completion(completion.text[len(typed) :], completion.replaced)
        self._offers[key] = _Offer(ctx, options, rest)
        self.hits += 1
        return CompletionOutcome([rest], REASON)


def typed_after(earlier: CursorContext, later: CursorContext) -> str | None:
    """What was typed at ``earlier``'s cursor to make ``later`` (nothing else changed: the
    text after the cursor, the other files; no line break typed), or None."""
    before, after, text = earlier.offset, len(earlier.text) - earlier.offset, later.text
    if (
        later.offset <= before
        or len(text) - later.offset != after
        or (later.neighbors, later.header) != (earlier.neighbors, earlier.header)
    ):
        return None
    typed = text[before : later.offset]
    if "\n" in typed or "\r" in typed:
        return None
    if not text.startswith(earlier.text[:before]) or not text.endswith(earlier.text[before:]):
        return None
    return typed
