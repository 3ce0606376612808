"""Optimize an exported model directory for decoding: codehone's fused graph, and quantization.

Why this module exists: optimum's export is a faithful trace of the PyTorch model, and that is
what makes it slow to decode. Every step re-allocates the whole KV cache (past in, a new
present out), hundreds of small shape ops run between the matrix multiplications (some on the
CPU, with copies to and from the GPU), attention is a dozen separate kernels, the fp16 export
keeps float32 KV and logits with casts inside, and the logits of every position leave the
graph although decoding reads one row.

``fuse`` rebuilds the decode graph of the families that matter (gpt2, llama, qwen2) from the
same weights, as a handful of fused ONNX Runtime kernels per layer:

- ``GroupQueryAttention`` (fused attention; rotary embeddings inside for llama/qwen2) over a
  KV buffer that past and present share: one buffer per layer, allocated once by the engine at
  the context length and written in place; the graph learns the valid length from
  ``seqlens_k`` / ``total_sequence_length``, so dropping cached tokens (a prefix reuse, a
  rejected speculative draft) is free;
- ``SkipLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (residual add + norm) and
  ``FastGelu`` with its bias;
- logits only for the positions the engine asks for (``logits_positions``, usually the last
  one) and their arg-max inside the graph (``next_tokens``), so a decode step hands back a few
  bytes instead of a vocabulary-sized row;
- fp16 weights, KV and activations end to end on the GPU (no casts), float32 on the CPU;
- no shape arithmetic at all (every Reshape is constant), so every node can run on the GPU and
  the decode step can be captured as a CUDA graph.

The result is verified against PyTorch (logits within the export tolerance, greedy tokens
identical) before it is written, like an export.

``quantize`` is for CPU users: weight-only int8/int4 (``MatMulNBits``) on the MatMul weights;
``measure`` reports what it buys (ms per token) and what it costs (loss, greedy agreement).

Run it as ``python -m codehone_training.export.optimize --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.errors import CodehoneError, ExportError
from codehone.core.model_dir import (
    MANIFEST_NAME,
    GraphIO,
    KVLayout,
    Manifest,
    ModelDir,
    load_model_dir,
    write_manifest,
)

log = logging.getLogger("codehone.optimize")

FUSED_FAMILIES = ("gpt2", "llama", "qwen2")
# Largest |fused - PyTorch| logit difference accepted, relative to max(1, largest |logit|).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
_ONNX_FILE = "model.onnx"
_DATA_FILE = "model.onnx.data"
_MS_DOMAIN = "com.microsoft"
_OPSET = 17


class OptimizeError(ExportError):
    """The model cannot be optimized as asked (unsupported family or config, failed check)."""


# ---------------------------------------------------------------------------------------------
# The model's shape, read from its Hugging Face config
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusedConfig:
    """What the fused graph needs to know about the model (from its Hugging Face config)."""

    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_size: int
    intermediate: int
    vocab_size: int
    context_length: int
    eps: float
    activation: str  # gelu_tanh | gelu | relu (gpt2); silu (llama, qwen2)
    rope_theta: float = 10000.0
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tied: bool = True


_GPT2_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}


def fused_config(config: Any) -> FusedConfig:
    """Read a transformers config; refuse (OptimizeError) what the fused graph does not do."""
    family = str(config.model_type)
    if family not in FUSED_FAMILIES:
        raise OptimizeError(
            f"the fused graph supports {', '.join(FUSED_FAMILIES)}, not {family!r} "
            "(that model keeps its exported graph)"
        )
    if family == "gpt2":
        activation = _GPT2_ACTIVATIONS.get(config.activation_function)
        if activation is None:
            raise OptimizeError(f"gpt2 activation {config.activation_function!r} is not supported")
        if config.scale_attn_by_inverse_layer_idx or not config.scale_attn_weights:
            raise OptimizeError("gpt2 attention scaling other than 1/sqrt(head) is not supported")
        hidden = int(config.n_embd)
        return FusedConfig(
            family=family,
            layers=int(config.n_layer),
            hidden=hidden,
            heads=int(config.n_head),
            kv_heads=int(config.n_head),
            head_size=hidden // int(config.n_head),
            intermediate=int(config.n_inner or 4 * hidden),
            vocab_size=int(config.vocab_size),
            context_length=int(config.n_positions),
            eps=float(config.layer_norm_epsilon),
            activation=activation,
            qkv_bias=True,
            o_bias=True,
            mlp_bias=True,
            tied=True,
        )
    if config.hidden_act != "silu":
        raise OptimizeError(f"{family} activation {config.hidden_act!r} is not supported")
    scaling = getattr(config, "rope_scaling", None)
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise OptimizeError(f"{family} rope scaling {scaling!r} is not supported")
    if getattr(config, "use_sliding_window", False):
        raise OptimizeError(f"{family} sliding-window attention is not supported")
    heads = int(config.num_attention_heads)
    head_size = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return FusedConfig(
        family=family,
        layers=int(config.num_hidden_layers),
        hidden=int(config.hidden_size),
        heads=heads,
        kv_heads=int(config.num_key_value_heads or heads),
        head_size=head_size,
        intermediate=int(config.intermediate_size),
        vocab_size=int(config.vocab_size),
        context_length=int(config.max_position_embeddings),
        eps=float(config.rms_norm_eps),
        activation="silu",
        rope_theta=float(getattr(config, "rope_theta", 10000.0)),
        qkv_bias=family == "qwen2" or bool(getattr(config, "attention_bias", False)),
        o_bias=family != "qwen2" and bool(getattr(config, "attention_bias", False)),
        mlp_bias=bool(getattr(config, "mlp_bias", False)),
        tied=bool(getattr(config, "tie_word_embeddings", False)),
    )


# ---------------------------------------------------------------------------------------------
# Weights: from the Hugging Face checkpoint, or (gpt2) from the exported graph itself
# ---------------------------------------------------------------------------------------------


def load_checkpoint_weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors checkpoint as float32 numpy arrays (bf16 included)."""
    from safetensors.torch import load_file

    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise OptimizeError(f"{checkpoint}: no .safetensors weights")
    weights: dict[str, np.ndarray] = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            weights[name] = tensor.float().numpy()
    return weights


def load_onnx_weights(model_path: Path) -> dict[str, np.ndarray]:
    """The named initializers of an exported graph (gpt2's keep their PyTorch names)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model_path), load_external_data=True)
    return {
        t.name: numpy_helper.to_array(t).astype(np.float32)
        for t in proto.graph.initializer
        if t.data_type in (1, 10, 16)  # float, float16, bfloat16
    }


class _Weights:
    """Name lookup over a state dict, tolerant of the prefixes checkpoints differ in."""

    def __init__(self, tensors: dict[str, np.ndarray], prefixes: Sequence[str]) -> None:
        self.tensors = tensors
        self.prefixes = prefixes

    def get(self, name: str) -> np.ndarray:
        for prefix in self.prefixes:
            if prefix + name in self.tensors:
                return self.tensors[prefix + name]
        raise OptimizeError(f"weight {name!r} is missing from the checkpoint")

    def has(self, name: str) -> bool:
        return any(prefix + name in self.tensors for prefix in self.prefixes)


# ---------------------------------------------------------------------------------------------
# The fused graph
# ---------------------------------------------------------------------------------------------


class _Graph:
    """Collects nodes and initializers; names every intermediate value uniquely."""

    def __init__(self, np_dtype: type) -> None:
        self.np_dtype = np_dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def weight(self, name: str, array: np.ndarray, dtype: Any = None) -> str:
        from onnx import numpy_helper

        data = np.ascontiguousarray(array, dtype=dtype or self.np_dtype)
        self.initializers.append(numpy_helper.from_array(data, name))
        return name

    def node(
        self, op: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attrs: Any
    ) -> list[str]:
        from onnx import helper

        domain = attrs.pop("domain", "")
        self._count += 1
        if isinstance(outputs, int):
            outputs = [f"/{op}_{self._count}/out{i}" for i in range(outputs)]
        self.nodes.append(
            helper.make_node(
                op, list(inputs), list(outputs), name=f"/{op}_{self._count}", domain=domain, **attrs
            )
        )
        return list(outputs)


def _rotary_caches(cfg: FusedConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of position x frequency, [context, head_size / 2] (HF's default RoPE)."""
    inv_freq = 1.0 / (
        cfg.rope_theta ** (np.arange(0, cfg.head_size, 2, dtype=np.int64) / cfg.head_size)
    )
    angles = np.outer(np.arange(cfg.context_length, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build_fused_graph(cfg: FusedConfig, tensors: dict[str, np.ndarray], dtype: str) -> Any:
    """The fused decode graph (an ``onnx.ModelProto``) of one model, in fp32 or fp16.

    Inputs: ``input_ids`` [1, S] int64, ``position_ids`` [1, S] int64 (gpt2 only),
    ``seqlens_k`` [1] int32 (= valid length after this step - 1), ``total_sequence_length`` []
    int32, ``logits_positions`` [K] int64 (which of the S positions get logits), and the KV
    buffers ``past_key_values.{i}.key|value`` [1, kv_heads, capacity, head_size].
    Outputs: ``logits`` [1, K, vocab] float32, ``next_tokens`` [1, K] int64 (their arg-max) and
    ``present.{i}.key|value``, which the engine binds to the very buffers it passed as past.
    """
    from onnx import TensorProto, helper

    np_dtype = np.float16 if dtype == "fp16" else np.float32
    elem = TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT
    g = _Graph(np_dtype)
    gpt2 = cfg.family == "gpt2"
    w = _Weights(tensors, ("transformer.", "") if gpt2 else ("",))
    kv_dims = [1, cfg.kv_heads, "max_sequence_length", cfg.head_size]

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])]
    if gpt2:
        inputs.append(
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "sequence"])
        )
    inputs += [
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("logits_positions", TensorProto.INT64, ["kept"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "kept", cfg.vocab_size]),
        helper.make_tensor_value_info("next_tokens", TensorProto.INT64, [1, "kept"]),
    ]
    for i in range(cfg.layers):
        for part in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(f"past_key_values.{i}.{part}", elem, kv_dims)
            )
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{part}", elem, kv_dims))

    def linear(x: str, name: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
        """x @ weight (+ bias); ``weight`` is already [in, out]."""
        (y,) = g.node("MatMul", [x, g.weight(f"{name}.weight", weight)])
        if bias is not None:
            (y,) = g.node("Add", [y, g.weight(f"{name}.bias", bias)])
        return y

    gqa_attrs: dict[str, Any] = {
        "domain": _MS_DOMAIN,
        "num_heads": cfg.heads,
        "kv_num_heads": cfg.kv_heads,
        "scale": 1.0 / math.sqrt(cfg.head_size),
    }
    rotary_inputs: list[str] = []
    if not gpt2:
        cos, sin = _rotary_caches(cfg)
        rotary_inputs = [g.weight("cos_cache", cos), g.weight("sin_cache", sin)]
        gqa_attrs.update(do_rotary=1, rotary_interleaved=0)

    # Embeddings, then the first norm.
    if gpt2:
        (tok,) = g.node("Gather", [g.weight("wte.weight", w.get("wte.weight")), "input_ids"])
        (pos,) = g.node("Gather", [g.weight("wpe.weight", w.get("wpe.weight")), "position_ids"])
        (residual,) = g.node("Add", [tok, pos])
        ln_w, ln_b = w.get("h.0.ln_1.weight"), w.get("h.0.ln_1.bias")
        (x,) = g.node(
            "LayerNormalization",
            [residual, g.weight("h.0.ln_1.weight", ln_w), g.weight("h.0.ln_1.bias", ln_b)],
            axis=-1,
            epsilon=cfg.eps,
        )
    else:
        embed = g.weight("embed_tokens.weight", w.get("model.embed_tokens.weight"))
        (residual,) = g.node("Gather", [embed, "input_ids"])
        (x,) = g.node(
            "SimplifiedLayerNormalization",
            [residual, g.weight("layers.0.ln1", w.get("model.layers.0.input_layernorm.weight"))],
            axis=-1,
            epsilon=cfg.eps,
            stash_type=1,
        )

    def skip_norm(x: str, residual: str, gamma: str, beta: str | None, bias: str | None) -> tuple:
        """LayerNorm(residual + x + bias) and that sum (the new residual stream)."""
        if gpt2:
            inputs = [x, residual, gamma, beta or "", bias or ""]
            op = "SkipLayerNormalization"
        else:
            inputs = [x, residual, gamma, bias or ""]
            op = "SkipSimplifiedLayerNormalization"
        while inputs and not inputs[-1]:
            inputs.pop()
        out, _, _, total = g.node(op, inputs, 4, domain=_MS_DOMAIN, epsilon=cfg.eps)
        return out, total

    for i in range(cfg.layers):
        # Attention: one packed QKV projection, then GroupQueryAttention over the shared buffer.
        if gpt2:
            p = f"h.{i}."
            qkv = linear(
                x, p + "qkv", w.get(p + "attn.c_attn.weight"), w.get(p + "attn.c_attn.bias")
            )
        else:
            p = f"model.layers.{i}.self_attn."
            weight = np.concatenate(
                [w.get(p + f"{n}_proj.weight").T for n in ("q", "k", "v")], axis=1
            )
            bias = None
            if cfg.qkv_bias:
                bias = np.concatenate([w.get(p + f"{n}_proj.bias") for n in ("q", "k", "v")])
            qkv = linear(x, f"layers.{i}.qkv", weight, bias)
        attn, _, _ = g.node(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                "seqlens_k",
                "total_sequence_length",
                *rotary_inputs,
            ],
            [f"/layers.{i}/attn", f"present.{i}.key", f"present.{i}.value"],
            **gqa_attrs,
        )
        if gpt2:
            p = f"h.{i}."
            (o,) = g.node(
                "MatMul", [attn, g.weight(p + "o.weight", w.get(p + "attn.c_proj.weight"))]
            )
            x, residual = skip_norm(
                o,
                residual,
                g.weight(p + "ln_2.weight", w.get(p + "ln_2.weight")),
                g.weight(p + "ln_2.bias", w.get(p + "ln_2.bias")),
                g.weight(p + "o.bias", w.get(p + "attn.c_proj.bias")),
            )
            (h,) = g.node("MatMul", [x, g.weight(p + "fc.weight", w.get(p + "mlp.c_fc.weight"))])
            fc_bias = g.weight(p + "fc.bias", w.get(p + "mlp.c_fc.bias"))
            if cfg.activation == "gelu_tanh":
                (h,) = g.node("FastGelu", [h, fc_bias], domain=_MS_DOMAIN)
            elif cfg.activation == "gelu":
                (h,) = g.node("BiasGelu", [h, fc_bias], domain=_MS_DOMAIN)
            else:
                (h,) = g.node("Add", [h, fc_bias])
                (h,) = g.node("Relu", [h])
            (down,) = g.node(
                "MatMul", [h, g.weight(p + "proj.weight", w.get(p + "mlp.c_proj.weight"))]
            )
            down_bias = g.weight(p + "proj.bias", w.get(p + "mlp.c_proj.bias"))
            if i + 1 < cfg.layers:
                n = f"h.{i + 1}."
                gamma = g.weight(n + "ln_1.weight", w.get(n + "ln_1.weight"))
                beta = g.weight(n + "ln_1.bias", w.get(n + "ln_1.bias"))
            else:
                gamma = g.weight("ln_f.weight", w.get("ln_f.weight"))
                beta = g.weight("ln_f.bias", w.get("ln_f.bias"))
            x, residual = skip_norm(down, residual, gamma, beta, down_bias)
        else:
            p = f"model.layers.{i}."
            o_bias = w.get(p + "self_attn.o_proj.bias") if cfg.o_bias else None
            (o,) = g.node(
                "MatMul",
                [attn, g.weight(f"layers.{i}.o.weight", w.get(p + "self_attn.o_proj.weight").T)],
            )
            x, residual = skip_norm(
                o,
                residual,
                g.weight(f"layers.{i}.ln2", w.get(p + "post_attention_layernorm.weight")),
                None,
                g.weight(f"layers.{i}.o.bias", o_bias) if o_bias is not None else None,
            )

            def mlp_bias(name: str, p: str = p) -> np.ndarray | None:
                return w.get(p + f"mlp.{name}.bias") if cfg.mlp_bias else None

            gate = linear(
                x, f"layers.{i}.gate", w.get(p + "mlp.gate_proj.weight").T, mlp_bias("gate_proj")
            )
            up = linear(x, f"layers.{i}.up", w.get(p + "mlp.up_proj.weight").T, mlp_bias("up_proj"))
            (sig,) = g.node("Sigmoid", [gate])
            (silu,) = g.node("Mul", [gate, sig])
            (h,) = g.node("Mul", [silu, up])
            (down,) = g.node(
                "MatMul", [h, g.weight(f"layers.{i}.down", w.get(p + "mlp.down_proj.weight").T)]
            )
            down_bias = mlp_bias("down_proj")
            if i + 1 < cfg.layers:
                gamma = g.weight(
                    f"layers.{i + 1}.ln1", w.get(f"model.layers.{i + 1}.input_layernorm.weight")
                )
            else:
                gamma = g.weight("norm.weight", w.get("model.norm.weight"))
            x, residual = skip_norm(
                down,
                residual,
                gamma,
                None,
                g.weight(f"layers.{i}.down.bias", down_bias) if down_bias is not None else None,
            )

    # Only the positions asked for reach the vocabulary projection; arg-max stays in the graph.
    (kept,) = g.node("Gather", [x, "logits_positions"], axis=1)
    if gpt2 or cfg.tied or not w.has("lm_head.weight"):
        head = w.get("wte.weight") if gpt2 else w.get("model.embed_tokens.weight")
    else:
        head = w.get("lm_head.weight")
    (logits,) = g.node("MatMul", [kept, g.weight("lm_head.weight", head.T)])
    if dtype == "fp16":
        g.node("Cast", [logits], ["logits"], to=TensorProto.FLOAT)
    else:
        g.node("Identity", [logits], ["logits"])
    g.node("ArgMax", ["logits"], ["next_tokens"], axis=-1, keepdims=0)

    graph = helper.make_graph(g.nodes, "codehone-fused", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_MS_DOMAIN, 1)],
        producer_name="codehone.optimize",
    )
    model.ir_version = 8
    return model


def _save_onnx(model: Any, directory: Path) -> None:
    """Save with the weights in one external-data file (no 2 GB protobuf limit)."""
    import onnx

    onnx.save_model(
        model,
        str(directory / _ONNX_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=_DATA_FILE,
        size_threshold=1024,
    )


def _fused_manifest(manifest: Manifest, cfg: FusedConfig, dtype: str, steps: list[str]) -> Manifest:
    kv = KVLayout(
        num_layers=cfg.layers,
        num_kv_heads=cfg.kv_heads,
        head_size=cfg.head_size,
        dtype="float16" if dtype == "fp16" else "float32",
        shared_buffer=True,
    )
    io = GraphIO(
        attention_mask=None,
        position_ids="position_ids" if cfg.family == "gpt2" else None,
        seqlens_k="seqlens_k",
        total_sequence_length="total_sequence_length",
        logits_positions="logits_positions",
        next_tokens="next_tokens",
    )
    provenance = replace(
        manifest.provenance,
        export_dtype=dtype,
        optimizations=[*manifest.provenance.optimizations, *steps],
    )
    return replace(manifest, kv=kv, io=io, provenance=provenance, model_file=_ONNX_FILE)


# ---------------------------------------------------------------------------------------------
# Rewriting an optimum graph: logits of the asked-for positions only, arg-max inside
# ---------------------------------------------------------------------------------------------


def add_last_logits(model: Any) -> Any:
    """Rewrite an exported graph so it computes the logits of ``logits_positions`` only (a
    Gather before the vocabulary projection) and their arg-max (``next_tokens``)."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    node = producer.get("logits")
    while node is not None and node.op_type in ("Cast", "Identity", "Add"):
        inputs = [i for i in node.input if i not in constants]  # Add: skip the bias
        node = producer.get(inputs[0]) if len(inputs) == 1 else None
    if node is None or node.op_type != "MatMul":
        raise OptimizeError("could not find the vocabulary projection (a MatMul) before logits")
    hidden = node.input[0]
    gathered = hidden + "/last_positions"
    index = list(graph.node).index(node)
    graph.node.insert(
        index,
        helper.make_node(
            "Gather",
            [hidden, "logits_positions"],
            [gathered],
            name="/codehone/logits_gather",
            axis=1,
        ),
    )
    node.input[0] = gathered
    graph.input.append(
        helper.make_tensor_value_info("logits_positions", TensorProto.INT64, ["kept"])
    )
    logits_out = next(o for o in graph.output if o.name == "logits")
    logits_out.type.tensor_type.shape.dim[1].ClearField("dim_value")
    logits_out.type.tensor_type.shape.dim[1].dim_param = "kept"
    graph.node.append(
        helper.make_node(
            "ArgMax", ["logits"], ["next_tokens"], name="/codehone/argmax", axis=-1, keepdims=0
        )
    )
    graph.output.append(
        helper.make_tensor_value_info("next_tokens", TensorProto.INT64, [1, "kept"])
    )
    return model


# ---------------------------------------------------------------------------------------------
# Verification against PyTorch
# ---------------------------------------------------------------------------------------------

_VERIFY_PROMPT_IDS = [12, 40, 7, 99, 150, 3, 200, 41, 42, 43, 44, 300, 17, 12, 40, 7]
_VERIFY_STEPS = 8


def verify_against_torch(
    checkpoint: Path, model_dir: ModelDir, dtype: str, device: str = "cpu"
) -> dict[str, float]:
    """Compare the optimized model with PyTorch: prompt logits, cached steps, greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    model = AutoModelForCausalLM.from_pretrained(
        checkpoint,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=torch.float16 if dtype == "fp16" else torch.float32,
        attn_implementation="eager",
    ).to(device)
    model.eval()
    vocab = int(model.config.vocab_size)
    prompt = [t % vocab for t in _VERIFY_PROMPT_IDS]
    engine = Engine(model_dir, choose_provider("cuda" if device == "cuda" else "cpu"))
    ort_prompt, cache = engine.forward(prompt, engine.empty_cache(), all_logits=True)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        torch_prompt = out.logits[0].float().cpu().numpy()
        past = out.past_key_values
        prompt_diff = float(np.max(np.abs(ort_prompt - torch_prompt)))
        scale = max(1.0, float(np.max(np.abs(torch_prompt))))
        step_diff = 0.0
        reference = [int(np.argmax(torch_prompt[-1]))]
        for _ in range(_VERIFY_STEPS - 1):
            ort_step, cache = engine.forward([reference[-1]], cache)
            out = model(
                input_ids=torch.tensor([[reference[-1]]], device=device),
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            torch_step = out.logits[0, -1].float().cpu().numpy()
            step_diff = max(step_diff, float(np.max(np.abs(ort_step - torch_step))))
            scale = max(scale, float(np.max(np.abs(torch_step))))
            reference.append(int(np.argmax(torch_step)))
    greedy = engine.generate(prompt, StopConditions(max_new_tokens=_VERIFY_STEPS)).token_ids
    agree = sum(a == b for a, b in zip(greedy, reference, strict=False))
    worst = max(prompt_diff, step_diff)
    tolerance = TOLERANCE[dtype]
    if worst > tolerance * scale:
        raise OptimizeError(
            f"verification failed: the optimized graph's logits differ from PyTorch by "
            f"{worst:.3g} (allowed {tolerance * scale:.3g}); prompt {prompt_diff:.3g}, "
            f"cached steps {step_diff:.3g}"
        )
    if dtype == "fp32" and greedy != reference:
        raise OptimizeError(
            f"verification failed: greedy tokens differ from PyTorch ({agree}/{len(reference)})"
        )
    return {
        "max_abs_diff_prompt": prompt_diff,
        "max_abs_diff_steps": step_diff,
        "logit_scale": scale,
        "tolerance_relative": tolerance,
        "greedy_agreement": agree / len(reference),
    }


def verify_against_model(
    reference: ModelDir, model_dir: ModelDir, dtype: str, device: str = "cpu"
) -> dict[str, float]:
    """Compare the optimized model with the model directory it was made from (when there is
    no checkpoint): prompt logits, cached steps and greedy tokens, through the engine."""
    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    provider = choose_provider("cuda" if device == "cuda" else "cpu")
    ref_engine = Engine(reference, provider)
    new_engine = Engine(model_dir, provider)
    vocab = reference.manifest.vocab_size
    prompt = [t % vocab for t in _VERIFY_PROMPT_IDS]
    ref_logits, ref_cache = ref_engine.forward(prompt, ref_engine.empty_cache(), all_logits=True)
    new_logits, new_cache = new_engine.forward(prompt, new_engine.empty_cache(), all_logits=True)
    prompt_diff = float(np.max(np.abs(ref_logits - new_logits)))
    scale = max(1.0, float(np.max(np.abs(ref_logits))))
    step_diff = 0.0
    next_id = int(np.argmax(ref_logits[-1]))
    for _ in range(_VERIFY_STEPS - 1):
        ref_step, ref_cache = ref_engine.forward([next_id], ref_cache)
        new_step, new_cache = new_engine.forward([next_id], new_cache)
        step_diff = max(step_diff, float(np.max(np.abs(ref_step - new_step))))
        scale = max(scale, float(np.max(np.abs(ref_step))))
        next_id = int(np.argmax(ref_step))
    stop = StopConditions(max_new_tokens=_VERIFY_STEPS)
    reference_ids = ref_engine.generate(prompt, stop).token_ids
    greedy = new_engine.generate(prompt, stop).token_ids
    agree = sum(a == b for a, b in zip(greedy, reference_ids, strict=False))
    worst = max(prompt_diff, step_diff)
    tolerance = TOLERANCE[dtype]
    if worst > tolerance * scale or (dtype == "fp32" and greedy != reference_ids):
        raise OptimizeError(
            f"verification failed: the optimized graph differs from {reference.root.name}: "
            f"logits by {worst:.3g} (allowed {tolerance * scale:.3g}), greedy tokens "
            f"{agree}/{len(reference_ids)} equal"
        )
    return {
        "max_abs_diff_prompt": prompt_diff,
        "max_abs_diff_steps": step_diff,
        "logit_scale": scale,
        "tolerance_relative": tolerance,
        "greedy_agreement": agree / max(1, len(reference_ids)),
    }


# ---------------------------------------------------------------------------------------------
# Model-directory steps
# ---------------------------------------------------------------------------------------------


def _checkpoint_of(model_dir: ModelDir, checkpoint: Path | None) -> Path | None:
    if checkpoint is not None:
        if not any(Path(checkpoint).glob("*.safetensors")):
            raise OptimizeError(f"{checkpoint}: no .safetensors weights")
        return Path(checkpoint)
    base = Path(model_dir.manifest.provenance.base_checkpoint)
    if base.is_dir() and any(base.glob("*.safetensors")):
        return base
    return None


def _hf_config(model_dir: ModelDir, checkpoint: Path | None) -> Any:
    from transformers import AutoConfig

    for where in (checkpoint, model_dir.root):
        if where is not None and (Path(where) / "config.json").is_file():
            return AutoConfig.from_pretrained(where, trust_remote_code=False)
    raise OptimizeError(f"{model_dir.root}: no config.json beside the model or its checkpoint")


def _copy_side_files(src: Path, dst: Path, skip: set[str]) -> None:
    for item in src.iterdir():
        if item.is_file() and item.name not in skip and not item.name.startswith("model.onnx"):
            shutil.copy2(item, dst / item.name)


def _stage(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise OptimizeError(
            f"{out_dir}: not empty and not a model directory; refusing to overwrite"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))


def _publish(staging: Path, out_dir: Path) -> ModelDir:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return load_model_dir(out_dir)


def fuse(
    src_dir: Path,
    out_dir: Path,
    *,
    dtype: str = "fp32",
    checkpoint: Path | None = None,
    verify: bool = True,
    device: str = "cpu",
) -> ModelDir:
    """Write ``out_dir``: the model of ``src_dir`` as codehone's fused graph, verified."""
    if dtype not in TOLERANCE:
        raise OptimizeError(f"unknown dtype {dtype!r}; use fp32 or fp16")
    source = load_model_dir(src_dir)
    checkpoint = _checkpoint_of(source, checkpoint)
    cfg = fused_config(_hf_config(source, checkpoint))
    if checkpoint is not None:
        tensors = load_checkpoint_weights(checkpoint)
    elif cfg.family == "gpt2" and not source.manifest.kv.shared_buffer:
        tensors = load_onnx_weights(source.model_path)  # gpt2 exports keep PyTorch's names
    else:
        raise OptimizeError(
            f"{source.root}: the fused {cfg.family} graph is built from the Hugging Face "
            "checkpoint; pass --checkpoint DIR"
        )
    cfg = replace(cfg, context_length=source.manifest.context_length)
    staging = _stage(out_dir)
    try:
        log.info("building the fused %s graph (%s)", cfg.family, dtype)
        _save_onnx(build_fused_graph(cfg, tensors, dtype), staging)
        del tensors
        _copy_side_files(source.root, staging, {MANIFEST_NAME})
        manifest = _fused_manifest(source.manifest, cfg, dtype, [f"fused-{dtype}"])
        write_manifest(staging, manifest)
        if verify:
            staged = load_model_dir(staging)
            if checkpoint is not None:
                verification = verify_against_torch(checkpoint, staged, dtype, device)
                against = "PyTorch"
            else:  # the exported graph was itself verified against PyTorch
                verification = verify_against_model(source, staged, dtype, device)
                against = "the exported graph"
            provenance = replace(manifest.provenance, verification=verification)
            write_manifest(staging, replace(manifest, provenance=provenance))
            log.info(
                "verified against %s: max logit difference %.3g (prompt), %.3g (steps)",
                against,
                verification["max_abs_diff_prompt"],
                verification["max_abs_diff_steps"],
            )
        return _publish(staging, Path(out_dir))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def last_logits(src_dir: Path, out_dir: Path) -> ModelDir:
    """Write ``out_dir``: the exported graph of ``src_dir`` with last-position logits and
    arg-max inside (for the families the fused graph does not cover)."""
    import onnx

    source = load_model_dir(src_dir)
    if source.manifest.io.logits_positions:
        raise OptimizeError(f"{source.root}: the graph already computes selected logits only")
    staging = _stage(out_dir)
    try:
        model = add_last_logits(onnx.load(str(source.model_path), load_external_data=True))
        _save_onnx(model, staging)
        _copy_side_files(source.root, staging, {MANIFEST_NAME})
        manifest = source.manifest
        io = replace(manifest.io, logits_positions="logits_positions", next_tokens="next_tokens")
        provenance = replace(
            manifest.provenance, optimizations=[*manifest.provenance.optimizations, "last-logits"]
        )
        write_manifest(
            staging, replace(manifest, io=io, provenance=provenance, model_file=_ONNX_FILE)
        )
        return _publish(staging, Path(out_dir))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def quantize(
    src_dir: Path,
    out_dir: Path,
    *,
    bits: int = 4,
    block_size: int = 32,
    accuracy_level: int = 4,
) -> ModelDir:
    """Write ``out_dir``: ``src_dir`` with its MatMul weights quantized to ``bits`` (4 or 8),
    per block of ``block_size`` input rows, as ``MatMulNBits`` (CPU serving).

    ``accuracy_level`` 4 lets the CPU kernel quantize activations to int8 on the fly (fastest);
    1 keeps float32 activations."""
    import onnx

    if bits not in (4, 8):
        raise OptimizeError(f"bits must be 4 or 8, not {bits}")
    source = load_model_dir(src_dir)
    if source.manifest.kv.dtype != "float32":
        raise OptimizeError("weight-only quantization is for float32 (CPU) models")
    staging = _stage(out_dir)
    try:
        quantized = onnx.load(str(source.model_path), load_external_data=True)
        count = quantize_matmuls(quantized, bits, block_size, accuracy_level)
        if count == 0:
            raise OptimizeError("no MatMul weight could be quantized")
        log.info("quantized %d MatMul weights to int%d (block %d)", count, bits, block_size)
        _save_onnx(quantized, staging)
        _copy_side_files(source.root, staging, {MANIFEST_NAME})
        manifest = source.manifest
        provenance = replace(
            manifest.provenance,
            optimizations=[*manifest.provenance.optimizations, f"int{bits}-block{block_size}"],
        )
        write_manifest(staging, replace(manifest, provenance=provenance, model_file=_ONNX_FILE))
        return _publish(staging, Path(out_dir))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def quantize_matmuls(model: Any, bits: int, block_size: int, accuracy_level: int) -> int:
    """Replace every MatMul (and plain Gemm) of the main graph whose weight is a 2-D float32
    initializer with a symmetric block-quantized ``MatMulNBits`` (ONNX Runtime's own packing kernels); return how
    many were replaced."""
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
                domain=_MS_DOMAIN,
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
    if not any(o.domain == _MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return sum(n.op_type == "MatMulNBits" for n in nodes)


# ---------------------------------------------------------------------------------------------
# Measuring a quantized model against its original (CPU)
# ---------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    name: str
    size_mb: float
    ms_per_token: float
    prefill_ms: float
    loss: float  # mean next-token cross-entropy (nats) on the evaluation windows
    greedy_agreement: float  # fraction of greedy tokens equal to the reference model's
    top1_agreement: float  # teacher-forced: fraction of positions with the same arg-max


def _model_size_mb(model_dir: ModelDir) -> float:
    return sum(p.stat().st_size for p in model_dir.root.glob("model.onnx*")) / 1e6


def evaluation_windows(
    model_dir: ModelDir, files: Sequence[Path], count: int, length: int
) -> list[list[int]]:
    """Token windows of held-out text, tokenized with the model's own tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir.tokenizer_path))
    windows: list[list[int]] = []
    for path in files:
        try:
            ids = tokenizer.encode(path.read_text(encoding="utf-8")).ids
        except (OSError, UnicodeDecodeError):
            continue
        for start in range(0, len(ids) - length, length):
            windows.append(ids[start : start + length])
            if len(windows) >= count:
                return windows
    return windows


def measure(
    model_dirs: Sequence[Path],
    files: Sequence[Path],
    *,
    windows: int = 16,
    window_length: int = 128,
    new_tokens: int = 32,
    threads: int | None = None,
) -> list[Measurement]:
    """Speed and quality of each model on the CPU; the first one is the reference."""
    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    provider = choose_provider("cpu")
    loaded = [load_model_dir(d) for d in model_dirs]
    length = min(window_length, loaded[0].manifest.context_length - new_tokens - 1)
    evals = evaluation_windows(loaded[0], files, windows, length)
    if not evals:
        raise OptimizeError("no evaluation text long enough")
    results: list[Measurement] = []
    reference_greedy: list[list[int]] = []
    reference_top1: list[np.ndarray] = []
    for index, model_dir in enumerate(loaded):
        engine = Engine(model_dir, provider, threads=threads)
        losses: list[float] = []
        top1: list[np.ndarray] = []
        for ids in evals:
            logits, _ = engine.forward(ids, engine.empty_cache(), all_logits=True)
            shifted = logits[:-1] - logits[:-1].max(axis=-1, keepdims=True)
            logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            losses.append(float(-logprobs[np.arange(len(ids) - 1), ids[1:]].mean()))
            top1.append(np.argmax(logits, axis=-1))
        greedy: list[list[int]] = []
        per_token: list[float] = []
        prefill: list[float] = []
        for ids in evals:
            engine.reset_prefix_cache()
            result = engine.generate(ids, StopConditions(max_new_tokens=new_tokens))
            greedy.append(result.token_ids)
            per_token.append(result.ms_per_token)
            prefill.append(result.prefill_ms)
        if index == 0:
            reference_greedy, reference_top1 = greedy, top1
        same = sum(
            sum(a == b for a, b in zip(g, r, strict=False))
            for g, r in zip(greedy, reference_greedy, strict=True)
        )
        total = sum(len(r) for r in reference_greedy) or 1
        top1_same = sum(int((a == b).sum()) for a, b in zip(top1, reference_top1, strict=True))
        top1_total = sum(len(r) for r in reference_top1)
        results.append(
            Measurement(
                name=model_dir.root.name,
                size_mb=_model_size_mb(model_dir),
                ms_per_token=float(np.median(per_token)),
                prefill_ms=float(np.median(prefill)),
                loss=float(np.mean(losses)),
                greedy_agreement=same / total,
                top1_agreement=top1_same / top1_total,
            )
        )
    return results


def format_measurements(results: Sequence[Measurement]) -> str:
    base = results[0]
    lines = [
        f"{'model':<28} {'MB':>7} {'ms/token':>9} {'x':>5} {'prefill ms':>10} "
        f"{'loss':>7} {'dloss':>7} {'greedy=':>8} {'top1=':>7}"
    ]
    for r in results:
        lines.append(
            f"{r.name:<28} {r.size_mb:>7.1f} {r.ms_per_token:>9.3f} "
            f"{base.ms_per_token / r.ms_per_token:>5.2f} {r.prefill_ms:>10.2f} {r.loss:>7.4f} "
            f"{r.loss - base.loss:>+7.4f} {r.greedy_agreement:>8.1%} {r.top1_agreement:>7.1%}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _default_eval_files() -> list[Path]:
    """Held-out text for ``measure``: this Python's standard library, in a fixed order."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("[n-z]*.py"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codehone_training.export.optimize",
        description="Optimize an exported codehone model directory.",
    )
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser(
        "fuse", help="rebuild as the fused GroupQueryAttention graph (gpt2/llama/qwen2)"
    )
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--checkpoint", help="Hugging Face checkpoint (default: the manifest's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="for verification")
    p.add_argument("--no-verify", action="store_true")
    p = sub.add_parser("last-logits", help="rewrite an exported graph: last logits + arg-max")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p = sub.add_parser("quantize", help="weight-only int4/int8 MatMulNBits (CPU)")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--bits", type=int, choices=[4, 8], default=4)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--accuracy-level", type=int, choices=[0, 1, 2, 3, 4], default=4)
    p = sub.add_parser(
        "measure", help="CPU speed and quality of models; the first is the reference"
    )
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--window-length", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    p.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started = time.monotonic()
    try:
        if args.step == "fuse":
            result = fuse(
                Path(args.model_dir),
                Path(args.out),
                dtype=args.dtype,
                checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                verify=not args.no_verify,
                device=args.device,
            )
        elif args.step == "last-logits":
            result = last_logits(Path(args.model_dir), Path(args.out))
        elif args.step == "quantize":
            result = quantize(
                Path(args.model_dir),
                Path(args.out),
                bits=args.bits,
                block_size=args.block_size,
                accuracy_level=args.accuracy_level,
            )
        else:
            results = measure(
                [Path(d) for d in args.model_dirs],
                _default_eval_files(),
                windows=args.windows,
                window_length=args.window_length,
                new_tokens=args.new_tokens,
                threads=args.threads,
            )
            print(format_measurements(results))
            if args.json:
                Path(args.json).write_text(
                    json.dumps([r.__dict__ for r in results], indent=2) + "\n", encoding="utf-8"
                )
            return 0
    except CodehoneError as exc:
        print(f"codehone: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {result.root} ({', '.join(result.manifest.provenance.optimizations)}) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
