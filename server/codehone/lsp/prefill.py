"""Background prefill: the server's guess of where the next completion will be, computed ahead.

A request in a place the prefix cache does not cover (the first one in a freshly opened file,
the first after a jump to another part of it) prefills its whole prompt: on a real model on a
CPU that costs most of a second for a thousand tokens. The user is not typing yet at those
moments (reading the file, moving the cursor), so the server prefills then, off the event loop
and behind every request (codehone.lsp.models.service): the part of the prompt at the guessed
place that stays the same while the user types on that line (the prompt of a cursor at the
line's start, cut where the text before the cursor ends). The first real request there reuses
it through the engine's prefix cache and prefills only its own line.

The guesses: on ``didOpen``, the document's last line (the prompt there holds the whole file
within the prompt budget, so a request anywhere in that part reuses the file's text up to its
own line); on a ``didChange`` on another line than the last prompt's (a jump; the next line,
which Enter leads to, is not one); on a completion request on another line, while it waits in
the server's debounce (``debounceMs``). Typing on one line schedules nothing. Each prefill that fed tokens is
logged in one line (tokens, reused, ms); the ``backgroundPrefill`` option turns it off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from codehone.core.completion.cursor import CursorContext
from codehone.lsp.models.service import ModelService

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

log = logging.getLogger("codehone.prefill")


class BackgroundPrefill:
    """Where each document's last prompt was built (its line), and the prefills it schedules."""

    def __init__(self, server: CodehoneServer) -> None:
        self.server = server
        self._lines: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def opened(self, uri: str) -> None:
        """A document was opened: prefill for a cursor at its end."""
        self._schedule(uri, None)

    def changed(self, uri: str, changes: list[types.TextDocumentContentChangeEvent]) -> None:
        """The document changed: a change on another line than the last prompt's (but the
        next) is a jump there."""
        last = changes[-1] if changes else None
        if not isinstance(last, types.TextDocumentContentChangePartial):
            return  # the whole text replaced: no place to guess
        lines = last.text.split("\n")
        start = last.range.start
        line = start.line + len(lines) - 1
        character = len(lines[-1]) + (start.character if len(lines) == 1 else 0)
        if self._moved(uri, line):
            self._schedule(uri, types.Position(line, character))  # the cursor after the change

    def requested(self, uri: str, position: types.Position, waits: bool) -> None:
        """A completion request arrived at ``position``: on another line, and if it ``waits``
        in the debounce first, prefill there meanwhile (a request that does not wait prefills
        its prompt itself at once)."""
        if waits and self._moved(uri, position.line):
            self._schedule(uri, position)
        self._lines[uri] = position.line

    @property
    def running(self) -> int:
        """Prefills scheduled and not finished yet."""
        return len(self._tasks)

    def forget(self, uri: str) -> None:
        self._lines.pop(uri, None)

    def _moved(self, uri: str, line: int) -> bool:
        last = self._lines.get(uri)
        return last is None or line not in (last, last + 1)

    def _schedule(self, uri: str, position: types.Position | None) -> None:
        """Prefill for a cursor at ``position`` (None: the end of the document)."""
        server = self.server
        options = server.options
        if not (options.enable and options.background_prefill):
            return
        service = server.models.service_for(uri)
        if service is None:
            return
        found = server.guessed_context(uri, position, options)
        if found is None:
            return
        line, ctx = found
        self._lines[uri] = line
        task = asyncio.ensure_future(self._run(uri, line, ctx, service))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, uri: str, line: int, ctx: CursorContext, service: ModelService) -> None:
        try:
            done = await service.prefill(ctx, self.server.options.completion)
        except Exception as exc:  # a background guess must never take the server down
            log.warning("background prefill for %s failed: %s", uri, exc)
            return
        if done is not None:
            log.info(
                "background prefill %s line %d: tokens=%d reused=%d prefilled=%d ms=%.1f%s",
                uri,
                line,
                done.tokens,
                done.reused,
                done.fed,
                done.ms,
                " (stopped: a request came first)" if done.stopped else "",
            )
