"""Fill-in-the-middle formats, shared by training (samples) and the server (prompts).

One definition of the layout keeps what the model was trained on and what the server asks
identical. PSM: <prefix> P <suffix> S <middle> [M]. SPM (the StarCoder / SantaCoder variant):
<prefix> <suffix> S <middle> P [M], which leaves the middle directly after P as in plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from codehone.core.model_dir import FimTokens

FimMode = Literal["psm", "spm"]


def fim_text(prefix: str, suffix: str, middle: str, fim: FimTokens, mode: FimMode = "psm") -> str:
    """A training sample as text with the special tokens spelled out (the tokenizer maps them
    to their ids because they are added special tokens)."""
    if mode == "psm":
        return f"{fim.prefix}{prefix}{fim.suffix}{suffix}{fim.middle}{middle}"
    return f"{fim.prefix}{fim.suffix}{suffix}{fim.middle}{prefix}{middle}"


def fim_prompt_ids(
    prefix_ids: Sequence[int], suffix_ids: Sequence[int], fim: FimTokens, mode: FimMode = "psm"
) -> list[int]:
    """A prompt as token ids: the model continues with the middle."""
    if mode == "psm":
        return [fim.prefix_id, *prefix_ids, fim.suffix_id, *suffix_ids, fim.middle_id]
    return [fim.prefix_id, fim.suffix_id, *suffix_ids, fim.middle_id, *prefix_ids]
