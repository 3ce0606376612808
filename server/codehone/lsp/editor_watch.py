"""The editor watch: a session ends when the editor that opened it dies, so no server is orphaned.

LSP's ``initialize`` names the editor's process (``processId``). Any integer can arrive there:
-1 would make ``os.kill(-1, 0)`` ask about every process (always "alive"), 2**40 raises
OverflowError inside the watch, and a process that is not running at ``initialize`` (another
PID namespace, a typo) would end the session two seconds in. So a processId must be a running
process between 1 and ``PID_MAX``; otherwise one line is logged and, over stdio (where this
process's parent is the editor, or the wrapper the editor started), the parent is watched
instead: when it dies this process is re-parented and ``os.getppid()`` changes. Over TCP the
parent is whatever started the server, and the closing connection already ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger("codehone.editor_watch")

PID_MAX = 4_194_304  # Linux's PID_MAX_LIMIT (2**22): /proc/sys/kernel/pid_max is at most this
INTERVAL_S = 2.0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def watch_editor(
    process_id: object,
    end_session: Callable[[], None],
    parent_is_editor: bool,
    interval_s: float = INTERVAL_S,
) -> asyncio.Task[None] | None:
    """Watch ``process_id`` (an ``initialize`` request's) and call ``end_session`` once it is
    gone; None when nothing is watched (no processId, or a bad one over TCP)."""
    if process_id is None:
        return None
    if (
        isinstance(process_id, int)
        and not isinstance(process_id, bool)
        and 1 <= process_id <= PID_MAX
        and process_alive(process_id)
    ):
        pid = process_id
        return _start(
            lambda: process_alive(pid), f"the editor process {pid}", end_session, interval_s
        )
    if not parent_is_editor:
        log.warning(
            "processId %.40r is not a running process: the editor is not watched", process_id
        )
        return None
    parent = os.getppid()
    log.warning(
        "processId %.40r is not a running process: watching the parent process %d instead",
        process_id,
        parent,
    )
    return _start(
        lambda: os.getppid() == parent, f"the parent process {parent}", end_session, interval_s
    )


def _start(
    alive: Callable[[], bool], what: str, end_session: Callable[[], None], interval_s: float
) -> asyncio.Task[None]:
    async def watch() -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not alive():
                log.warning("%s is gone: ending the session", what)
                end_session()
                return

    return asyncio.ensure_future(watch())
