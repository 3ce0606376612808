"""Random-weight checkpoints of each supported family, with a tokenizer trained on local files.

Tests build tiny ones in seconds (nothing can be downloaded here); the engine benchmark builds
real-sized shapes (GPT-2 124M, Qwen2.5-Coder-0.5B) the same way, since speed does not depend on
the weights' values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from codehone_training.data.tokenizer_train import train_bpe_tokenizer


@dataclass(frozen=True)
class Shape:
    family: str  # gpt2 | llama | qwen2 | gpt_bigcode | codegen
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_size: int
    context_length: int


TINY = {
    "gpt2": Shape("gpt2", 2, 64, 4, 4, 256, 512, 256),
    "llama": Shape("llama", 2, 64, 4, 2, 128, 512, 256),
    "qwen2": Shape("qwen2", 2, 64, 4, 2, 128, 512, 256),
    "gpt_bigcode": Shape("gpt_bigcode", 2, 64, 4, 1, 256, 512, 256),
    "codegen": Shape("codegen", 2, 64, 4, 4, 256, 512, 256),
}
GPT2_124M = Shape("gpt2", 12, 768, 12, 12, 3072, 50257, 2048)
QWEN25_CODER_05B = Shape("qwen2", 24, 896, 14, 2, 4864, 151936, 4096)


def build_config(shape: Shape, eos_id: int, bos_id: int) -> object:
    from transformers import (
        CodeGenConfig,
        GPT2Config,
        GPTBigCodeConfig,
        LlamaConfig,
        Qwen2Config,
    )

    common = {"vocab_size": shape.vocab_size, "eos_token_id": eos_id, "bos_token_id": bos_id}
    if shape.family == "gpt2":
        return GPT2Config(
            n_layer=shape.layers,
            n_embd=shape.hidden,
            n_head=shape.heads,
            n_inner=shape.intermediate,
            n_positions=shape.context_length,
            **common,
        )
    if shape.family == "gpt_bigcode":
        return GPTBigCodeConfig(
            n_layer=shape.layers,
            n_embd=shape.hidden,
            n_head=shape.heads,
            n_inner=shape.intermediate,
            n_positions=shape.context_length,
            multi_query=shape.kv_heads == 1,
            **common,
        )
    if shape.family == "codegen":
        return CodeGenConfig(
            n_layer=shape.layers,
            n_embd=shape.hidden,
            n_head=shape.heads,
            n_inner=shape.intermediate,
            n_positions=shape.context_length,
            n_ctx=shape.context_length,
            rotary_dim=shape.hidden // shape.heads // 2,
            **common,
        )
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[shape.family]
    return config_class(
        num_hidden_layers=shape.layers,
        hidden_size=shape.hidden,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.context_length,
        tie_word_embeddings=shape.family == "qwen2",
        **common,
    )


def build_random_checkpoint(
    shape: Shape, out_dir: Path, tokenizer_texts: Iterable[str], seed: int = 0
) -> Path:
    """Save a random-weight checkpoint (safetensors) with a freshly trained tokenizer.

    The tokenizer's vocabulary is trained to at most ``shape.vocab_size``; the model keeps the
    shape's full vocabulary so benchmark shapes are exact.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    train_bpe_tokenizer(tokenizer_texts, min(shape.vocab_size, 4096), out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    torch.manual_seed(seed)
    config = build_config(shape, tokenizer.eos_token_id, tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    # Random init gives near-uniform logits; sharper ones make greedy decoding less tie-prone.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(4.0 if shape.hidden <= 128 else 1.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    model.generation_config.save_pretrained(out_dir)
    return out_dir
