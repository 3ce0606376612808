"""A loaded model served to requests: engine + tokenizer + completer, off the event loop.

Inference runs on one worker thread (one decode at a time per model); the event loop only
awaits it. A cancelled request sets its cancel event, which the decode loop checks between
steps, so the worker is free again within one step. A new request with the same key makes
the one still running under it stop early: the newest keystroke wins (the server's key is one
kind of request for one document, so a menu request and a ghost-text request never stop each
other).

A request whose user typed the first characters of the completion just offered for its key is
answered with the rest of it at once, without the worker (codehone.core.completion.typed_ahead).
And a request the client cancels because the user typed on is left to finish when what it has
generated so far agrees with what was typed (a newer request that does not agree stops it):
its completion becomes the offer, and the newer request, queued behind it on the worker, is
answered from it, where stopping it would have thrown its work away.

A background prefill (``prefill``: the server's guess of where the next request will be, see
codehone.lsp.prefill) runs on the same worker at the lowest priority: a newer one stops it, and
so does any request, at the next chunk boundary (what it fed stays in the prefix cache, which
the request then reuses), so a request waits for one chunk at most.

When another model replaces this one (a project's configuration changed), ``retire`` stops it
taking requests, lets the one in flight finish, then drops the engine, so the ONNX Runtime
session and its KV buffers are freed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from codehone.core.completion.completer import Completer, CompletionOutcome
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.completion.typed_ahead import TypedAhead, typed_after
from codehone.core.engine.session import Engine, Prefilled
from codehone.core.engine.speculation import serving_draft_tokens
from codehone.core.errors import GenerationError
from codehone.core.model_dir import ModelDir
from codehone.core.providers import Device, ProviderChoice, choose_provider
from codehone.core.tokenizer import TextTokenizer

log = logging.getLogger("codehone.model")

# A background prefill that would feed fewer tokens than this is not worth a model call.
MIN_PREFILL_TOKENS = 16


@dataclass
class PrefillStats:
    """The background prefills of one model, over its lifetime."""

    runs: int = 0  # that fed tokens
    skipped: int = 0  # found (nearly) all of it cached, or stopped before a first chunk
    stopped: int = 0  # of the runs, stopped by a request or a newer prefill
    tokens: int = 0  # fed
    ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ms": round(self.ms, 1)}


def prefill_totals(services: Iterable[ModelService]) -> dict[str, Any]:
    """The background prefills of several models, summed, for codehone/status."""
    total = PrefillStats()
    for service in services:
        for name in (f.name for f in dataclasses.fields(PrefillStats)):
            setattr(total, name, getattr(total, name) + getattr(service.prefill_stats, name))
    return total.to_json()


@dataclass
class _Running:
    """A request on (or waiting for) the worker: its cursor, its stop, and the text its greedy
    completion has so far (``follows``: it may be left to finish when the user types on)."""

    ctx: CursorContext
    follows: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    text_so_far: str = ""

    def progress(self, text: str) -> None:
        self.text_so_far = text


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
        self._in_flight: dict[str, _Running] = {}
        # cancelled by the client, left to finish: their completion may answer the next request
        self._finishing: dict[str, _Running] = {}
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.requests = 0  # requests that reached the engine
        self.prefix_hits = 0  # of which reused part of the previous request's KV cache
        self.cancelled = 0  # requests cancelled while waiting for or running on the worker
        self.last_request_at = 0.0  # time.monotonic() of the last request that reached the engine
        self.last_prompt_tokens = 0  # its prompt
        self.last_reused_tokens = 0  # and how much of it came from the prefix cache
        self.prefill_stats = PrefillStats()
        self.typed_ahead = TypedAhead()
        self._background: threading.Event | None = None  # the background prefill's stop
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

    def _complete_blocking(
        self,
        key: str,
        running: _Running,
        options: CompletionOptions,
        sampling: SamplingOptions | None,
    ) -> CompletionOutcome:
        """The worker's part of ``complete``. A request that follows typing first looks at the
        offer again: the request ahead of it on the worker may have just made one. Every
        outcome that ran to its end is the key's offer (also a request the client cancelled but
        that was left to finish); what a stopped request cost is logged here, as nobody else
        sees its outcome."""
        ctx = running.ctx
        if running.follows and (answer := self.typed_ahead.answer(key, ctx, options)) is not None:
            return answer
        outcome = self.completer.complete(
            ctx, options, running.cancel, sampling, running.progress if running.follows else None
        )
        if running.cancel.is_set():
            log.info(
                "a cancelled completion for %s ran: tokens=%d+%d reused=%d reason=%s timings_ms=%s",
                key,
                outcome.prompt_tokens,
                outcome.new_tokens,
                outcome.reused_tokens,
                outcome.reason,
                outcome.timings_ms,
            )
        elif running.follows:
            self.typed_ahead.remember(key, ctx, options, outcome)
        else:
            self.typed_ahead.forget(key)
        if self._finishing.get(key) is running:
            del self._finishing[key]
        return outcome

    def _stop_stale(self, key: str, ctx: CursorContext, follows: bool) -> None:
        """Newest wins: stop the key's running and finishing requests, but for one whose
        completion so far may still be what the user is typing (``follows``)."""
        for running in (self._in_flight.get(key), self._finishing.get(key)):
            if running is None or running.cancel.is_set():
                continue
            typed = typed_after(running.ctx, ctx) if follows else None
            so_far = running.text_so_far
            if typed is not None and (so_far.startswith(typed) or typed.startswith(so_far)):
                continue  # it may finish the word the user is typing: let it end
            running.cancel.set()

    async def complete(
        self,
        key: str,
        ctx: CursorContext,
        options: CompletionOptions,
        sampling: SamplingOptions | None = None,
        typed_ahead: bool = True,
    ) -> CompletionOutcome:
        """Complete off the event loop; a newer request with the same key stops this one.
        ``typed_ahead``: answer from the completion offered last for ``key`` when the user
        typed its start (never for several candidates); and when the client cancels this
        request because the user typed on, let it finish if what it generated so far agrees
        with the typing, so the next request is answered from its completion."""
        if self.closed:  # replaced between choosing the model and getting here
            return CompletionOutcome([], "the model was replaced")
        follows = typed_ahead and (sampling is None or sampling.candidates <= 1)
        self._stop_stale(key, ctx, follows)
        if follows:
            started = time.perf_counter()
            answer = self.typed_ahead.answer(key, ctx, options)
            if answer is not None:
                answer.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
                return answer
        if self._background is not None:
            self._background.set()  # a request goes first: the prefill stops at its next chunk
        running = _Running(ctx, follows)
        self._in_flight[key] = running
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executor, self._complete_blocking, key, running, options, sampling
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            if follows and not running.cancel.is_set():
                self._finishing[key] = running  # the next keystroke's request decides
                log.info("a running completion for %s was cancelled; it may finish", key)
            else:
                running.cancel.set()  # stop decoding at the next step
                log.info("a running completion for %s was cancelled; it stops", key)
            raise
        finally:
            if self._in_flight.get(key) is running:
                del self._in_flight[key]
        if outcome.prompt_tokens:
            self.requests += 1
            self.prefix_hits += outcome.reused_tokens > 0
            self.last_request_at = time.monotonic()
            self.last_prompt_tokens = outcome.prompt_tokens
            self.last_reused_tokens = outcome.reused_tokens
        if "total" in outcome.timings_ms and outcome.text is not None:
            self.latencies_ms.append(outcome.timings_ms["total"])
        return outcome

    async def prefill(self, ctx: CursorContext, options: CompletionOptions) -> Prefilled | None:
        """Prefill, off the event loop, the part of the prompt at ``ctx`` that typing on its
        line leaves alone; None when it was not worth it or was stopped before it began."""
        if self.closed:
            return None
        if self._background is not None:
            self._background.set()  # the newest guess wins
        stop = self._background = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(
                self._executor, self._prefill_blocking, ctx, options, stop
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            if self._background is stop:
                self._background = None
        if done is None or done.fed == 0:
            self.prefill_stats.skipped += 1
            return None
        self.prefill_stats.runs += 1
        self.prefill_stats.stopped += done.stopped
        self.prefill_stats.tokens += done.fed
        self.prefill_stats.ms += done.ms
        return done

    def _prefill_blocking(
        self, ctx: CursorContext, options: CompletionOptions, stop: threading.Event
    ) -> Prefilled | None:
        if stop.is_set() or self.closed:
            return None
        token_ids = self.completer.line_stable_prompt_ids(ctx, options)
        if len(token_ids) - self.engine.cached_prefix(token_ids) < MIN_PREFILL_TOKENS:
            return None
        return self.engine.prefill(token_ids, stop.is_set)

    def retire(self) -> None:
        """Take no more requests; free the engine once the request in flight is done."""
        if self.closed:
            return
        self.closed = True
        if self._background is not None:
            self._background.set()
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
        for running in (*self._in_flight.values(), *self._finishing.values()):
            running.cancel.set()
        if self._background is not None:
            self._background.set()
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
