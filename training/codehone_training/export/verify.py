"""The one check every written graph passes: its logits against a reference's.

An export is compared with the PyTorch model it traced, a fused graph with the checkpoint it
was rebuilt from (or, without one, with the exported graph it replaces). The check is the
same each time, through the server's own engine: the logits of a whole prompt, then of a few
steps one token at a time through the KV cache (each step feeds the reference's arg-max), must
stay within ``TOLERANCE`` of the reference's, relative to the size of its logits; optionally the
graph's greedy generation must also give the reference's tokens (fp32 only: fp16 may flip
near-ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from codehone.core.errors import ExportError

if TYPE_CHECKING:
    from codehone.core.engine.kv_cache import KVCache
    from codehone.core.model_dir import ModelDir

# Largest |graph - reference| logit difference accepted, relative to max(1, largest |logit|).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}


class Reference(Protocol):
    """What a graph is checked against: logits of a prompt, then one token at a time."""

    name: str

    def prompt(self, ids: Sequence[int]) -> np.ndarray:
        """Float32 logits of every position of ``ids`` [len, vocab]; starts a new cache."""
        ...

    def step(self, token: int) -> np.ndarray:
        """Float32 logits [vocab] after ``token``, appended to the cache."""
        ...


class TorchReference:
    """A PyTorch causal LM (on its own device), with its KV cache."""

    name = "PyTorch"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self._past: Any = None

    def _run(self, ids: list[list[int]]) -> Any:
        import torch

        with torch.no_grad():
            output = self.model(
                input_ids=torch.tensor(ids, device=self.device),
                past_key_values=self._past,
                use_cache=True,
            )
        self._past = output.past_key_values
        return output.logits[0].float().cpu().numpy()

    def prompt(self, ids: Sequence[int]) -> np.ndarray:
        self._past = None
        return self._run([list(ids)])

    def step(self, token: int) -> np.ndarray:
        return self._run([[token]])[-1]


class EngineReference:
    """Another model directory, run by the engine (the graph a rebuilt one replaces)."""

    def __init__(self, model_dir: ModelDir, device: str = "cpu") -> None:
        from codehone.core.engine.session import Engine
        from codehone.core.providers import choose_provider

        self.name = f"the exported graph ({model_dir.root.name})"
        self.engine = Engine(model_dir, choose_provider("cuda" if device == "cuda" else "cpu"))
        self._cache: KVCache | None = None

    def prompt(self, ids: Sequence[int]) -> np.ndarray:
        logits, self._cache = self.engine.forward(ids, self.engine.empty_cache(), all_logits=True)
        return logits

    def step(self, token: int) -> np.ndarray:
        assert self._cache is not None, "prompt() first"
        logits, self._cache = self.engine.forward([token], self._cache)
        return logits


def verify_logits(
    model_dir: ModelDir,
    reference: Reference,
    prompt_ids: Sequence[int],
    dtype: str,
    *,
    device: str = "cpu",
    steps: int = 4,
    greedy: bool = False,
    error: type[ExportError] = ExportError,
) -> dict[str, float]:
    """Compare ``model_dir`` with ``reference`` on ``prompt_ids`` and ``steps`` cached steps;
    with ``greedy`` also its greedy tokens (``steps + 1`` of them). Raise ``error`` when they
    differ by more than the tolerance of ``dtype``; return the figures for the provenance."""
    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    tolerance = TOLERANCE[dtype]
    engine = Engine(model_dir, choose_provider("cuda" if device == "cuda" else "cpu"))
    prompt = list(prompt_ids)
    graph_logits, cache = engine.forward(prompt, engine.empty_cache(), all_logits=True)
    reference_logits = reference.prompt(prompt)
    prompt_diff = float(np.max(np.abs(graph_logits - reference_logits)))
    scale = max(1.0, float(np.max(np.abs(reference_logits))))
    step_diff = 0.0
    expected = [int(np.argmax(reference_logits[-1]))]  # the reference's greedy tokens
    for _ in range(steps):
        graph_step, cache = engine.forward([expected[-1]], cache)
        reference_step = reference.step(expected[-1])
        step_diff = max(step_diff, float(np.max(np.abs(graph_step - reference_step))))
        scale = max(scale, float(np.max(np.abs(reference_step))))
        expected.append(int(np.argmax(reference_step)))
    result = {
        "max_abs_diff_prompt": prompt_diff,
        "max_abs_diff_steps": step_diff,
        "logit_scale": scale,
        "tolerance_relative": tolerance,
    }
    worst = max(prompt_diff, step_diff)
    if worst > tolerance * scale:
        raise error(
            f"verification failed: the graph's logits differ from {reference.name} by "
            f"{worst:.3g} (allowed {tolerance * scale:.3g} = {tolerance} x {scale:.3g}); "
            f"prompt {prompt_diff:.3g}, cached steps {step_diff:.3g}"
        )
    if greedy:
        stop = StopConditions(max_new_tokens=len(expected))
        generated = engine.generate(prompt, stop).token_ids
        agree = sum(a == b for a, b in zip(generated, expected, strict=False))
        result["greedy_agreement"] = agree / len(expected)
        if dtype == "fp32" and generated != expected:
            raise error(
                f"verification failed: greedy tokens differ from {reference.name} "
                f"({agree}/{len(expected)} equal)"
            )
    return result
