"""One percentile for every latency codehone reports (``codehone/status``, ``bench lsp``,
``check``), so the same latencies give the same p95 everywhere."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``q`` percent of the
    values at or below it (``q`` in 0..100); None when there are no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 and the last value (empty when there are none)."""
    if not latencies_ms:
        return {}
    summary = {f"p{q}": percentile(latencies_ms, q) for q in (50, 95, 99)}
    return {**{k: v for k, v in summary.items() if v is not None}, "last": latencies_ms[-1]}
