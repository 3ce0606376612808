"""codehone's fused decode graph: a model rebuilt from its weights as a few fused ONNX Runtime
kernels per layer, for the families that matter (gpt2, llama, qwen2).

Why: optimum's export is a faithful trace of the PyTorch model, and that is what makes it slow
to decode. Every step re-allocates the whole KV cache (past in, a new present out), hundreds of
small shape ops run between the matrix multiplications (some on the CPU, with copies to and
from the GPU), attention is a dozen separate kernels, the fp16 export keeps float32 KV and
logits with casts inside, and the logits of every position leave the graph although decoding
reads one row. The fused graph has instead:

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

Reads top to bottom: the graph builder, the blocks every family shares, then each family's
own (embeddings, QKV projection, attention output, MLP, norms) and ``build_fused_graph``,
which strings them together. The model's shape and weights come from ``export.fused``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from codehone_training.export.fused import MS_DOMAIN, FusedConfig, OptimizeError

_OPSET = 17


# ---------------------------------------------------------------------------------------------
# The graph builder and the weights it takes
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

    def linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
        """x @ weight (+ bias); ``weight`` is already [in, out]."""
        (y,) = self.node("MatMul", [x, self.weight(f"{name}.weight", weight)])
        if bias is not None:
            (y,) = self.node("Add", [y, self.weight(f"{name}.bias", bias)])
        return y


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
# The blocks
# ---------------------------------------------------------------------------------------------


def _rotary_caches(cfg: FusedConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of position x frequency, [context, head_size / 2] (HF's default RoPE)."""
    inv_freq = 1.0 / (
        cfg.rope_theta ** (np.arange(0, cfg.head_size, 2, dtype=np.int64) / cfg.head_size)
    )
    angles = np.outer(np.arange(cfg.context_length, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


class _Blocks:
    """What every family's graph shares: the fused residual + norm, attention over the shared
    KV buffer and the head. A family adds its embeddings, QKV projection, attention output, MLP
    and ``skip_norm`` (Norm(residual + x + bias) and that sum, the new residual stream)."""

    def __init__(self, g: _Graph, cfg: FusedConfig, w: _Weights) -> None:
        self.g, self.cfg, self.w = g, cfg, w
        self.gqa_attrs: dict[str, Any] = {
            "domain": MS_DOMAIN,
            "num_heads": cfg.heads,
            "kv_num_heads": cfg.kv_heads,
            "scale": 1.0 / math.sqrt(cfg.head_size),
        }
        self.rotary_inputs: list[str] = []

    def fused_norm(self, op: str, inputs: list[str]) -> tuple[str, str]:
        """``op`` (a Skip*Normalization) on ``inputs`` (trailing empty ones dropped): the
        normalized output and the sum it normalized (the new residual stream)."""
        while inputs and not inputs[-1]:
            inputs.pop()
        out, _, _, total = self.g.node(op, inputs, 4, domain=MS_DOMAIN, epsilon=self.cfg.eps)
        return out, total

    def attention(self, i: int, qkv: str) -> str:
        """GroupQueryAttention of layer ``i`` over its shared KV buffer."""
        attn, _, _ = self.g.node(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                "seqlens_k",
                "total_sequence_length",
                *self.rotary_inputs,
            ],
            [f"/layers.{i}/attn", f"present.{i}.key", f"present.{i}.value"],
            **self.gqa_attrs,
        )
        return attn

    def head(self, x: str, weight: np.ndarray, dtype: str) -> None:
        """Only the positions asked for reach the vocabulary projection; arg-max in the graph."""
        from onnx import TensorProto

        g = self.g
        (kept,) = g.node("Gather", [x, "logits_positions"], axis=1)
        (logits,) = g.node("MatMul", [kept, g.weight("lm_head.weight", weight.T)])
        if dtype == "fp16":
            g.node("Cast", [logits], ["logits"], to=TensorProto.FLOAT)
        else:
            g.node("Identity", [logits], ["logits"])
        g.node("ArgMax", ["logits"], ["next_tokens"], axis=-1, keepdims=0)


class _Gpt2Blocks(_Blocks):
    """GPT-2: learned positions, LayerNorm, Conv1D weights ([in, out]), a biased MLP."""

    def skip_norm(self, x: str, residual: str, gamma: str, beta: str, bias: str) -> tuple[str, str]:
        return self.fused_norm("SkipLayerNormalization", [x, residual, gamma, beta, bias])

    def embeddings(self) -> tuple[str, str]:
        """Token + position embeddings (the residual stream), and the first norm of it."""
        g, w = self.g, self.w
        (tok,) = g.node("Gather", [g.weight("wte.weight", w.get("wte.weight")), "input_ids"])
        (pos,) = g.node("Gather", [g.weight("wpe.weight", w.get("wpe.weight")), "position_ids"])
        (residual,) = g.node("Add", [tok, pos])
        ln_w, ln_b = w.get("h.0.ln_1.weight"), w.get("h.0.ln_1.bias")
        (x,) = g.node(
            "LayerNormalization",
            [residual, g.weight("h.0.ln_1.weight", ln_w), g.weight("h.0.ln_1.bias", ln_b)],
            axis=-1,
            epsilon=self.cfg.eps,
        )
        return x, residual

    def qkv(self, i: int, x: str) -> str:
        p = f"h.{i}."
        w = self.w
        return self.g.linear(
            x, p + "qkv", w.get(p + "attn.c_attn.weight"), w.get(p + "attn.c_attn.bias")
        )

    def attention_output(self, i: int, attn: str, residual: str) -> tuple[str, str]:
        g, w, p = self.g, self.w, f"h.{i}."
        (o,) = g.node("MatMul", [attn, g.weight(p + "o.weight", w.get(p + "attn.c_proj.weight"))])
        return self.skip_norm(
            o,
            residual,
            g.weight(p + "ln_2.weight", w.get(p + "ln_2.weight")),
            g.weight(p + "ln_2.bias", w.get(p + "ln_2.bias")),
            g.weight(p + "o.bias", w.get(p + "attn.c_proj.bias")),
        )

    def mlp(self, i: int, x: str, residual: str) -> tuple[str, str]:
        """The MLP, then the next norm (the next layer's first, or the final one)."""
        g, w, p = self.g, self.w, f"h.{i}."
        (h,) = g.node("MatMul", [x, g.weight(p + "fc.weight", w.get(p + "mlp.c_fc.weight"))])
        fc_bias = g.weight(p + "fc.bias", w.get(p + "mlp.c_fc.bias"))
        if self.cfg.activation == "gelu_tanh":
            (h,) = g.node("FastGelu", [h, fc_bias], domain=MS_DOMAIN)
        elif self.cfg.activation == "gelu":
            (h,) = g.node("BiasGelu", [h, fc_bias], domain=MS_DOMAIN)
        else:
            (h,) = g.node("Add", [h, fc_bias])
            (h,) = g.node("Relu", [h])
        (down,) = g.node("MatMul", [h, g.weight(p + "proj.weight", w.get(p + "mlp.c_proj.weight"))])
        down_bias = g.weight(p + "proj.bias", w.get(p + "mlp.c_proj.bias"))
        norm = f"h.{i + 1}.ln_1" if i + 1 < self.cfg.layers else "ln_f"
        gamma = g.weight(norm + ".weight", w.get(norm + ".weight"))
        beta = g.weight(norm + ".bias", w.get(norm + ".bias"))
        return self.skip_norm(down, residual, gamma, beta, down_bias)

    def head_weight(self) -> np.ndarray:
        return self.w.get("wte.weight")


class _LlamaBlocks(_Blocks):
    """llama / qwen2: rotary positions (inside GroupQueryAttention), RMSNorm, SiLU-gated MLP,
    weights stored [out, in]."""

    def __init__(self, g: _Graph, cfg: FusedConfig, w: _Weights) -> None:
        super().__init__(g, cfg, w)
        cos, sin = _rotary_caches(cfg)
        self.rotary_inputs = [g.weight("cos_cache", cos), g.weight("sin_cache", sin)]
        self.gqa_attrs.update(do_rotary=1, rotary_interleaved=0)

    def skip_norm(self, x: str, residual: str, gamma: str, bias: str | None) -> tuple[str, str]:
        return self.fused_norm("SkipSimplifiedLayerNormalization", [x, residual, gamma, bias or ""])

    def embeddings(self) -> tuple[str, str]:
        """Token embeddings (the residual stream), and the first norm of it."""
        g, w = self.g, self.w
        embed = g.weight("embed_tokens.weight", w.get("model.embed_tokens.weight"))
        (residual,) = g.node("Gather", [embed, "input_ids"])
        (x,) = g.node(
            "SimplifiedLayerNormalization",
            [residual, g.weight("layers.0.ln1", w.get("model.layers.0.input_layernorm.weight"))],
            axis=-1,
            epsilon=self.cfg.eps,
            stash_type=1,
        )
        return x, residual

    def qkv(self, i: int, x: str) -> str:
        """One packed QKV projection."""
        p, w = f"model.layers.{i}.self_attn.", self.w
        weight = np.concatenate([w.get(p + f"{n}_proj.weight").T for n in ("q", "k", "v")], axis=1)
        bias = None
        if self.cfg.qkv_bias:
            bias = np.concatenate([w.get(p + f"{n}_proj.bias") for n in ("q", "k", "v")])
        return self.g.linear(x, f"layers.{i}.qkv", weight, bias)

    def attention_output(self, i: int, attn: str, residual: str) -> tuple[str, str]:
        g, w, p = self.g, self.w, f"model.layers.{i}."
        o_bias = w.get(p + "self_attn.o_proj.bias") if self.cfg.o_bias else None
        (o,) = g.node(
            "MatMul",
            [attn, g.weight(f"layers.{i}.o.weight", w.get(p + "self_attn.o_proj.weight").T)],
        )
        return self.skip_norm(
            o,
            residual,
            g.weight(f"layers.{i}.ln2", w.get(p + "post_attention_layernorm.weight")),
            g.weight(f"layers.{i}.o.bias", o_bias) if o_bias is not None else None,
        )

    def mlp(self, i: int, x: str, residual: str) -> tuple[str, str]:
        """The gated MLP, then the next norm (the next layer's first, or the final one)."""
        g, w, p = self.g, self.w, f"model.layers.{i}."

        def bias(name: str) -> np.ndarray | None:
            return w.get(p + f"mlp.{name}.bias") if self.cfg.mlp_bias else None

        gate = g.linear(
            x, f"layers.{i}.gate", w.get(p + "mlp.gate_proj.weight").T, bias("gate_proj")
        )
        up = g.linear(x, f"layers.{i}.up", w.get(p + "mlp.up_proj.weight").T, bias("up_proj"))
        (sig,) = g.node("Sigmoid", [gate])
        (silu,) = g.node("Mul", [gate, sig])
        (h,) = g.node("Mul", [silu, up])
        (down,) = g.node(
            "MatMul", [h, g.weight(f"layers.{i}.down", w.get(p + "mlp.down_proj.weight").T)]
        )
        down_bias = bias("down_proj")
        if i + 1 < self.cfg.layers:
            gamma = g.weight(
                f"layers.{i + 1}.ln1", w.get(f"model.layers.{i + 1}.input_layernorm.weight")
            )
        else:
            gamma = g.weight("norm.weight", w.get("model.norm.weight"))
        return self.skip_norm(
            down,
            residual,
            gamma,
            g.weight(f"layers.{i}.down.bias", down_bias) if down_bias is not None else None,
        )

    def head_weight(self) -> np.ndarray:
        if self.cfg.tied or not self.w.has("lm_head.weight"):
            return self.w.get("model.embed_tokens.weight")
        return self.w.get("lm_head.weight")


def _graph_io(cfg: FusedConfig, elem: int) -> tuple[list[Any], list[Any]]:
    """The graph's inputs and outputs (see ``build_fused_graph``)."""
    from onnx import TensorProto, helper

    kv_dims = [1, cfg.kv_heads, "max_sequence_length", cfg.head_size]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])]
    if cfg.family == "gpt2":
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
    return inputs, outputs


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

    g = _Graph(np.float16 if dtype == "fp16" else np.float32)
    inputs, outputs = _graph_io(cfg, TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT)
    blocks: _Gpt2Blocks | _LlamaBlocks
    if cfg.family == "gpt2":
        blocks = _Gpt2Blocks(g, cfg, _Weights(tensors, ("transformer.", "")))
    else:
        blocks = _LlamaBlocks(g, cfg, _Weights(tensors, ("",)))
    x, residual = blocks.embeddings()
    for i in range(cfg.layers):
        attn = blocks.attention(i, blocks.qkv(i, x))
        x, residual = blocks.attention_output(i, attn, residual)
        x, residual = blocks.mlp(i, x, residual)
    blocks.head(x, blocks.head_weight(), dtype)

    graph = helper.make_graph(g.nodes, "codehone-fused", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="codehone.optimize",
    )
    model.ir_version = 8
    return model
