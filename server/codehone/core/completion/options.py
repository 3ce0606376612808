"""The knobs of one completion request, typed and with their defaults: the server's
configuration (codehone.lsp.config) and ``codehone complete`` fill them, the steps read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CompletionOptions:
    """Per-request knobs; the server's configuration fills them (typed, with defaults)."""

    max_new_tokens: int = 48
    max_prompt_tokens: int = 1024
    time_budget_ms: int = 1500
    multiline: Literal["auto", "always", "never"] = "auto"
    fim: bool = True  # use the text after the cursor when the model has FIM tokens
    # keep the prompt's start put while the user types (see prompt.prefix_token_ids), so the
    # engine reuses its KV cache for all of it; costs up to a quarter of the prompt budget
    anchor_prompt: bool = True
    # end the prompt at a token boundary the model knows and let it choose how the text at the
    # cursor is split (see codehone.core.healing)
    token_healing: bool = True


@dataclass(frozen=True)
class SamplingOptions:
    """How many candidates to offer; the first is always the greedy one, the others sampled."""

    candidates: int = 1
    temperature: float = 0.8
    seed: int | None = None  # None: a different draw each request
