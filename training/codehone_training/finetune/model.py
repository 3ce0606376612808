"""What trains: the whole model (``full``), only its top transformer blocks and final norm
(``freeze``), or LoRA adapters on every linear layer (``lora``, peft)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from codehone.core.errors import TrainingError
from codehone_training.base_model import check_safetensors_only
from codehone_training.finetune.config import METHODS, FinetuneConfig

if TYPE_CHECKING:
    import torch


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of transformer blocks (gpt2, codegen, gpt_bigcode, llama, qwen2)."""
    import torch

    config = model.config  # type: ignore[attr-defined]
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise TrainingError(f"cannot find the {n_layers} transformer blocks of this model")


def final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    for path in ("transformer.ln_f", "model.norm"):
        module: Any = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if module is not None:
            return module
    return None


def freeze_all_but_top(model: torch.nn.Module, trainable_layers: int) -> None:
    blocks = transformer_blocks(model)
    if not 1 <= trainable_layers <= len(blocks):
        raise TrainingError(
            f"--trainable-layers must be between 1 and {len(blocks)} (the model's layers)"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable = [*blocks[len(blocks) - trainable_layers :]]
    norm = final_norm(model)
    if norm is not None:
        trainable.append(norm)
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(True)


def add_lora(model: torch.nn.Module, config: FinetuneConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def load_trainable_model(checkpoint: Path, config: FinetuneConfig) -> torch.nn.Module:
    """The base checkpoint in float32 with what ``config.method`` trains made trainable."""
    import torch
    from transformers import AutoModelForCausalLM

    check_safetensors_only(checkpoint, TrainingError)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=torch.float32,  # master weights; autocast does bf16/fp16 on CUDA
    )
    if config.method == "freeze":
        freeze_all_but_top(model, config.trainable_layers)
    elif config.method == "lora":
        model = add_lora(model, config)
    elif config.method != "full":
        raise TrainingError(f"unknown method {config.method!r}; use one of {', '.join(METHODS)}")
    if config.gradient_checkpointing:
        model.config.use_cache = False
    return model


def checkpoint_parameters(checkpoint: Path) -> int:
    """How many parameters the checkpoint's safetensors files hold (their headers only)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as weights:
            for name in weights.keys():
                count = 1
                for size in weights.get_slice(name).get_shape():
                    count *= int(size)
                total += count
    return total


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
