"""What a decode engine is to the code that uses it: the stop conditions it honours, the
generation it returns, and the one ``DecodeEngine`` protocol.

Two engines satisfy it: the server's ONNX Runtime ``Engine`` (codehone.core.engine.session)
and the evaluator's PyTorch ``TorchEngine`` (codehone_training.evaluation.torch_engine), which
scores a checkpoint through the server's own Completer without exporting it first. Both
decode with the one loop in codehone.core.engine.loop, so they stop for the same reasons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np

from codehone.core.model_dir import Manifest

StopReason = Literal["eos", "stop_rule", "max_tokens", "deadline", "cancelled", "context_full"]
# Picks the next token from one position's logits (instead of the arg-max).
Sampler = Callable[[np.ndarray], int]


@dataclass
class StopConditions:
    """When generation ends. ``stop_rule`` sees the generated ids after every token."""

    max_new_tokens: int = 64
    stop_token_ids: frozenset[int] = frozenset()
    deadline: float | None = None  # time.monotonic() value
    cancel: threading.Event | None = None
    stop_rule: Callable[[list[int]], bool] | None = None

    def interruption(self) -> StopReason | None:
        """Why generation must stop before its next token ("cancelled", "deadline"), if it must."""
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None


@dataclass
class Generation:
    """What one ``generate`` produced (the stop token excluded), why it stopped, and its cost."""

    token_ids: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    prefill_ms: float
    decode_ms: float
    steps: int = 0  # model calls
    reused_tokens: int = 0  # prompt tokens whose KV came from the previous request
    drafted_tokens: int = 0  # speculative tokens fed to the model
    accepted_tokens: int = 0  # of which the model confirmed

    @property
    def ms_per_token(self) -> float:
        """Decode time per token produced after the first (speculation included)."""
        return self.decode_ms / max(1, self.steps - 1 + self.accepted_tokens)


class Cache(Protocol):
    """An engine's KV cache, as the decode loop sees it: how many positions it holds."""

    @property
    def length(self) -> int: ...


CacheT = TypeVar("CacheT", bound=Cache)


class DecodeEngine(Protocol[CacheT]):
    """What the Completer, the evaluator and the decode loop need from an engine.

    ``forward`` is the model call: logits for the tokens fed after ``cache`` and the cache
    extended by them. ``generate`` decodes greedily (``sample``: pick each token with it
    instead; ``first_token_ids``: the tokens the first generated one must be among, for token
    healing) until ``stop`` says so."""

    @property
    def manifest(self) -> Manifest: ...

    def empty_cache(self) -> CacheT: ...

    def forward(
        self, token_ids: Sequence[int], cache: CacheT, all_logits: bool = False
    ) -> tuple[np.ndarray, CacheT]: ...

    def generate(
        self,
        prompt_ids: Sequence[int],
        stop: StopConditions,
        sample: Sampler | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation: ...
