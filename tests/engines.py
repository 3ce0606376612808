"""Engines the tests share: the tiny models loaded on the CPU, a scripted stand-in, and the
reference decoding cached decoding is checked against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.engine.kv_cache import KVCache
from codehone.core.engine.protocol import DecodeEngine
from codehone.core.engine.session import Engine
from codehone.core.model_dir import ModelDir, load_model_dir
from codehone.core.providers import ProviderChoice, choose_provider

PROMPT = [12, 40, 7, 99, 150, 3, 200, 41, 42, 43, 44, 300, 17]
CPU = choose_provider("cpu")


def engine(model: Path, **options: object) -> Engine:
    return Engine(load_model_dir(model), CPU, **options)  # type: ignore[arg-type]


def recompute_greedy(engine: DecodeEngine[Any], prompt_ids: Sequence[int], n: int) -> list[int]:
    """Greedy decoding without a cache: the whole sequence recomputed at every step."""
    sequence = list(prompt_ids)
    for _ in range(n):
        logits, _ = engine.forward(sequence, engine.empty_cache())
        sequence.append(int(np.argmax(logits)))
    return sequence[len(prompt_ids) :]


class ScriptedEngine(Engine):
    """The real decode loop, with a forward pass that 'predicts' a fixed script of tokens
    (then the first EOS), so the Completer's cutting and stopping can be checked exactly."""

    def __init__(
        self,
        model: ModelDir,
        provider: ProviderChoice,
        script: Sequence[int],
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(model, provider)
        self.script = list(script)
        self.on_step = on_step
        self.step = 0
        self.prompts: list[list[int]] = []

    def forward(
        self, token_ids: Sequence[int], cache: KVCache, all_logits: bool = False
    ) -> tuple[np.ndarray, KVCache]:
        if cache.length == 0:  # a new generation starts with its prefill
            self.step = 0
            self.prompts.append(list(token_ids))
        eos = self.manifest.special_tokens.eos_token_ids[0]
        next_id = self.script[self.step] if self.step < len(self.script) else eos
        self.step += 1
        if self.on_step is not None:
            self.on_step(self.step)
        logits = np.full(self.manifest.vocab_size, -1e9, dtype=np.float32)
        logits[next_id] = 0.0
        total = cache.length + len(token_ids)
        return logits, KVCache(cache.values, total, [*cache.token_ids, *token_ids])
