"""The scores codehone reports, each defined once: on strings (exact match, edit similarity,
as CodeXGLUE and ``fuzz.ratio`` define them) and on logits (log-probabilities, the bits a
model needs for a token sequence)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from codehone.core.engine.protocol import DecodeEngine


def _lcs_length(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, target: str) -> float:
    """``fuzz.ratio``: 100 * (1 - Indel distance / total length) = 200 * LCS / total length."""
    total = len(prediction) + len(target)
    if total == 0:
        return 100.0
    return 200.0 * _lcs_length(prediction, target) / total


def exact_match(prediction: str, target: str) -> bool:
    """Equal up to whitespace between tokens (CodeXGLUE compares ``str.split()`` lists)."""
    return prediction.split() == target.split()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (stable: the largest logit is subtracted first)."""
    peak = logits.max(axis=-1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def sequence_bits(engine: DecodeEngine[Any], ids: list[int], window: int) -> float:
    """Negative log2-likelihood of ``ids[1:]`` given what precedes each token, with a sliding
    window of ``window`` tokens advancing by half a window (each token scored once)."""
    stride = max(1, window // 2)
    total = 0.0
    scored_until = 1  # ids[0] (the start token) is never predicted
    begin = 0
    while scored_until < len(ids):
        end = min(begin + window, len(ids))
        logits, _ = engine.forward(ids[begin:end], engine.empty_cache(), all_logits=True)
        log_probs = log_softmax(logits.astype(np.float64))
        for position in range(scored_until, end):
            total -= log_probs[position - 1 - begin, ids[position]]
        scored_until = end
        begin = max(begin + stride, end - window + stride) if end < len(ids) else end
    return total / math.log(2)
