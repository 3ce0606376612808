"""Server-side debounce: while the user types, only the newest request of each kind per
document matters.

Every completion request takes a ticket for its document and its kind (the menu,
``completion``, or ghost text, ``inlineCompletion``): an editor that shows both asks for both
on one keystroke, and neither may cost the other its answer, so a request supersedes only the
older ones of its own kind. One triggered automatically (by typing) first waits until the
document has been quiet for ``debounce_ms`` (since its last didOpen/didChange); if a newer
request of the same kind for the same document arrived in the meantime it is dropped with an
empty answer, before any model work. Measuring from the last edit rather than from the request
means a client that asks a while after the keystroke pays little or no second delay, while one
that asks on every keystroke gets the full one; a client that debounces by itself can also say
so and skip this wait (``CodehoneServer.run_completion``). Requests the user asked for
explicitly (Invoked) never wait.
"""

from __future__ import annotations

import asyncio
import itertools
import time


class Debouncer:
    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], int] = {}
        self._edited: dict[str, float] = {}
        self._tickets = itertools.count(1)

    def edited(self, uri: str) -> None:
        """The document changed now."""
        self._edited[uri] = time.monotonic()

    def ticket(self, uri: str, kind: str) -> int:
        """Register a new request of ``kind`` for ``uri``; it supersedes the ones of the same
        kind before it."""
        ticket = next(self._tickets)
        self._latest[uri, kind] = ticket
        return ticket

    def is_latest(self, uri: str, kind: str, ticket: int) -> bool:
        return self._latest.get((uri, kind)) == ticket

    async def settle(self, uri: str, kind: str, ticket: int, delay_ms: int) -> bool:
        """Wait until ``uri`` has been quiet for ``delay_ms`` (at most that long); True if the
        request is still the newest of its kind for ``uri``."""
        if delay_ms > 0:
            quiet_s = time.monotonic() - self._edited.get(uri, float("-inf"))
            remaining = delay_ms / 1000 - quiet_s
            if remaining > 0:
                await asyncio.sleep(remaining)
        return self.is_latest(uri, kind, ticket)

    def forget(self, uri: str) -> None:
        for key in [key for key in self._latest if key[0] == uri]:
            del self._latest[key]
        self._edited.pop(uri, None)
