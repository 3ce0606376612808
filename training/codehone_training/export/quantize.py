"""Weight quantization of a graph's MatMul weights, for CPU serving. Three schemes:

- ``block``: ONNX Runtime's ``MatMulNBits``, the weight packed to 4 or 8 bits per block of
  input rows with a float scale per block. The least bytes a decode step reads (int4), but its
  int8 kernel for many rows (a prompt) is barely faster than float32 arithmetic;
- ``channel``: ``DynamicQuantizeMatMul``, int8 weights with one scale per output channel; the
  activations are quantized to uint8 on the fly (one scale per call, so per token when
  decoding) and multiplied by MLAS's int8 GEMM (VNNI): a 512-token prompt's matrix products
  run about 5 times faster than in float32, and a decode step reads one byte per weight.
  One scale for a whole prompt's activations costs accuracy (SmolLM2: 19 of 32 greedy tokens
  differ from float32's);
- ``token``: the same int8 arithmetic with one activation scale per token (``QuantizeLinear``
  per row, ``MatMulIntegerToFloat``), after ``export.smooth`` has moved the activations'
  outlier channels into the weights (SmoothQuant). SmolLM2, 512-token prompt: the prefill
  2.6x faster than ``block`` int8, greedy tokens as float32's on the benchmark's prompts.

``codehone optimize measure`` and ``codehone eval`` report what each buys and costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from codehone_training.export.fused import MS_DOMAIN

SCHEMES = ("block", "channel", "token")
INT8_ONLY = ("channel", "token")


@dataclass
class _Weight:
    """A MatMul (or plain Gemm) of the graph whose weight is a 2-D float32 initializer."""

    node: Any
    name: str
    weight: np.ndarray  # [K, N], as the product uses it
    bias: str  # a Gemm's bias initializer ("" for a MatMul)


def _matmul_weights(model: Any) -> Iterator[tuple[Any, _Weight | None]]:
    """Every node of the main graph, with its quantizable weight (None for the others)."""
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        tensor = weights.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        bias = ""
        if tensor is not None and node.op_type == "Gemm":  # optimum's gpt2 (Conv1D): A @ B + C
            plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("transA", 0) == 0
            if not plain or attrs.get("beta", 1.0) != 1.0 or len(node.input) < 3:
                tensor = None
            elif node.input[2] not in weights or len(weights[node.input[2]].dims) != 1:
                tensor = None
            else:
                bias = node.input[2]
        if tensor is None or tensor.data_type != 1 or len(tensor.dims) != 2:
            yield node, None
            continue
        weight = numpy_helper.to_array(tensor).astype(np.float32)
        if attrs.get("transB", 0):
            weight = weight.T
        yield node, _Weight(node, tensor.name, weight, bias)


def _replace(model: Any, quantize: Any) -> int:
    """Swap each quantizable MatMul for the node(s) ``quantize(weight, graph)`` returns; drop
    the float weights no other node uses; return how many were replaced."""
    from onnx import helper

    graph = model.graph
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes: list[Any] = []
    replaced: set[str] = set()
    count = 0
    for node, weight in list(_matmul_weights(model)):
        if weight is None:
            nodes.append(node)
            continue
        nodes += quantize(weight, graph)
        count += 1
        if uses.get(weight.name) == 1:
            replaced.add(weight.name)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return count


def pack_blocks(weight: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] float32 weight in ``MatMulNBits``' layout (ONNX Runtime's own packing,
    symmetric): the packed values [N, blocks, block_size * bits / 8] and the scales
    [N, blocks]; K is padded to whole blocks. ``GatherBlockQuantized`` reads the same layout."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    pack = {4: quantize_matmul_4bits, 8: quantize_matmul_8bits}[bits]
    rows, cols = weight.shape  # K, N
    blocks = (rows + block_size - 1) // block_size
    if blocks * block_size != rows:
        weight = np.pad(weight, ((0, blocks * block_size - rows), (0, 0)))
    packed = np.zeros((cols, blocks, block_size * bits // 8), dtype=np.uint8)
    scales = np.zeros((cols, blocks), dtype=np.float32)
    zero_points = np.zeros((cols, (blocks * bits + 7) // 8), dtype=np.uint8)
    pack(packed, np.ascontiguousarray(weight), scales, zero_points, block_size, cols, rows, True)
    return packed, scales


def _block_node(w: _Weight, graph: Any, bits: int, block_size: int, accuracy_level: int) -> Any:
    """``w`` as a symmetric block-quantized ``MatMulNBits`` (ONNX Runtime's own packing)."""
    from onnx import helper, numpy_helper

    rows, cols = w.weight.shape  # K, N
    packed, scales = pack_blocks(w.weight, bits, block_size)
    base = f"{w.name}/int{bits}"
    graph.initializer.extend(
        [numpy_helper.from_array(packed, base), numpy_helper.from_array(scales, base + "/scales")]
    )
    return helper.make_node(
        "MatMulNBits",
        [w.node.input[0], base, base + "/scales", *(["", "", w.bias] if w.bias else [])],
        list(w.node.output),
        name=w.node.name + "/int",
        domain=MS_DOMAIN,
        K=rows,
        N=cols,
        bits=bits,
        block_size=block_size,
        accuracy_level=accuracy_level,
    )


def quantize_matmuls(model: Any, bits: int, block_size: int, accuracy_level: int) -> int:
    """Replace every MatMul (and plain Gemm) of the main graph whose weight is a 2-D float32
    initializer with a symmetric block-quantized ``MatMulNBits``; return how many were
    replaced."""
    return _replace(
        model, lambda w, graph: [_block_node(w, graph, bits, block_size, accuracy_level)]
    )


def per_channel_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` [K, N] as symmetric int8 with one float32 scale per output channel (column):
    ``weight ~= q * scale``."""
    scale = np.abs(weight).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


# Producers of a well-conditioned MatMul input: a normalization (each token scaled to about
# unit size) or attention (a convex mix of value vectors).
_CONDITIONED = {
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "GroupQueryAttention",
    "Gather",  # the head's: the final norm's output at the positions asked for
}


def quantize_matmuls_per_channel(model: Any, block_size: int = 32) -> int:
    """Replace every MatMul (and plain Gemm) of the main graph whose weight is a 2-D float32
    initializer: with ``DynamicQuantizeMatMul`` over per-channel int8 weights where its input
    comes out of a normalization or attention, else with an int8 ``MatMulNBits`` of
    ``block_size`` (per-token activation scales). The second covers the MLP's down
    projection: its input holds the "massive activations" of a few tokens (thousands of
    times the others' in SmolLM2, at the prompt's first token), which one scale per call
    would round every other token's values to zero with. Returns how many were replaced."""
    from onnx import helper, numpy_helper

    producer = {out: node.op_type for node in model.graph.node for out in node.output}

    def quantize(w: _Weight, graph: Any) -> list[Any]:
        if producer.get(w.node.input[0]) not in _CONDITIONED:
            return [_block_node(w, graph, 8, block_size, accuracy_level=4)]
        q, scale = per_channel_int8(w.weight)
        base = f"{w.name}/int8c"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, base),
                numpy_helper.from_array(scale, base + "/scales"),
                numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), base + "/zero"),
            ]
        )
        inputs = [w.node.input[0], base, base + "/scales", base + "/zero"]
        return [
            helper.make_node(
                "DynamicQuantizeMatMul",
                [*inputs, *([w.bias] if w.bias else [])],
                list(w.node.output),
                name=w.node.name + "/int8c",
                domain=MS_DOMAIN,
            )
        ]

    return _replace(model, quantize)


class _TokenQuantizer:
    """Per-token uint8 activations for ``MatMulIntegerToFloat``: each row of a MatMul input
    scaled by its own largest magnitude (``scale = max|x| / 127``, zero point 128), once per
    input however many products read it. Rows are the next-to-last axis: batch 1, as the
    engine runs."""

    PREFIX = "int8t"

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17
        )
        self.done: dict[str, tuple[str, str]] = {}
        c = self.PREFIX
        self.last, self.tiny, self.step, self.zero, self.one = (
            f"{c}/last",
            f"{c}/tiny",
            f"{c}/inv127",
            f"{c}/zero",
            f"{c}/one",
        )
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([-1], np.int64), self.last),
                numpy_helper.from_array(np.array(1e-12, np.float32), self.tiny),
                numpy_helper.from_array(np.array(1 / 127, np.float32), self.step),
                numpy_helper.from_array(np.array(128, np.uint8), self.zero),
                numpy_helper.from_array(np.array(1.0, np.float32), self.one),
            ]
        )

    def quantize(self, x: str) -> tuple[list[Any], str, str]:
        """The nodes quantizing ``x`` (none when already done), its uint8 rows and their
        scales ([..., rows, 1])."""
        from onnx import helper

        if x in self.done:
            return [], *self.done[x]
        b = f"{x}/{self.PREFIX}"
        if self.opset >= 18:  # axes became an input
            reduce = helper.make_node(
                "ReduceMax", [b + "/abs", self.last], [b + "/max"], keepdims=1
            )
        else:
            reduce = helper.make_node(
                "ReduceMax", [b + "/abs"], [b + "/max"], axes=[-1], keepdims=1
            )
        nodes = [
            helper.make_node("Abs", [x], [b + "/abs"]),
            reduce,
            helper.make_node("Max", [b + "/max", self.tiny], [b + "/max1"]),
            helper.make_node("Mul", [b + "/max1", self.step], [b + "/scale"]),
            helper.make_node("Reshape", [b + "/scale", self.last], [b + "/row_scales"]),
            helper.make_node("Shape", [b + "/row_scales"], [b + "/rows"]),
            helper.make_node("Expand", [self.zero, b + "/rows"], [b + "/zeros"]),
            helper.make_node(
                "QuantizeLinear", [x, b + "/row_scales", b + "/zeros"], [b + "/q"], axis=-2
            ),
        ]
        self.done[x] = (b + "/q", b + "/scale")
        return nodes, b + "/q", b + "/scale"


def quantize_matmuls_per_token(model: Any, block_size: int = 32) -> int:
    """Replace every MatMul (and plain Gemm) of the main graph whose weight is a 2-D float32
    initializer: with per-channel int8 weights times per-token uint8 activations
    (``MatMulIntegerToFloat``, then the rows' scales), except the output projection (its input
    a ``Gather`` of the positions asked for), which stays a block int8 ``MatMulNBits`` of
    ``block_size`` so that the token embedding can share its bytes. Smooth the graph first
    (``export.smooth``): per-token scales alone leave a token's outlier channels rounding its
    other values away. Returns how many were replaced."""
    from onnx import helper, numpy_helper

    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    tokens = _TokenQuantizer(model)

    def quantize(w: _Weight, graph: Any) -> list[Any]:
        if producer.get(w.node.input[0]) == "Gather":
            return [_block_node(w, graph, 8, block_size, accuracy_level=4)]
        q, scale = per_channel_int8(w.weight)
        base = f"{w.name}/int8t"
        graph.initializer.extend(
            [numpy_helper.from_array(q, base), numpy_helper.from_array(scale, base + "/scales")]
        )
        nodes, rows, row_scales = tokens.quantize(w.node.input[0])
        out = w.node.output[0]
        inputs = [rows, base, tokens.one, base + "/scales", tokens.zero]
        scaled = out + "/scaled" if w.bias else out
        bias = [helper.make_node("Add", [scaled, w.bias], [out])] if w.bias else []
        return [
            *nodes,
            helper.make_node(
                "MatMulIntegerToFloat",
                inputs,
                [out + "/unscaled"],
                name=out + "/int8t",
                domain=MS_DOMAIN,
            ),
            helper.make_node("Mul", [out + "/unscaled", row_scales], [scaled]),
            *bias,  # after the rows' scales
        ]

    return _replace(model, quantize)
