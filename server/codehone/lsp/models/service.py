"""A loaded model served to requests: engine + tokenizer + completer, off the event loop.

Inference runs on one worker thread (one decode at a time per model); the event loop only
awaits it. A cancelled request sets its cancel event, which the decode loop checks between
steps, so the worker is free again within one step. A new request with the same key makes
the one still running under it stop early: the newest keystroke wins (the server's key is one
kind of request for one document, so a menu request and a ghost-text request never stop each
other).

When another model replaces this one (a project's configuration changed), ``retire`` stops it
taking requests, lets the one in flight finish, then drops the engine, so the ONNX Runtime
session and its KV buffers are freed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from codehone.core.completion.completer import Completer, CompletionOutcome
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.engine.session import Engine
from codehone.core.engine.speculation import serving_draft_tokens
from codehone.core.errors import GenerationError
from codehone.core.model_dir import ModelDir
from codehone.core.providers import Device, ProviderChoice, choose_provider
from codehone.core.tokenizer import TextTokenizer

log = logging.getLogger("codehone.model")


class ModelService:
    def __init__(self, model_dir: ModelDir, provider: ProviderChoice) -> None:
        self.model_dir = model_dir
        self.provider = provider
        self._engine: Engine | None = Engine(
            model_dir, provider, draft_tokens=serving_draft_tokens(provider)
        )
        self._completer: Completer | None = Completer(
            self._engine, TextTokenizer(model_dir.tokenizer_path)
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codehone-model")
        self._in_flight: dict[str, threading.Event] = {}
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.requests = 0  # requests that reached the engine
        self.prefix_hits = 0  # of which reused part of the previous request's KV cache
        self.cancelled = 0  # requests cancelled while waiting for or running on the worker
        self.closed = False

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

    @property
    def name(self) -> str:
        return self.model_dir.root.name

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise GenerationError(f"the model {self.model_dir.root} was unloaded")
        return self._engine

    @property
    def completer(self) -> Completer:
        if self._completer is None:
            raise GenerationError(f"the model {self.model_dir.root} was unloaded")
        return self._completer

    def complete_blocking(
        self,
        ctx: CursorContext,
        options: CompletionOptions,
        sampling: SamplingOptions | None = None,
    ) -> CompletionOutcome:
        return self.completer.complete(ctx, options, None, sampling)

    async def complete(
        self,
        key: str,
        ctx: CursorContext,
        options: CompletionOptions,
        sampling: SamplingOptions | None = None,
    ) -> CompletionOutcome:
        """Complete off the event loop; a newer request with the same key stops this one."""
        if self.closed:  # replaced between choosing the model and getting here
            return CompletionOutcome([], "the model was replaced")
        cancel = threading.Event()
        previous = self._in_flight.get(key)
        if previous is not None:
            previous.set()
        self._in_flight[key] = cancel
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executor, self.completer.complete, ctx, options, cancel, sampling
            )
        except asyncio.CancelledError:
            cancel.set()  # the request was cancelled: stop decoding at the next step
            self.cancelled += 1
            log.info("a running completion for %s was cancelled; it stops at its next step", key)
            raise
        finally:
            if self._in_flight.get(key) is cancel:
                del self._in_flight[key]
        if outcome.prompt_tokens:
            self.requests += 1
            self.prefix_hits += outcome.reused_tokens > 0
        if "total" in outcome.timings_ms and outcome.text is not None:
            self.latencies_ms.append(outcome.timings_ms["total"])
        return outcome

    def retire(self) -> None:
        """Take no more requests; free the engine once the request in flight is done."""
        if self.closed:
            return
        self.closed = True
        self._executor.submit(self._release)
        self._executor.shutdown(wait=False)
        log.info("model %s unloaded", self.model_dir.root)

    def _release(self) -> None:
        self._completer = None
        self._engine = None

    @property
    def released(self) -> bool:
        return self._engine is None

    def close(self) -> None:
        for event in self._in_flight.values():
            event.set()
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
