"""The decode loop: cached decoding equals a full recompute, every stop condition works, and
the PyTorch engine runs the same loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engines import PROMPT, recompute_greedy
from engines import engine as make_engine

from codehone.core.engine.protocol import StopConditions
from codehone.core.errors import GenerationError

FAMILIES = ["gpt2", "llama", "qwen2", "gpt_bigcode", "codegen"]


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decoding_equals_full_recompute(family: str, tiny_model: Callable[[str], Path]):
    engine = make_engine(tiny_model(family))
    cached = engine.generate(PROMPT, StopConditions(max_new_tokens=24))
    assert cached.stop_reason == "max_tokens"
    assert cached.token_ids == recompute_greedy(engine, PROMPT, 24)


def test_cached_logits_match_recompute_closely(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    logits_all, cache = engine.forward(PROMPT, engine.empty_cache(), all_logits=True)
    assert logits_all.shape[0] == len(PROMPT)
    step_logits, _ = engine.forward([5], cache)
    full_logits, _ = engine.forward([*PROMPT, 5], engine.empty_cache())
    np.testing.assert_allclose(step_logits, full_logits, atol=1e-4)


def test_stop_token_ends_generation(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    free = engine.generate(PROMPT, StopConditions(max_new_tokens=10)).token_ids
    stopped = engine.generate(
        PROMPT, StopConditions(max_new_tokens=10, stop_token_ids=frozenset({free[3]}))
    )
    assert stopped.stop_reason == "eos"
    assert free[3] not in stopped.token_ids
    assert stopped.token_ids == free[: free.index(free[3])]


def test_stop_rule_and_max_tokens(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    by_rule = engine.generate(
        PROMPT, StopConditions(max_new_tokens=20, stop_rule=lambda ids: len(ids) == 3)
    )
    assert by_rule.stop_reason == "stop_rule" and len(by_rule.token_ids) == 3
    capped = engine.generate(PROMPT, StopConditions(max_new_tokens=5))
    assert capped.stop_reason == "max_tokens" and len(capped.token_ids) == 5


def test_cancel_and_deadline(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    cancel = threading.Event()
    cancel.set()
    cancelled = engine.generate(PROMPT, StopConditions(max_new_tokens=20, cancel=cancel))
    assert cancelled.stop_reason == "cancelled" and cancelled.token_ids == []
    late = engine.generate(PROMPT, StopConditions(max_new_tokens=20, deadline=time.monotonic()))
    assert late.stop_reason == "deadline" and late.token_ids == []


def test_cancel_between_steps(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    cancel = threading.Event()

    def cancel_after_four(ids: list[int]) -> bool:
        if len(ids) == 4:
            cancel.set()
        return False

    result = engine.generate(
        PROMPT, StopConditions(max_new_tokens=50, cancel=cancel, stop_rule=cancel_after_four)
    )
    assert result.stop_reason == "cancelled" and len(result.token_ids) == 4


def test_context_limits(tiny_model_dir: Path):
    engine = make_engine(tiny_model_dir)
    context = engine.manifest.context_length
    with pytest.raises(GenerationError, match="does not fit"):
        engine.generate([5] * context, StopConditions())
    with pytest.raises(GenerationError, match="empty prompt"):
        engine.generate([], StopConditions())
    near_full = engine.generate([5] * (context - 3), StopConditions(max_new_tokens=10))
    assert near_full.stop_reason == "context_full"
    assert len(near_full.token_ids) == 4  # the last one is read off position context - 1


def test_torch_engine_runs_the_same_loop(
    tiny_model_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    """The evaluator's PyTorch engine provides only the model calls: generation, stopping and
    sampling are the ONNX engine's own, token for token."""
    from codehone_training.evaluation.torch_engine import TorchEngine

    onnx_engine, torch_engine = make_engine(tiny_model_dir), TorchEngine(tiny_checkpoint("gpt2"))
    free = onnx_engine.generate(PROMPT, StopConditions(max_new_tokens=12)).token_ids
    context = onnx_engine.manifest.context_length
    assert torch_engine.manifest.context_length == context
    cases = [
        (PROMPT, StopConditions(max_new_tokens=12)),
        (PROMPT, StopConditions(max_new_tokens=12, stop_token_ids=frozenset({free[4]}))),
        (PROMPT, StopConditions(max_new_tokens=12, stop_rule=lambda ids: len(ids) == 3)),
        ([5] * (context - 3), StopConditions(max_new_tokens=10)),
    ]
    for prompt, stop in cases:
        expected = onnx_engine.generate(prompt, stop)
        got = torch_engine.generate(prompt, stop)
        assert (got.token_ids, got.stop_reason, got.steps) == (
            expected.token_ids,
            expected.stop_reason,
            expected.steps,
        )
    argmax = torch_engine.generate(
        PROMPT, StopConditions(max_new_tokens=12), sample=lambda logits: int(np.argmax(logits))
    )
    assert argmax.token_ids == free
    with pytest.raises(GenerationError, match="does not fit"):
        torch_engine.generate([5] * context, StopConditions())
