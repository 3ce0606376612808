"""A tuned model is served in its base's format: quantized as the base is."""

from __future__ import annotations

import pytest

from codehone_training.tune import quantized_bits, quantized_scheme


@pytest.mark.parametrize(
    ("steps", "bits"),
    [
        (["fused-fp32", "int8-block32"], 8),
        (["fused-fp32", "int4-block32"], 4),
        (["fused-fp32", "int8-channel"], 8),
        (["fused-fp32", "int8-token"], 8),
        (["fused-fp32"], 0),
        ([], 0),
        (["int80-something"], 0),
    ],
)
def test_the_base_quantization_is_read_from_its_steps(steps: list[str], bits: int) -> None:
    assert quantized_bits(steps) == bits


@pytest.mark.parametrize(
    ("steps", "scheme"),
    [
        (["fused-fp32", "int8-channel"], "channel"),
        (["fused-fp32", "int8-token", "embedding-int8"], "token"),
        (["fused-fp32", "int8-block32"], "block"),
        (["fused-fp32"], "block"),
    ],
)
def test_the_base_quantization_scheme_is_kept(steps: list[str], scheme: str) -> None:
    assert quantized_scheme(steps) == scheme
