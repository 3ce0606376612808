"""Step 4 of pretraining and what training it takes: the GPT-2 (new, or the checkpoint a run
continues), its loss (with the labels that score FIM middles only), the optimizer, the
learning-rate schedule, and where it runs (the device, CPU threads, the allocator)."""

from __future__ import annotations

import ctypes
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from codehone.core.errors import TrainingError
from codehone.core.model_dir import FimTokens
from codehone_training.data.packing import IGNORE_INDEX
from codehone_training.pretrain.config import PretrainConfig

if TYPE_CHECKING:
    import torch

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def build_model(config: PretrainConfig, vocab_size: int, eos_id: int) -> torch.nn.Module:
    """A randomly initialised GPT-2 (seeded), without dropout: the runs are far too short to
    overfit, and dropout would only slow learning."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if config.n_embd % config.n_head:
        raise TrainingError(f"n_embd {config.n_embd} is not divisible by n_head {config.n_head}")
    gpt2_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.context_length,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=config.activation,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    return GPT2LMHeadModel(gpt2_config)


def load_init_checkpoint(source: Path, vocab_size: int) -> torch.nn.Module:
    """The GPT-2 checkpoint to continue training, in float32 (safetensors only)."""
    import torch
    from transformers import GPT2LMHeadModel

    if not any(source.glob("*.safetensors")) or not (source / "config.json").is_file():
        raise TrainingError(f"{source}: not a Hugging Face checkpoint with safetensors weights")
    try:
        model = GPT2LMHeadModel.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{source}: cannot load a GPT-2 checkpoint ({exc})") from None
    if model.config.vocab_size != vocab_size:
        raise TrainingError(f"{source}: its vocabulary does not match its tokenizer")
    return model


def lm_loss(
    model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token cross-entropy of ``batch`` (labels default to the batch itself)."""
    import torch.nn.functional as F

    inputs = batch[:, :-1]
    targets = (batch if labels is None else labels)[:, 1:]
    logits = model(input_ids=inputs).logits
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def middle_only_labels(batch: torch.Tensor, fim: FimTokens, eos_id: int) -> torch.Tensor:
    """Next-token labels that score only the FIM middles (and the EOS that ends each one)."""
    import torch

    labels = torch.full_like(batch, IGNORE_INDEX)
    for row in range(batch.shape[0]):
        inside = False
        for pos in range(1, batch.shape[1]):
            token = int(batch[row, pos])
            prev = int(batch[row, pos - 1])
            if prev == fim.middle_id:
                inside = True
            elif prev in (eos_id, fim.prefix_id):
                inside = False
            if inside:
                labels[row, pos] = token
    return labels


def make_optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases and LayerNorm gains)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def lr_at(config: PretrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over the first steps, then cosine decay over the (time) progress."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def tune_glibc_malloc() -> None:
    """Let glibc keep freed memory instead of returning it to the OS at once.

    By default glibc serves every allocation over 32 MiB with a fresh ``mmap``, so the logits
    (and their gradients) cost thousands of page faults each training step: on a 2-core CPU that
    is a fifth of the step. Raising the thresholds makes those buffers reusable. The setting is
    process-wide but harmless (memory is returned to the OS later rather than never).
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc
        return


def check_device(device: str) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise TrainingError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for but torch sees no CUDA GPU")
