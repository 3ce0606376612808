"""The engine's sampling hook: a sampler that takes the arg-max gives exactly the greedy
output on every graph kind (exported, fused, speculating), and a seeded one is reproducible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engines import PROMPT, engine

from codehone.core.completion.sampling import make_sampler
from codehone.core.engine.protocol import StopConditions


def argmax(logits: np.ndarray) -> int:
    return int(np.argmax(logits))


@pytest.mark.parametrize("kind", ["exported", "fused", "fused+speculation"])
def test_argmax_sampler_equals_greedy(
    kind: str,
    tiny_model: Callable[[str], Path],
    fused_model: Callable[[str], Path],
) -> None:
    model = tiny_model("gpt2") if kind == "exported" else fused_model("gpt2")
    e = engine(model, draft_tokens=4 if "speculation" in kind else 0)
    stop = StopConditions(max_new_tokens=20)
    greedy = e.generate(PROMPT, stop).token_ids
    sampled = e.generate(PROMPT, stop, sample=argmax)
    assert sampled.token_ids == greedy
    assert sampled.drafted_tokens == 0  # no speculation while sampling
    assert e.generate(PROMPT, stop).token_ids == greedy  # the cache it left is sound


def test_seeded_sampling_is_reproducible(tiny_model: Callable[[str], Path]) -> None:
    e = engine(tiny_model("gpt2"))
    stop = StopConditions(max_new_tokens=16)

    def draw(seed: int) -> list[int]:
        return e.generate(
            PROMPT, stop, sample=make_sampler(1.5, np.random.default_rng(seed))
        ).token_ids

    assert draw(1) == draw(1)
    assert len({tuple(draw(seed)) for seed in range(5)}) > 1
