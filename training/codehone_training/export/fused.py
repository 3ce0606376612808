"""A model as codehone's fused decode graph sees it: its shape, read from its Hugging Face
config (refusing what the graph does not do), its weights, and the manifest of the graph built
from them. The graph itself is ``export.fused_graph``; ``export.optimize.fuse`` puts the two
together into a verified model directory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.errors import ExportError
from codehone.core.model_dir import GraphIO, KVLayout, Manifest

FUSED_FAMILIES = ("gpt2", "llama", "qwen2")
MS_DOMAIN = "com.microsoft"
ONNX_FILE = "model.onnx"


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


def fused_manifest(manifest: Manifest, cfg: FusedConfig, dtype: str) -> Manifest:
    """The manifest of the fused graph built from the model ``manifest`` describes."""
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
        optimizations=[*manifest.provenance.optimizations, f"fused-{dtype}"],
    )
    return replace(manifest, kv=kv, io=io, provenance=provenance, model_file=ONNX_FILE)


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
