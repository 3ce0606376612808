"""The ONNX engine's KV cache: what it holds, and cutting it back to a prefix on the device.

The cache stays where the provider computes it (on the GPU with CUDA), as OrtValues bound
through IO binding, so it never round-trips through the host. Cutting it is needed twice: to
reuse the previous request's cache for the prefix a new prompt shares with it, and to drop the
draft tokens speculation fed but the model did not confirm. With a shared-buffer graph that is
just a shorter valid length; with optimum's graphs each tensor is sliced by a tiny Slice graph
on the same provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from codehone.core.engine.runtime import execution_providers, session_options
from codehone.core.model_dir import KVLayout
from codehone.core.providers import ProviderChoice


@dataclass
class KVCache:
    """The model's past keys and values (one OrtValue per graph input) and their length.

    With a shared-buffer graph the values are buffers of the context length and only the first
    ``length`` positions are valid; otherwise each value holds exactly ``length`` positions.
    ``token_ids`` are the tokens whose keys and values the cache holds."""

    values: list[ort.OrtValue]
    length: int = 0
    token_ids: list[int] = field(default_factory=list)


@dataclass
class PrefixStats:
    """How much prefilling prefix reuse saved, over the engine's lifetime."""

    requests: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0

    @property
    def reuse_rate(self) -> float:
        return self.reused_tokens / max(1, self.reused_tokens + self.prefilled_tokens)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVCropper:
    """Slices every tensor of an exported graph's cache to its first positions, on the device
    the cache lives on (the Slice graph is built by ``prepare`` when the engine loads, else on
    first use: building it imports onnx, seconds that a request must not wait for)."""

    def __init__(self, kv: KVLayout, provider: ProviderChoice) -> None:
        self.kv = kv
        self.provider = provider
        self._session: ort.InferenceSession | None = None

    def prepare(self, count: int) -> None:
        """Build the Slice graph for ``count`` tensors now."""
        if self._session is None:
            self._session = self._build(count)

    def crop(self, values: list[ort.OrtValue], length: int) -> list[ort.OrtValue]:
        self.prepare(len(values))
        binding = self._session.io_binding()
        for i, value in enumerate(values):
            binding.bind_ortvalue_input(f"x{i}", value)
            binding.bind_output(f"y{i}", self.provider.device_type, 0)
        binding.bind_cpu_input("length", np.array([length], dtype=np.int64))
        self._session.run_with_iobinding(binding)
        return list(binding.get_outputs())

    def _build(self, count: int) -> ort.InferenceSession:
        from onnx import TensorProto, helper

        elem = TensorProto.FLOAT16 if self.kv.dtype == "float16" else TensorProto.FLOAT
        shape: list[str | int] = [1, self.kv.num_kv_heads, "past", self.kv.head_size]
        nodes = [
            helper.make_node("Slice", [f"x{i}", "zero", "length", "axis"], [f"y{i}"])
            for i in range(count)
        ]
        graph = helper.make_graph(
            nodes,
            "codehone-kv-crop",
            [helper.make_tensor_value_info(f"x{i}", elem, shape) for i in range(count)]
            + [helper.make_tensor_value_info("length", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info(f"y{i}", elem, shape) for i in range(count)],
            [
                helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                helper.make_tensor("axis", TensorProto.INT64, [1], [2]),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return ort.InferenceSession(
            model.SerializeToString(),
            sess_options=session_options(),
            providers=execution_providers(self.provider),
        )
