"""The decode loop, the one both engines run: feed the prompt, then each new token, until a stop
condition holds.

A step is one model call. The plain step takes the arg-max of the last position's logits (or,
with a sampler, a draw from them); token healing constrains the first step's token to the ones
that extend the text it took off the prompt. An engine may hand the loop a faster greedy step
(the ONNX engine's fused graph, which returns the arg-max itself, and prompt-lookup
speculation, which may confirm several tokens in one call: see codehone.core.engine.speculation);
the loop takes a step's tokens one at a time and checks the stop conditions after each, as if
each had been a step of its own, so every path stops at the same token for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol

import numpy as np

from codehone.core.engine.protocol import (
    CacheT,
    DecodeEngine,
    Generation,
    Sampler,
    StopConditions,
    StopReason,
)
from codehone.core.errors import GenerationError
from codehone.core.healing import constrained_choice


@dataclass
class Step(Generic[CacheT]):
    """What one model call yielded: its tokens in order (the draft tokens it confirmed, then the
    model's own next token) and the cache, which holds all of them but the last (the next step
    feeds that one)."""

    tokens: list[int]
    cache: CacheT
    drafted: int = 0  # draft tokens fed along (len(tokens) - 1 of them were confirmed)


class GreedyStep(Protocol[CacheT]):
    """An engine's own greedy step: feed ``fed`` after ``cache``; ``generated`` are the tokens so
    far, ``room`` how many more than one it may yield (the context's and max_new_tokens' limit)."""

    def __call__(
        self, fed: list[int], cache: CacheT, generated: list[int], room: int
    ) -> Step[CacheT]: ...


def decode(
    engine: DecodeEngine[CacheT],
    prompt_ids: Sequence[int],
    stop: StopConditions,
    *,
    start: Callable[[list[int]], CacheT] | None = None,
    sample: Sampler | None = None,
    first_token_ids: np.ndarray | None = None,
    greedy: GreedyStep[CacheT] | None = None,
) -> tuple[Generation, CacheT]:
    """Decode after ``prompt_ids``; return the generation and the cache it ends with.

    ``start``: the cache to begin from (one that holds a prefix of the prompt, which is then
    not fed again; default: an empty cache). ``greedy``: the engine's greedy step (default: the
    arg-max of ``engine.forward``); sampling and the healed first token always go through
    ``forward``, since they need the logits."""
    context = engine.manifest.context_length
    if not prompt_ids:
        raise GenerationError("empty prompt")
    if len(prompt_ids) >= context:
        raise GenerationError(
            f"prompt of {len(prompt_ids)} tokens does not fit the context of {context}"
        )
    prompt = list(prompt_ids)
    started = time.perf_counter()
    cache = start(prompt) if start is not None else engine.empty_cache()
    reused = cache.length
    fed = prompt[reused:]  # what the next step feeds: the prompt's rest, then the newest token
    generated: list[int] = []
    steps = drafted = accepted = 0
    prefill_done = started
    while True:
        reason = _reason_to_stop(stop, len(generated), cache.length + len(fed), context)
        if reason is not None:
            break
        healing = first_token_ids if steps == 0 else None
        if greedy is not None and sample is None and healing is None:
            room = min(context - cache.length - len(fed), stop.max_new_tokens - len(generated) - 1)
            step = greedy(fed, cache, generated, room)
        else:
            logits, new_cache = engine.forward(fed, cache)
            step = Step([_choose(logits, sample, healing)], new_cache)
        cache = step.cache
        steps += 1
        if steps == 1:
            prefill_done = time.perf_counter()
        drafted += step.drafted
        accepted += len(step.tokens) - 1
        reason = _take(step.tokens, generated, stop)
        if reason is not None:
            break
        fed = step.tokens[-1:]
    finished = time.perf_counter()
    generation = Generation(
        token_ids=generated,
        stop_reason=reason,
        prompt_tokens=len(prompt),
        prefill_ms=(prefill_done - started) * 1000,
        decode_ms=(finished - prefill_done) * 1000,
        steps=steps,
        reused_tokens=reused,
        drafted_tokens=drafted,
        accepted_tokens=accepted,
    )
    return generation, cache


def _reason_to_stop(
    stop: StopConditions, generated: int, length_after_step: int, context: int
) -> StopReason | None:
    """Why the loop must not make another step, if it must not."""
    if generated >= stop.max_new_tokens:
        return "max_tokens"
    interrupted = stop.interruption()
    if interrupted is not None:
        return interrupted
    if length_after_step > context:
        return "context_full"
    return None


def _choose(logits: np.ndarray, sample: Sampler | None, allowed: np.ndarray | None) -> int:
    """The next token from the last position's logits: among ``allowed`` only when given
    (healing), drawn by ``sample`` when given, else the arg-max."""
    if allowed is not None:
        return constrained_choice(logits, allowed, sample)
    if sample is not None:
        return sample(logits)
    return int(np.argmax(logits))


def _take(tokens: list[int], generated: list[int], stop: StopConditions) -> StopReason | None:
    """Append a step's tokens to ``generated`` up to the first one that ends generation; why it
    ended, if it did. A confirmed draft token gets the checks a step of its own would make."""
    for index, token in enumerate(tokens):
        if index > 0:
            interrupted = stop.interruption()
            if interrupted is not None:
                return interrupted
        if token in stop.stop_token_ids:
            return "eos"
        generated.append(token)
        if stop.stop_rule is not None and stop.stop_rule(generated):
            return "stop_rule"
        if len(generated) >= stop.max_new_tokens:
            return "max_tokens"
    return None
