"""Weight-only quantization of a graph's MatMul weights, for CPU serving.

Each MatMul (and plain Gemm) whose weight is a 2-D float32 initializer becomes ONNX Runtime's
``MatMulNBits``: the weight packed to 4 or 8 bits per block of input rows with a float scale
per block, so the model is 4-8 times smaller and its CPU kernels can run int8 arithmetic.
``codehone optimize measure`` reports what it buys and what it costs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codehone_training.export.fused import MS_DOMAIN


def quantize_matmuls(model: Any, bits: int, block_size: int, accuracy_level: int) -> int:
    """Replace every MatMul (and plain Gemm) of the main graph whose weight is a 2-D float32
    initializer with a symmetric block-quantized ``MatMulNBits`` (ONNX Runtime's own packing
    kernels); return how many were replaced."""
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    pack = {4: quantize_matmul_4bits, 8: quantize_matmul_8bits}[bits]
    nodes = []
    replaced: set[str] = set()
    for node in graph.node:
        tensor = weights.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        bias = ""
        if node.op_type == "Gemm":  # optimum's gpt2 (Conv1D): A @ B + C
            plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("transA", 0) == 0
            if not plain or attrs.get("beta", 1.0) != 1.0 or len(node.input) < 3:
                tensor = None
            elif node.input[2] not in weights or len(weights[node.input[2]].dims) != 1:
                tensor = None
            else:
                bias = node.input[2]
        if tensor is None or tensor.data_type != 1 or len(tensor.dims) != 2:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(tensor).astype(np.float32)
        if attrs.get("transB", 0):
            weight = weight.T
        rows, cols = weight.shape  # K, N
        blocks = (rows + block_size - 1) // block_size
        if blocks * block_size != rows:
            weight = np.pad(weight, ((0, blocks * block_size - rows), (0, 0)))
        packed = np.zeros((cols, blocks, block_size * bits // 8), dtype=np.uint8)
        scales = np.zeros((cols, blocks), dtype=np.float32)
        zero_points = np.zeros((cols, (blocks * bits + 7) // 8), dtype=np.uint8)
        pack(
            packed, np.ascontiguousarray(weight), scales, zero_points, block_size, cols, rows, True
        )
        base = f"{tensor.name}/int{bits}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed, base),
                numpy_helper.from_array(scales, base + "/scales"),
            ]
        )
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], base, base + "/scales", *(["", "", bias] if bias else [])],
                list(node.output),
                name=node.name + "/int",
                domain=MS_DOMAIN,
                K=rows,
                N=cols,
                bits=bits,
                block_size=block_size,
                accuracy_level=accuracy_level,
            )
        )
        if uses.get(tensor.name) == 1:
            replaced.add(tensor.name)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return sum(n.op_type == "MatMulNBits" for n in nodes)
