"""The token embedding table quantized like the MatMul weights, and shared with a tied output.

After ``quantize_matmuls`` the blocks and the output projection are int8 or int4, but the
token embedding (a ``Gather`` from a float32 table) stays float32: for SmolLM2-135M that table
is 113 MB of a 267 MB int8 model. A decode step reads one row of it per token, so it costs no
speed, only disk and memory. ONNX Runtime's ``GatherBlockQuantized`` reads the very layout
``MatMulNBits`` stores (rows of blocks of packed values, one scale per block, the symmetric
zero point implied), so:

- the table is packed with the same kernel, bits and block size as the MatMul weights;
- when the model ties its embedding to its output projection (most small code models do), the
  packed bytes equal the projection's: the ``Gather`` then reads the projection's initializer
  and the table is gone (SmolLM2 int8: 267 -> 154 MB);
- a row comes back as float32 within half a quantization step of the original, the error the
  output projection already has.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from codehone_training.export.fused import MS_DOMAIN
from codehone_training.export.quantize import pack_blocks

log = logging.getLogger("codehone.quantize")


def quantize_embeddings(
    model: Any, bits: int, block_size: int, token_ids: str = "input_ids"
) -> int:
    """Replace each ``Gather`` of rows from a 2-D float32 initializer indexed by the rank-2 graph
    input ``token_ids`` (the token embedding; position tables stay as they are: small, and
    read by position) with ``GatherBlockQuantized`` + ``Reshape``; reuse a packed
    ``MatMulNBits`` weight with the same bytes. Return how many tables were replaced."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    ids = {
        i.name
        for i in graph.input
        if i.name == token_ids and len(i.type.tensor_type.shape.dim) == 2
    }
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    packed_weights = {}  # MatMulNBits' packed weight -> its scales, for sharing
    for n in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "MatMulNBits" and (attrs.get("bits"), attrs.get("block_size")) == (
            bits,
            block_size,
        ):
            packed_weights[n.input[1]] = n.input[2]
    nodes, replaced, count = [], set(), 0
    for node in graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if (
            table is None
            or axis != 0
            or table.data_type != 1
            or len(table.dims) != 2
            or table.dims[1] % block_size
            or node.input[1] not in ids
        ):
            nodes.append(node)
            continue
        rows, width = table.dims  # vocabulary, hidden
        blocks = width // block_size
        values = numpy_helper.to_array(table).astype(np.float32)
        packed, scales = pack_blocks(np.ascontiguousarray(values.T), bits, block_size)
        data = _same_packed(weights, packed_weights, packed, scales)
        base = f"{table.name}/int{bits}"
        if data is None:
            data = base
            graph.initializer.append(numpy_helper.from_array(packed, data))
        graph.initializer.extend(
            [
                numpy_helper.from_array(scales.reshape(rows, blocks, 1), base + "/scales"),
                numpy_helper.from_array(np.array([0, 0, width], np.int64), base + "/shape"),
            ]
        )
        gathered = node.output[0] + "/blocks"
        nodes += [
            helper.make_node(
                "GatherBlockQuantized",
                [data, node.input[1], base + "/scales"],
                [gathered],
                name=node.name + "/int",
                domain=MS_DOMAIN,
                gather_axis=0,
                quantize_axis=2,
                block_size=block_size,
                bits=bits,
            ),
            helper.make_node(
                "Reshape", [gathered, base + "/shape"], list(node.output), name=node.name + "/rows"
            ),
        ]
        log.info(
            "embedding %s [%d, %d] as int%d%s",
            table.name,
            rows,
            width,
            bits,
            f", sharing {data}" if data != base else "",
        )
        if uses.get(table.name) == 1:
            replaced.add(table.name)
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


def _same_packed(
    weights: dict[str, Any], packed_weights: dict[str, str], packed: np.ndarray, scales: np.ndarray
) -> str | None:
    """The name of a ``MatMulNBits`` weight holding exactly ``packed`` with ``scales`` (a tied
    output projection), or None."""
    from onnx import numpy_helper

    for name, scales_name in packed_weights.items():
        tensor = weights.get(name)
        if tensor is None or tuple(tensor.dims) != packed.shape:
            continue
        if np.array_equal(numpy_helper.to_array(tensor), packed) and np.array_equal(
            numpy_helper.to_array(weights[scales_name]).reshape(scales.shape), scales
        ):
            return name
    return None
