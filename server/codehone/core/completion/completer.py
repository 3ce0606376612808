"""The Completer: the completion steps in a row for one model, shared by the LSP server,
`codehone complete`, `codehone check` and the evaluator.

should we complete? (cursor) -> the prompt within a token budget (prompt) -> generate: the
greedy candidate, then sampled alternatives when more candidates are asked for (sampling),
each stopped by the post-processing rules as soon as it is complete (postprocess) -> the
completions: the text to put at the cursor, post-processed, and how many of the closing
characters after the cursor it replaces (closers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codehone.core.completion.cursor import CursorContext, skip_reason
from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.completion.postprocess import (
    Completion,
    cut_completion,
    cut_repeated_lines,
    postprocess,
    token_loop_length,
)
from codehone.core.completion.prompt import Prompt, build_prompt, new_token_limit
from codehone.core.completion.sampling import make_sampler
from codehone.core.engine.protocol import DecodeEngine, Generation, Sampler, StopConditions
from codehone.core.healing import TokenHealer
from codehone.core.tokenizer import TextTokenizer

log = logging.getLogger("codehone.completion")


@dataclass
class CompletionOutcome:
    """What a request produced: its completions, the greedy one first, then the sampled
    alternatives, deduplicated (none: nothing to offer, ``reason`` says why), and what it
    cost."""

    completions: list[Completion]
    reason: str  # why it ended (stop reason) or why nothing was produced
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV cache came from the previous request

    @property
    def text(self) -> str | None:
        """The first completion's text (None: nothing to offer)."""
        return self.completions[0].text if self.completions else None

    @property
    def alternatives(self) -> list[str]:
        """The texts of the further candidates."""
        return [completion.text for completion in self.completions[1:]]

    @property
    def texts(self) -> list[str]:
        """Every candidate's text, the greedy one first."""
        return [completion.text for completion in self.completions]


@dataclass
class _Candidate:
    """One generation and the completion post-processing made of it."""

    completion: Completion | None
    generation: Generation


class Completer:
    """Runs the steps for one model; ``complete`` is blocking (call it off the event loop)."""

    def __init__(self, engine: DecodeEngine[Any], tokenizer: TextTokenizer) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.manifest = engine.manifest
        tokenizer.check_fits(self.manifest.vocab_size)
        eos = frozenset(self.manifest.special_tokens.eos_token_ids)
        self.stop_token_ids = eos | tokenizer.special_token_ids()
        self.healer = TokenHealer.for_tokenizer(tokenizer)
        self._cut_limits: set[int] = set()  # max_new_tokens values already said to be cut

    def _new_token_limit(self, options: CompletionOptions) -> int:
        """``new_token_limit``, saying once per value when it cuts the option."""
        limit = new_token_limit(self.manifest, options)
        if limit < options.max_new_tokens and options.max_new_tokens not in self._cut_limits:
            self._cut_limits.add(options.max_new_tokens)
            log.warning(
                "maxNewTokens %d would leave the prompt no room in this model's context of %d "
                "tokens: %d new tokens at most (the prompt keeps the other half)",
                options.max_new_tokens,
                self.manifest.context_length,
                limit,
            )
        return limit

    def line_stable_prompt_ids(self, ctx: CursorContext, options: CompletionOptions) -> list[int]:
        """The start of the prompt at ``ctx`` that typing on the cursor's line leaves alone:
        the prompt there, cut at the line's start, less its last token (the line break, which
        the tokenizer may merge with the indentation typed after it). A background prefill
        computes it ahead of the requests."""
        prompt = build_prompt(ctx, self.tokenizer, self.manifest, options, cut_at=ctx.line_start)
        return prompt.before_cursor_ids[:-1]

    def complete(
        self,
        ctx: CursorContext,
        options: CompletionOptions,
        cancel: threading.Event | None = None,
        sampling: SamplingOptions | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> CompletionOutcome:
        """The greedy completion, and with ``sampling.candidates`` > 1 sampled alternatives
        (different from it and from each other) within the same time budget. ``progress``
        is told the greedy completion's text so far after each generated token."""
        started = time.perf_counter()
        reason = skip_reason(ctx)
        if reason is not None:
            return CompletionOutcome([], reason)
        prompt = build_prompt(ctx, self.tokenizer, self.manifest, options, self.healer)
        prompt_ms = (time.perf_counter() - started) * 1000
        deadline = time.monotonic() + options.time_budget_ms / 1000
        greedy = self._candidate(ctx, prompt, options, deadline, cancel, None, progress)
        generation = greedy.generation
        alternatives: list[Completion] = []
        wanted = (sampling.candidates if sampling else 1) - 1
        if wanted > 0 and generation.stop_reason not in ("cancelled", "deadline"):
            assert sampling is not None
            rng = np.random.default_rng(sampling.seed)
            sampler = make_sampler(sampling.temperature, rng)
            seen = {greedy.completion}
            for _ in range(2 * wanted):  # duplicates are dropped; a few extra tries fill in
                if len(alternatives) >= wanted:
                    break
                if (cancel is not None and cancel.is_set()) or time.monotonic() >= deadline:
                    break
                sampled = self._candidate(ctx, prompt, options, deadline, cancel, sampler)
                if sampled.generation.stop_reason == "cancelled":
                    break
                if sampled.completion is not None and sampled.completion not in seen:
                    seen.add(sampled.completion)
                    alternatives.append(sampled.completion)
        # The greedy one first; when it was empty, the first sample leads.
        completions = [greedy.completion] if greedy.completion is not None else []
        completions += alternatives
        if cancel is not None and cancel.is_set():
            completions = []
        total_ms = (time.perf_counter() - started) * 1000
        return CompletionOutcome(
            completions=completions,
            reason=generation.stop_reason if completions else f"empty ({generation.stop_reason})",
            timings_ms={
                "prompt": round(prompt_ms, 2),
                "prefill": round(generation.prefill_ms, 2),
                "decode": round(generation.decode_ms, 2),
                "total": round(total_ms, 2),
            },
            prompt_tokens=len(prompt.token_ids),
            new_tokens=len(generation.token_ids),
            reused_tokens=generation.reused_tokens,
        )

    def _candidate(
        self,
        ctx: CursorContext,
        prompt: Prompt,
        options: CompletionOptions,
        deadline: float,
        cancel: threading.Event | None,
        sampler: Sampler | None,
        progress: Callable[[str], None] | None = None,
    ) -> _Candidate:
        # Decoding context: with FIM the text before the middle is the prefix, not the suffix.
        context_ids = [] if prompt.fim else prompt.token_ids
        loop_keep: list[int] = []
        healing = prompt.healing

        def continuation(generated: list[int]) -> str:
            """The text the tokens add after the cursor (without what healing restored)."""
            text = self.tokenizer.decode_continuation(context_ids, generated)
            if healing is not None:
                text = text[len(healing.text) :] if text.startswith(healing.text) else ""
            return text

        def stop_rule(generated: list[int]) -> bool:
            keep = token_loop_length(generated)
            if keep is not None:
                loop_keep.append(keep)
                return True
            text = continuation(generated)
            if progress is not None:
                progress(text)
            if cut_repeated_lines(text)[1]:
                return True
            return cut_completion(text, prompt.mode, prompt.base_indent)[1]

        stop = StopConditions(
            max_new_tokens=self._new_token_limit(options),
            stop_token_ids=self.stop_token_ids,
            deadline=deadline,
            cancel=cancel,
            stop_rule=stop_rule,
        )
        first = healing.token_ids if healing is not None else None
        generation = self.engine.generate(
            prompt.token_ids, stop, sample=sampler, first_token_ids=first
        )
        ids = generation.token_ids[: loop_keep[0]] if loop_keep else generation.token_ids
        raw = continuation(ids)
        if generation.stop_reason == "cancelled":
            return _Candidate(None, generation)
        return _Candidate(postprocess(raw, ctx, prompt), generation)
