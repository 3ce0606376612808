"""A loaded model served to requests: engine + tokenizer + completer, off the event loop.

Inference runs on one worker thread (one decode at a time per model); the event loop only
awaits it. A cancelled request sets its cancel event, which the decode loop checks between
steps, so the worker is free again within one step. A new request for a document makes the
one still running for that document stop early: the newest keystroke wins.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from codehone.completion import Completer, CompletionOptions, CompletionOutcome, CursorContext
from codehone.engine import Engine
from codehone.model_dir import ModelDir
from codehone.providers import Device, ProviderChoice, choose_provider
from codehone.tokenizer import TextTokenizer

log = logging.getLogger("codehone.model")


class ModelService:
    def __init__(self, model_dir: ModelDir, provider: ProviderChoice) -> None:
        self.model_dir = model_dir
        self.provider = provider
        self.engine = Engine(model_dir, provider)
        self.completer = Completer(self.engine, TextTokenizer(model_dir.tokenizer_path))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codehone-model")
        self._in_flight: dict[str, threading.Event] = {}
        self.latencies_ms: deque[float] = deque(maxlen=1000)

    @classmethod
    def load(cls, model_dir: ModelDir, device: Device = "auto") -> ModelService:
        provider = choose_provider(device)
        service = cls(model_dir, provider)
        log.info(
            "model %s (%s, %d layers) loaded on %s",
            model_dir.root,
            model_dir.manifest.architecture,
            model_dir.manifest.kv.num_layers,
            provider.name,
        )
        return service

    def complete_blocking(
        self, ctx: CursorContext, options: CompletionOptions
    ) -> CompletionOutcome:
        return self.completer.complete(ctx, options)

    async def complete(
        self, key: str, ctx: CursorContext, options: CompletionOptions
    ) -> CompletionOutcome:
        """Complete off the event loop; a newer request with the same key stops this one."""
        cancel = threading.Event()
        previous = self._in_flight.get(key)
        if previous is not None:
            previous.set()
        self._in_flight[key] = cancel
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executor, self.completer.complete, ctx, options, cancel
            )
        except asyncio.CancelledError:
            cancel.set()  # the request was cancelled: stop decoding at the next step
            raise
        finally:
            if self._in_flight.get(key) is cancel:
                del self._in_flight[key]
        if "total" in outcome.timings_ms and outcome.text is not None:
            self.latencies_ms.append(outcome.timings_ms["total"])
        return outcome

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {}
        ordered = sorted(self.latencies_ms)

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {
            "p50": pick(0.5),
            "p95": pick(0.95),
            "p99": pick(0.99),
            "last": self.latencies_ms[-1],
        }

    def close(self) -> None:
        for event in self._in_flight.values():
            event.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
