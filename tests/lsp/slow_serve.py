"""`codehone serve` with an engine that is slow on purpose: the test double behind
tests/lsp/test_cancel.py.

Cancelling a request that is running on the model's worker can only be tested with a request
that is surely still running there when the cancel arrives, and the tiny test models finish in
milliseconds. Here every generation first waits (up to ``STALL_S``; the request's cancel ends
the wait, as the decode loop's check between steps ends a real decode), then decodes with the
real engine. Everything else is the real server.

Run it as ``python slow_serve.py serve --model DIR`` (the arguments of ``codehone``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

import codehone.lsp.models.service
from codehone.cli import main
from codehone.core.engine.protocol import Generation, Sampler, StopConditions
from codehone.core.engine.session import Engine

STALL_S = 3.0


class SlowEngine(Engine):
    def generate(
        self,
        prompt_ids: Sequence[int],
        stop: StopConditions,
        sample: Sampler | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        if stop.cancel is not None:
            stop.cancel.wait(STALL_S)
        else:
            time.sleep(STALL_S)
        return super().generate(prompt_ids, stop, sample, first_token_ids)


if __name__ == "__main__":
    codehone.lsp.models.service.Engine = SlowEngine  # type: ignore[misc]  # the one it loads
    sys.exit(main())
