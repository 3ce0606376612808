"""onnx_summary: the graph's inputs, outputs and initializers read from the wire format agree
with what onnx.load parses, without the weights being parsed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codehone.core.onnx_summary import OnnxFormatError, read_summary, summarize


def _expected(proto: onnx.ModelProto) -> tuple[dict, dict, list]:
    def value(v: onnx.ValueInfoProto) -> tuple[int, tuple]:
        t = v.type.tensor_type
        return t.elem_type, tuple(
            d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
        )

    inputs = {v.name: value(v) for v in proto.graph.input}
    outputs = {v.name: value(v) for v in proto.graph.output}
    inits = [
        (t.name, tuple(t.dims), tuple(e.value for e in t.external_data if e.key == "location"))
        for t in proto.graph.initializer
    ]
    return inputs, outputs, inits


def _actual(path: Path) -> tuple[dict, dict, list]:
    summary = read_summary(path)
    return (
        {n: (v.elem_type, v.dims) for n, v in summary.inputs.items()},
        {n: (v.elem_type, v.dims) for n, v in summary.outputs.items()},
        [(t.name, t.dims, t.external_locations) for t in summary.initializers],
    )


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_bigcode"])
def test_agrees_with_onnx_on_exported_and_fused_graphs(
    family: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
) -> None:
    paths = [tiny_model(family) / "model.onnx"]
    if family != "gpt_bigcode":
        paths.append(fused_model(family) / "model.onnx")
    for path in paths:
        assert _actual(path) == _expected(onnx.load(str(path), load_external_data=False))


def test_external_data_locations_and_unpacked_dims(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((3, 5), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [weight],
    )
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    assert _actual(path) == _expected(onnx.load(str(path), load_external_data=False))
    assert read_summary(path).initializers[0].external_locations == ("w.bin",)


def test_malformed_bytes_raise_one_error(tmp_path: Path, tiny_model: Callable[[str], Path]) -> None:
    data = (tiny_model("gpt2") / "model.onnx").read_bytes()
    with pytest.raises(OnnxFormatError):
        summarize(data[: len(data) // 2])  # the graph field runs past the end
    with pytest.raises(OnnxFormatError):
        summarize(b"\x3f\x01")  # wire type 7
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert read_summary(empty).inputs == {}
