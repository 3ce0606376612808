"""A Hugging Face llama checkpoint written as a GGUF file here, the way llama.cpp's converter
writes it (the ``gguf`` package's writer, llama.cpp's tensor names, its q/k row order), for the
tests of GGUF import and of the benchmark's llama.cpp contender (nothing can be downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (its converter's `permute`); transformers undoes it."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_llama_gguf(checkpoint: Path, out: Path, architecture: str = "llama") -> Path:
    """Write the Hugging Face llama ``checkpoint`` as an F32 GGUF the way llama.cpp does."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((checkpoint / "config.json").read_text())
    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text())
    tensors = load_file(checkpoint / "model.safetensors")
    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    for added in tokenizer["added_tokens"]:
        vocab[added["content"]] = added["id"]
    size = config["vocab_size"]
    tokens = [f"<unused{i}>" for i in range(size)]
    for token, index in vocab.items():
        tokens[index] = token
    special = {a["id"] for a in tokenizer["added_tokens"]}
    types = [
        gguf.TokenType.CONTROL
        if i in special
        else gguf.TokenType.UNUSED
        if t.startswith("<unused")
        else gguf.TokenType.NORMAL
        for i, t in enumerate(tokens)
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

    writer = gguf.GGUFWriter(out, architecture)
    writer.add_name("tiny-llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_vocab_size(size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(False)
    writer.add_file_type(0)  # all F32 (llama.cpp's LLAMA_FTYPE_ALL_F32)
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    writer.add_tensor("token_embd.weight", tensors["model.embed_tokens.weight"])
    for layer in range(config["num_hidden_layers"]):
        for hf, short in names.items():
            weights = tensors[f"model.layers.{layer}.{hf}.weight"]
            if short == "attn_q":
                weights = _permute(weights, heads)
            elif short == "attn_k":
                weights = _permute(weights, kv_heads)
            writer.add_tensor(f"blk.{layer}.{short}.weight", weights)
    writer.add_tensor("output_norm.weight", tensors["model.norm.weight"])
    if "lm_head.weight" in tensors:
        writer.add_tensor("output.weight", tensors["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
