"""How many steps a run takes: from the epochs, capped by ``max_steps`` and by the wall-clock
budget, which a few probe steps measure; and the precision it runs in."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from codehone.core.errors import TrainingError
from codehone_training.data.packing import PackedRows
from codehone_training.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    import torch

# The wall-clock budget is planned from probe steps: the first few run slow (thread pools,
# allocator), so they are not timed; the median of the rest is.
PROBE_WARMUP_STEPS = 3
PROBE_TIMED_STEPS = 5


# Of the memory there is (RAM on the CPU, the GPU's own on CUDA), what one micro-batch's
# activations may take: the rest is the model, its optimizer state and everyone else.
ACTIVATION_SHARE = 0.3


def activation_bytes_per_token(config: FinetuneConfig, model_config: Any) -> int:
    """An upper estimate of the float32 activations one token keeps for the backward pass:
    the logits three times over (the logits, the loss's log-probabilities, their gradient)
    and, for each block the gradient flows through, its saved tensors. Measured on
    SmolLM2-135M (LoRA, 8 rows of 1,024): 14.6 GB, where this says 20 GB."""
    layers = int(getattr(model_config, "num_hidden_layers", 0) or model_config.n_layer)
    hidden = int(getattr(model_config, "hidden_size", 0) or model_config.n_embd)
    inner = int(getattr(model_config, "intermediate_size", 0) or 4 * hidden)
    vocab = int(model_config.vocab_size)
    backprop = min(config.trainable_layers, layers) if config.method == "freeze" else layers
    return 4 * (3 * vocab + backprop * (16 * hidden + 4 * inner))


def fit_batch_to_memory(
    config: FinetuneConfig, model_config: Any, seq_len: int, memory_bytes: int
) -> tuple[int, int]:
    """(rows per micro-batch, accumulation steps): the configured batch, split into
    micro-batches whose activations fit ``ACTIVATION_SHARE`` of ``memory_bytes`` (the same
    rows per optimizer step, so the same training, only in smaller pieces)."""
    per_row = activation_bytes_per_token(config, model_config) * seq_len
    batch = config.batch_size
    while batch > 1 and batch % 2 == 0 and batch * per_row > ACTIVATION_SHARE * memory_bytes:
        batch //= 2
    return batch, config.grad_accum * (config.batch_size // batch)


def device_memory_bytes() -> int:
    """The memory training runs in: the first GPU's, else the machine's RAM."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16): there, bf16 autocast
    runs a LoRA step of SmolLM2-135M (2 rows of 1,024 tokens, 2 cores) in about 5 s, where
    float32 takes 13 s (a bf16 matrix product measured 1,565 against 212 GFLOPS)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    except RuntimeError:
        return False


def precision_flags(precision: str) -> dict[str, bool]:
    """The Trainer's mixed-precision flags. ``auto``: bf16 (else fp16) on CUDA, bf16 on a CPU
    that multiplies it natively, fp32 otherwise. The master weights stay float32 either way."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {"bf16": cpu_has_bf16(), "fp16": False}
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    if precision == "fp16" and not cuda:
        raise TrainingError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def seconds_per_step(
    model: torch.nn.Module, rows: PackedRows, config: FinetuneConfig, device: torch.device
) -> tuple[float, float]:
    """Measure (seconds per optimizer step, seconds per evaluation batch) with probe steps."""
    import torch

    flags = precision_flags(config.precision)
    dtype = torch.bfloat16 if flags["bf16"] else torch.float16
    autocast = torch.autocast(device.type, dtype=dtype, enabled=flags["bf16"] or flags["fp16"])
    batch = [rows[i % len(rows)] for i in range(config.batch_size)]
    inputs = torch.stack([b["input_ids"] for b in batch]).to(device)
    labels = torch.stack([b["labels"] for b in batch]).to(device)
    model.to(device)
    model.train()
    timings = []
    for _ in range(PROBE_WARMUP_STEPS + PROBE_TIMED_STEPS):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    timed = sorted(timings[PROBE_WARMUP_STEPS:])
    # optimizer, data loading and logging cost about 15% more
    step = timed[len(timed) // 2] * config.grad_accum * 1.15
    return step, step / config.grad_accum / 3  # a forward is about a third of a step


def plan_steps(
    config: FinetuneConfig,
    train_rows: int,
    eval_rows: int,
    world_size: int,
    probe: tuple[float, float] | None,
) -> dict[str, Any]:
    per_step = config.batch_size * config.grad_accum * world_size
    steps_per_epoch = max(1, math.ceil(train_rows / per_step))
    steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    reason = f"{config.epochs:g} epochs of {steps_per_epoch} steps"
    if config.max_steps is not None and config.max_steps < steps:
        steps, reason = config.max_steps, "--max-steps"
    if config.minutes is not None and probe is not None:
        step_s, eval_batch_s = probe
        eval_s = math.ceil(eval_rows / config.batch_size) * eval_batch_s
        budget = config.minutes * 60 * 0.9 - eval_s  # the evaluation before training
        affordable = int(budget / (step_s + eval_s / max(1, config.eval_steps)))
        if affordable < steps:
            steps, reason = max(1, affordable), f"{config.minutes:g}-minute budget"
    eval_steps = max(1, min(config.eval_steps, steps))
    return {
        "max_steps": steps,
        "warmup_steps": max(1, round(steps * config.warmup_ratio)),
        "eval_steps": eval_steps,
        "steps_per_epoch": steps_per_epoch,
        "reason": reason,
        "seconds_per_step": probe[0] if probe else None,
    }
