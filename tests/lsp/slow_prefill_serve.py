"""`codehone serve` with an engine whose background prefill is slow on purpose: the test double
behind tests/lsp/test_background_prefill.py.

A request that arrives during a background prefill, a cancel then, and a newer prefill
stopping an older one can only be tested while a prefill is surely still running, and the
tiny test models prefill a document in milliseconds. Here each chunk of a background prefill
first sleeps ``CHUNK_S``, then runs on the real engine; the first chunk also creates the file
named by ``$CODEHONE_TEST_PREFILL_STARTED``, so a test knows a prefill is under way. Requests
decode with the real engine at its real speed. Everything else is the real server.

Run it as ``python slow_prefill_serve.py serve --model DIR`` (the arguments of ``codehone``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import codehone.lsp.models.service
from codehone.cli import main
from codehone.core.engine.kv_cache import KVCache
from codehone.core.engine.session import Engine

CHUNK_S = 0.4
STARTED = "CODEHONE_TEST_PREFILL_STARTED"


class SlowPrefillEngine(Engine):
    def _prefill_chunk(self, chunk: list[int], cache: KVCache) -> KVCache:
        marker = os.environ.get(STARTED)
        if marker:
            Path(marker).touch()
        time.sleep(CHUNK_S)
        return super()._prefill_chunk(chunk, cache)


if __name__ == "__main__":
    codehone.lsp.models.service.Engine = SlowPrefillEngine  # type: ignore[misc]  # the one it loads
    sys.exit(main())
