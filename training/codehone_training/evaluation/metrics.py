"""The scores codehone reports, each defined once: on strings (exact match and edit similarity
as CodeXGLUE and ``fuzz.ratio`` define them; corpus BLEU-4 and token precision / recall / F1 on
code tokens) and on logits (log-probabilities, the bits a model needs for a token sequence).

Code tokens are one regular expression, ``CODE_TOKEN``, that every token-level score uses: a run
of word characters (an identifier, a keyword, a number's digits) or any other single
non-space character (``(``, ``.``, ``=``), so ``self.x=1`` and ``self . x = 1`` are the same five
tokens and whitespace never counts. Pure Python and numpy: no scoring library, no network.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
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


CODE_TOKEN = re.compile(r"\w+|[^\w\s]")
BLEU_ORDER = 4


def code_tokens(text: str) -> list[str]:
    """``text`` as code tokens (``CODE_TOKEN``)."""
    return CODE_TOKEN.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    max_order: int = BLEU_ORDER,
) -> float:
    """Corpus BLEU (Papineni et al. 2002), 0-100: one reference per prediction, n-gram
    precisions clipped by the reference's counts and summed over the corpus before dividing,
    their geometric mean over orders 1..``max_order`` (equal weights, no smoothing: 0 when an
    order has no match), times the brevity penalty exp(1 - r/c) when the predictions' total
    length c is below the references' r."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    matches = [0] * max_order
    possible = [0] * max_order
    c = r = 0
    for prediction, reference in zip(predictions, references, strict=True):
        c += len(prediction)
        r += len(reference)
        for n in range(1, max_order + 1):
            overlap = _ngrams(prediction, n) & _ngrams(reference, n)
            matches[n - 1] += sum(overlap.values())
            possible[n - 1] += max(0, len(prediction) - n + 1)
    if c == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / p) for m, p in zip(matches, possible, strict=True))
    brevity = 1.0 if c >= r else math.exp(1.0 - r / c)
    return 100.0 * brevity * math.exp(log_precision / max_order)


def token_overlap(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> tuple[float, float, float]:
    """Micro-averaged precision, recall and F1 (0-100) of the predictions' bags of tokens:
    the tokens a prediction shares with its reference (as a multiset), summed over the corpus,
    over all predicted tokens (precision) and over all reference tokens (recall)."""
    shared = predicted = expected = 0
    for prediction, reference in zip(predictions, references, strict=True):
        shared += sum((Counter(prediction) & Counter(reference)).values())
        predicted += len(prediction)
        expected += len(reference)
    precision = 100.0 * shared / predicted if predicted else 0.0
    recall = 100.0 * shared / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass
class TextScores:
    """Predictions against their targets, scored every way codehone reports on text."""

    predictions: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def add(self, prediction: str, target: str) -> None:
        self.predictions.append(prediction)
        self.targets.append(target)

    def summary(self) -> dict[str, float]:
        """Exact match and edit similarity averaged over the cases, BLEU and token precision /
        recall / F1 over the corpus; each 0-100, rounded to 2 decimals."""
        n = max(1, len(self.targets))
        pairs = list(zip(self.predictions, self.targets, strict=True))
        predicted = [code_tokens(p) for p in self.predictions]
        expected = [code_tokens(t) for t in self.targets]
        precision, recall, f1 = token_overlap(predicted, expected)
        scores = {
            "exact_match": 100.0 * sum(exact_match(p, t) for p, t in pairs) / n,
            "edit_similarity": sum(edit_similarity(p, t) for p, t in pairs) / n,
            "bleu": corpus_bleu(predicted, expected),
            "token_precision": precision,
            "token_recall": recall,
            "token_f1": f1,
        }
        return {name: round(value, 2) for name, value in scores.items()}


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
