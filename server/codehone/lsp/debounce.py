"""Server-side debounce: while the user types, only the newest request per document matters.

Every completion request takes a ticket for its document. One triggered automatically (by
typing) first waits until the document has been quiet for ``debounce_ms`` (since its last
didOpen/didChange); if a newer request for the same document arrived in the meantime it is
dropped with an empty answer, before any model work. Measuring from the last edit rather than
from the request means a client that already debounced on its side (VS Code's extension waits
before it asks) pays no second delay, while one that asks on every keystroke (Neovim's inline
completion) gets the full one. Requests the user asked for explicitly (Invoked) never wait.
"""

from __future__ import annotations

import asyncio
import itertools
import time


class Debouncer:
    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self._edited: dict[str, float] = {}
        self._tickets = itertools.count(1)

    def edited(self, key: str) -> None:
        """The document changed now."""
        self._edited[key] = time.monotonic()

    def ticket(self, key: str) -> int:
        """Register a new request for ``key``; it supersedes the ones before it."""
        ticket = next(self._tickets)
        self._latest[key] = ticket
        return ticket

    def is_latest(self, key: str, ticket: int) -> bool:
        return self._latest.get(key) == ticket

    async def settle(self, key: str, ticket: int, delay_ms: int) -> bool:
        """Wait until ``key`` has been quiet for ``delay_ms`` (at most that long); True if the
        request is still the newest for ``key``."""
        if delay_ms > 0:
            quiet_s = time.monotonic() - self._edited.get(key, float("-inf"))
            remaining = delay_ms / 1000 - quiet_s
            if remaining > 0:
                await asyncio.sleep(remaining)
        return self.is_latest(key, ticket)

    def forget(self, key: str) -> None:
        self._latest.pop(key, None)
        self._edited.pop(key, None)
