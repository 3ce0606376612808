"""SmoothQuant: the activations' outlier channels moved into the weights, before int8 arithmetic.

A MatMul input quantized to int8 with one scale per token loses most of its values when a few
of its channels are much larger than the rest (after SmolLM2's norms a token's largest value is
8-20 times its root mean square): they set the scale, and the others round to a few levels.
``x @ W == (x / s) @ (s * W)`` for any positive per-channel ``s``, so with
``s = max|x|^alpha / max|W|^(1 - alpha)`` (Xiao et al., 2023) the activations and the weights
share the difficulty. The division is folded into what makes ``x``, so the graph computes the
same function with no new node:

- after a norm (``SimplifiedLayerNormalization``, ``LayerNormalization`` and their ``Skip``
  forms): its scale (and bias) divided by ``s``;
- after the MLP's gate (``act(gate) * up``): the up projection's output columns divided by ``s``.

``max|x|`` is measured on calibration text by running the float32 graph. Only a MatMul input
read by weight products alone is smoothed; attention's output (the next product's input) is
not (its channels are mixes of value vectors, already well spread).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("codehone.quantize")

ALPHA = (
    0.5  # SmolLM2 int8, teacher-forced KL to float32: 0.012 at 0.5; 0.020 at 0.35; 0.014 at 0.65
)
CALIBRATION_TOKENS = 512  # per text


def default_calibration() -> list[Path]:
    """Python code every installation has: modules of the standard library."""
    import dataclasses
    import os
    import pathlib
    import typing

    return [Path(inspect.getfile(m)) for m in (os, dataclasses, inspect, typing, pathlib)]


_NORMS = {  # op -> the index of its scale input (its bias, if any, follows)
    "SimplifiedLayerNormalization": 1,
    "LayerNormalization": 1,
    "SkipSimplifiedLayerNormalization": 2,
    "SkipLayerNormalization": 2,
}


@dataclass
class SmoothGroup:
    """A MatMul input, the weights that read it, and where its division is folded."""

    input: str
    weights: list[str]  # [K, N] initializers of the MatMuls reading ``input``
    folds: list[str]  # per-channel tensors divided by s (a norm's scale and bias)
    fold_columns: str = ""  # or: a [K', K] weight whose output columns are divided by s


def smoothable(model: Any) -> list[SmoothGroup]:
    """The MatMul inputs of ``model`` that can be smoothed exactly."""
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}

    def own(name: str) -> bool:  # an initializer nothing else reads
        return name in init and uses.get(name) == 1

    groups: list[SmoothGroup] = []
    for x, readers in consumers.items():
        node = producer.get(x)
        if node is None or x in outputs:
            continue
        if not all(r.op_type == "MatMul" and r.input[0] == x and own(r.input[1]) for r in readers):
            continue
        if any(len(init[r.input[1]].dims) != 2 or init[r.input[1]].data_type != 1 for r in readers):
            continue
        weights = [r.input[1] for r in readers]
        if node.op_type in _NORMS and node.output[0] == x:
            at = _NORMS[node.op_type]
            folds = [n for n in node.input[at : at + 2] if n]
            if folds and all(own(n) for n in folds):
                groups.append(SmoothGroup(x, weights, folds))
        elif node.op_type == "Mul":
            ups = [producer.get(i) for i in node.input]
            ups = [u for u in ups if u is not None and u.op_type == "MatMul" and own(u.input[1])]
            if len(ups) == 1 and uses.get(ups[0].output[0]) == 1:
                groups.append(SmoothGroup(x, weights, [], fold_columns=ups[0].input[1]))
    return groups


def _calibration_feeds(model_dir: Any, token_ids: list[int]) -> dict[str, np.ndarray]:
    """One prompt's inputs for the float32 graph of ``model_dir`` (empty KV cache)."""
    manifest = model_dir.manifest
    io, kv = manifest.io, manifest.kv
    n = len(token_ids)
    feeds: dict[str, np.ndarray] = {io.input_ids: np.array([token_ids], dtype=np.int64)}
    if io.attention_mask:
        feeds[io.attention_mask] = np.ones((1, n), dtype=np.int64)
    if io.position_ids:
        feeds[io.position_ids] = np.arange(n, dtype=np.int64)[None, :]
    if io.seqlens_k:
        feeds[io.seqlens_k] = np.array([n - 1], dtype=np.int32)
    if io.total_sequence_length:
        feeds[io.total_sequence_length] = np.array(n, dtype=np.int32)
    if io.logits_positions:
        feeds[io.logits_positions] = np.array([n - 1], dtype=np.int64)
    length = n if kv.shared_buffer else 0
    for name in kv.past_names():
        feeds[name] = np.zeros((1, kv.num_kv_heads, length, kv.head_size), dtype=np.float32)
    return feeds


def activation_maxima(
    model_dir: Any, groups: Sequence[SmoothGroup], texts: Sequence[Path]
) -> dict[str, np.ndarray]:
    """Each group input's largest magnitude per channel over ``texts`` (the first
    ``CALIBRATION_TOKENS`` tokens of each), from ONNX Runtime running ``model_dir``'s graph
    with those inputs added as outputs."""
    import onnx
    import onnxruntime as ort

    from codehone.core.tokenizer import TextTokenizer

    model = onnx.load(str(model_dir.model_path), load_external_data=False)
    names = [g.input for g in groups]
    model.graph.output.extend(
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names]
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(
        "session.model_external_initializers_file_folder_path", str(model_dir.root)
    )
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    tokenizer = TextTokenizer(model_dir.tokenizer_path)
    most = min(CALIBRATION_TOKENS, model_dir.manifest.context_length - 1)
    maxima: dict[str, np.ndarray] = {}
    for path in texts:
        ids = tokenizer.encode(path.read_text(encoding="utf-8", errors="replace"))[:most]
        if len(ids) < 2:
            continue
        values = session.run(names, _calibration_feeds(model_dir, ids))
        for name, value in zip(names, values, strict=True):
            m = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = np.maximum(maxima[name], m) if name in maxima else m
    return maxima


def smooth(
    model: Any, groups: Sequence[SmoothGroup], maxima: dict[str, np.ndarray], alpha: float = ALPHA
) -> int:
    """Rescale ``model``'s initializers in place (the function it computes unchanged, up to
    float32 rounding); return how many inputs were smoothed."""
    from onnx import numpy_helper

    init = {t.name: t for t in model.graph.initializer}

    def rewrite(name: str, value: np.ndarray) -> None:
        init[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    done = 0
    for group in groups:
        if group.input not in maxima:
            continue
        weights = [numpy_helper.to_array(init[w]) for w in group.weights]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = np.maximum(maxima[group.input], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        for name, w in zip(group.weights, weights, strict=True):
            rewrite(name, w * s[:, None])
        for name in group.folds:
            rewrite(name, numpy_helper.to_array(init[name]) / s)
        if group.fold_columns:
            rewrite(
                group.fold_columns, numpy_helper.to_array(init[group.fold_columns]) / s[None, :]
            )
        done += 1
    return done


def smooth_for_int8(
    model: Any, model_dir: Any, texts: Sequence[Path] | None = None, alpha: float = ALPHA
) -> int:
    """Smooth ``model`` (the float32 graph of ``model_dir``, loaded with its weights),
    calibrated on ``texts`` (default: ``default_calibration()``)."""
    groups = smoothable(model)
    if not groups:
        return 0
    texts = list(texts) if texts is not None else default_calibration()
    maxima = activation_maxima(model_dir, groups, texts)
    done = smooth(model, groups, maxima, alpha)
    log.info(
        "smoothed %d MatMul inputs (alpha %.2f, %d calibration texts)", done, alpha, len(texts)
    )
    return done
