"""SmoothQuant (export.smooth): the smoothed graph computes the same function, and moving an
outlier channel into the weights is what lets per-token int8 activations keep its neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

K, N, ROWS = 64, 48, 40


def norm_then_matmuls(gamma: np.ndarray, weights: list[np.ndarray]) -> Any:
    """x -> SimplifiedLayerNormalization(gamma) -> one MatMul per weight (outputs y0, y1...)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["h"], axis=-1)]
    inits = [numpy_helper.from_array(gamma, "gamma")]
    outputs = []
    for i, w in enumerate(weights):
        nodes.append(helper.make_node("MatMul", ["h", f"w{i}"], [f"y{i}"]))
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ROWS, K])],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def run(model: Any, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def outlier_case() -> tuple[Any, np.ndarray]:
    """A norm whose scale makes channel 5 forty times the others (as real models' do)."""
    rng = np.random.default_rng(0)
    gamma = np.ones(K, dtype=np.float32)
    gamma[5] = 40.0
    weights = [rng.normal(size=(K, N)).astype(np.float32) * 0.1 for _ in range(2)]
    x = rng.normal(size=(1, ROWS, K)).astype(np.float32)
    return norm_then_matmuls(gamma, weights), x


def maxima_of(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """The norm output's largest magnitude per channel, as the calibration measures it."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, None))
    h = run(probe, x)[-1]
    return {"h": np.abs(h.reshape(-1, K)).max(axis=0)}


def test_smoothing_finds_the_norm_and_keeps_the_function() -> None:
    from codehone_training.export.smooth import smooth, smoothable

    model, x = outlier_case()
    before = run(model, x)
    groups = smoothable(model)
    assert [(g.input, g.weights, g.folds) for g in groups] == [("h", ["w0", "w1"], ["gamma"])]
    assert smooth(model, groups, maxima_of(model, x)) == 1
    gamma = onnx.numpy_helper.to_array(model.graph.initializer[0])
    assert gamma[5] < 40.0 / 2  # the outlier channel's size moved into the weights
    for a, b in zip(run(model, x), before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_smoothing_lets_per_token_int8_keep_the_other_channels() -> None:
    from codehone_training.export.quantize import quantize_matmuls_per_token
    from codehone_training.export.smooth import smooth, smoothable

    def token_int8_error(smoothed: bool) -> float:
        model, x = outlier_case()
        reference = run(model, x)
        if smoothed:
            smooth(model, smoothable(model), maxima_of(model, x))
        assert quantize_matmuls_per_token(model) == 2
        assert "MatMulIntegerToFloat" in {n.op_type for n in model.graph.node}
        got = run(model, x)
        return max(
            float(np.abs(g - r).max() / np.abs(r).max())
            for g, r in zip(got, reference, strict=True)
        )

    plain, smoothed = token_int8_error(False), token_int8_error(True)
    assert smoothed < plain / 2, (plain, smoothed)
    assert smoothed < 0.02


def test_an_input_read_by_anything_but_weight_products_is_left_alone() -> None:
    from onnx import helper

    from codehone_training.export.smooth import smoothable

    model, _ = outlier_case()
    model.graph.node.append(helper.make_node("Relu", ["h"], ["r"]))
    model.graph.output.append(helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, None))
    assert smoothable(model) == []
