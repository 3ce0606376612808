"""The one percentile: nearest rank, the same figure wherever a latency is reported."""

from __future__ import annotations

import pytest

from codehone.core.percentiles import latency_summary, percentile


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    assert latency_summary([]) == {}
    assert latency_summary([5.0, 1.0, 9.0, 3.0]) == {
        "p50": 3.0,
        "p95": 9.0,
        "p99": 9.0,
        "last": 3.0,
    }
