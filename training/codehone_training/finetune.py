"""Fine-tune a causal LM on a prepared project: ``codehone finetune``.

Reads top to bottom:

1. resolve the base model (a Hugging Face checkpoint, or a model directory that leads to one)
   and the data set; pack its train and validation splits for the base's tokenizer (cached);
2. load the model (safetensors only, no remote code) and choose what trains: everything
   (``full``), only the top N transformer blocks and the final norm (``freeze``), or LoRA
   adapters on every linear layer (``lora``, peft);
3. plan the run: steps from the epochs, capped by ``max_steps`` and by a wall-clock budget
   (measured with a few probe steps); the plan is stored so that a resumed run repeats it;
4. train with the Hugging Face ``Trainer``: bf16 (or fp16) autocast on CUDA, fp32 on the CPU,
   gradient accumulation, optional gradient checkpointing, cosine schedule with warm-up,
   validation every N steps, early stopping, the best checkpoint kept (safetensors), resume
   from the last checkpoint after an interruption, progress bars on stderr. The same code
   runs on one GPU, on the CPU, and on several GPUs under ``torchrun`` / ``accelerate
   launch`` (the Trainer sets up DDP from the environment);
5. save the best model (LoRA adapters merged into the weights) with its tokenizer, its
   configuration and a model card into ``RUN_DIR/model``, ready for ``codehone export``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codehone.core.errors import TrainingError
from codehone_training.base_model import ModelRef, resolve_model
from codehone_training.data.packing import PAD, load_packed, pack_dataset
from codehone_training.data.project import load_dataset

if TYPE_CHECKING:
    import torch

log = logging.getLogger("codehone.finetune")

METHODS = ("full", "freeze", "lora")
DEFAULT_LR = {"full": 2e-4, "freeze": 3e-4, "lora": 2e-3}
# Small models want much larger steps than the usual 2e-4 of 0.1-1B code models: fine-tuning
# the 1.7M-parameter default model for 3 epochs on a project it never saw reached validation
# loss 2.94 at 3e-3, 3.05 at 1e-3 and 3.29 at 2e-4 (line exact match 12.0, 11.3, 10.0; base
# 9.0). Full and frozen-layer fine-tuning of models under these sizes multiply the default
# by this much.
SMALL_MODEL_LR_SCALE = ((10e6, 15.0), (100e6, 5.0))
CONFIG_FILE = "codehone_finetune.json"
# The wall-clock budget is planned from probe steps: the first few run slow (thread pools,
# allocator), so they are not timed; the median of the rest is.
PROBE_WARMUP_STEPS = 3
PROBE_TIMED_STEPS = 5
IGNORE_INDEX = -100


@dataclass
class FinetuneConfig:
    """One fine-tuning run. Stored in the run directory and in every checkpoint."""

    base: Path
    data_dir: Path
    out_dir: Path
    method: str = "lora"  # full | freeze | lora
    trainable_layers: int = 2  # freeze: how many top transformer blocks train
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    learning_rate: float | None = None  # None: DEFAULT_LR[method]
    epochs: float = 3.0
    max_steps: int | None = None
    minutes: float | None = None  # wall-clock budget of the training loop
    batch_size: int = 8  # per device
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_steps: int = 50
    eval_rows: int = 256  # validation rows scored at each evaluation (evenly spaced)
    early_stopping_patience: int = 4
    # What RUN/model holds: the checkpoint with the best validation loss, or the end of the
    # schedule (no early stopping then). Loss is not what completion is scored on: past its
    # minimum, greedy line exact match can still rise (see TuneConfig.patience).
    keep: str = "best"  # best | last
    gradient_checkpointing: bool = False
    seq_len: int | None = None  # None: min(the model's context, the data set's max_seq_len)
    precision: str = "auto"  # auto (bf16 or fp16 on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16
    seed: int = 0
    resume: bool = True
    logging_steps: int = 10
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    eval_base: bool = True  # measure the validation loss before training too
    save_model: bool = True  # write RUN_DIR/model (search trials skip it)

    def lr(self, parameters: int | None = None) -> float:
        """The learning rate: the one given, else the method's default for a model of
        ``parameters`` parameters (see SMALL_MODEL_LR_SCALE)."""
        if self.learning_rate is not None:
            return self.learning_rate
        rate = DEFAULT_LR[self.method]
        if self.method != "lora" and parameters is not None:
            for size, scale in SMALL_MODEL_LR_SCALE:
                if parameters < size:
                    return rate * scale
        return rate

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FinetuneResult:
    checkpoint: Path  # RUN_DIR/model: merged weights, tokenizer, model card
    metrics: dict[str, float]
    steps: int


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


class PackedRows:
    """A map-style dataset over packed rows: PAD becomes EOS in the inputs and -100 in the
    labels (the model shifts labels itself)."""

    def __init__(self, rows: np.ndarray, eos_id: int) -> None:
        self.rows = rows
        self.eos_id = eos_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import torch

        row = torch.from_numpy(self.rows[index].astype(np.int64))
        pad = row == PAD
        return {
            "input_ids": row.masked_fill(pad, self.eos_id),
            "labels": row.masked_fill(pad, IGNORE_INDEX),
        }


def evenly_spaced(rows: np.ndarray, count: int) -> np.ndarray:
    if len(rows) <= count:
        return rows
    return rows[np.linspace(0, len(rows) - 1, num=count).astype(np.int64)]


# --------------------------------------------------------------------------------------------
# Model: what trains
# --------------------------------------------------------------------------------------------


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


def load_model(checkpoint: Path, config: FinetuneConfig) -> torch.nn.Module:
    import torch
    from transformers import AutoModelForCausalLM

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


# What a resumed run must share with the run that wrote the checkpoints: the weights' shape
# (method, layers, adapters), the data and the optimizer's schedule.
RESUME_KEYS = (
    "base", "data_dir", "method", "trainable_layers", "lora_rank", "lora_alpha",
    "learning_rate", "seq_len", "batch_size", "grad_accum", "seed",
)  # fmt: skip


def check_resumable(stored: dict[str, Any], config: FinetuneConfig, out_dir: Path) -> None:
    """Refuse (TrainingError) to resume checkpoints written by a run with other options."""
    current = config.to_json()
    differ = [
        f"{key} {stored.get(key)!r} then, {current[key]!r} now"
        for key in RESUME_KEYS
        if stored.get(key) != current[key]
    ]
    if differ:
        raise TrainingError(
            f"{out_dir} holds the checkpoints of a run with other options ({'; '.join(differ)}):"
            " resume it with the same options, or start over with --no-resume or another --out"
        )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --------------------------------------------------------------------------------------------
# Plan: how many steps
# --------------------------------------------------------------------------------------------


def precision_flags(precision: str) -> dict[str, bool]:
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {"bf16": False, "fp16": False}
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    if precision in ("bf16", "fp16") and not cuda:
        raise TrainingError(f"--precision {precision} needs a CUDA GPU; use fp32 on the CPU")
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


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------


def _callbacks(config: FinetuneConfig, plan: dict[str, Any]) -> list[Any]:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stop (with a last evaluation and save) once the wall-clock budget is spent."""

        def __init__(self, seconds: float) -> None:
            self.seconds = seconds
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if time.monotonic() - self.started > self.seconds:
                log.info("time budget spent at step %d: stopping", state.global_step)
                control.should_training_stop = True
                control.should_evaluate = True
                control.should_save = True
            return control

    class SaveRunConfig(TrainerCallback):
        """Every checkpoint carries the run's configuration and plan."""

        def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / CONFIG_FILE).write_text(
                        json.dumps({"config": config.to_json(), "plan": plan}, indent=2) + "\n"
                    )
            return control

    callbacks: list[Any] = [SaveRunConfig()]
    if config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience))
    if config.minutes is not None:
        callbacks.append(TimeBudget(config.minutes * 60))
    return callbacks


def _last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if folder.is_dir() and (found := get_last_checkpoint(str(folder))) else None


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Steps 1-5; see the module docstring."""
    import torch

    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _finetune(config)
    finally:
        torch.set_num_threads(previous_threads)


def _finetune(config: FinetuneConfig) -> FinetuneResult:
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    if config.method not in METHODS:
        raise TrainingError(f"unknown method {config.method!r}; use one of {', '.join(METHODS)}")
    if config.keep not in ("best", "last"):
        raise TrainingError(f"keep must be 'best' or 'last', not {config.keep!r}")
    if config.keep == "last" and config.early_stopping_patience > 0:
        raise TrainingError("early stopping keeps the best checkpoint: keep 'last' needs patience 0")
    out_dir = Path(config.out_dir)
    checkpoints = out_dir / "checkpoints"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    main_process = int(os.environ.get("RANK", "0")) == 0

    # 1. base model and data
    base: ModelRef = resolve_model(config.base, need_checkpoint=True)
    assert base.checkpoint is not None
    meta = load_dataset(Path(config.data_dir))
    flags = precision_flags(config.precision)

    run_config_path = out_dir / CONFIG_FILE
    resume_from = _last_checkpoint(checkpoints) if config.resume else None
    if resume_from is not None and run_config_path.is_file():
        stored = json.loads(run_config_path.read_text(encoding="utf-8"))["config"]
        check_resumable(stored, config, out_dir)
    if resume_from is None and checkpoints.exists() and main_process:
        shutil.rmtree(checkpoints)  # a fresh run: stale checkpoints must not be mixed in
    out_dir.mkdir(parents=True, exist_ok=True)

    args_kwargs: dict[str, Any] = dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="cosine",
        eval_strategy="steps",
        save_strategy="steps",
        save_total_limit=2,
        load_best_model_at_end=config.keep == "best",
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_safetensors=True,
        logging_steps=config.logging_steps,
        report_to=[],
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        **flags,
    )
    # sets up DDP (when launched so) before the data is packed on the main process only
    probe_args = TrainingArguments(**args_kwargs, max_steps=1, eval_steps=1, save_steps=1)
    with probe_args.main_process_first(local=False, desc="packing the data set"):
        packed = pack_dataset(Path(config.data_dir), base, config.seq_len)
    train_np, val_np, packed_meta = load_packed(packed)
    if len(train_np) == 0 or len(val_np) == 0:
        raise TrainingError(f"{config.data_dir}: the train or validation split packs to nothing")
    train_rows = PackedRows(train_np, base.eos_id)
    val_rows = PackedRows(evenly_spaced(val_np, config.eval_rows), base.eos_id)

    # 2. model
    model = load_model(base.checkpoint, config)
    trainable, total = count_parameters(model)
    learning_rate = config.lr(total)  # set here: the default depends on the model's size
    args_kwargs["learning_rate"] = learning_rate
    log.info(
        "model %s: %.2f M parameters, %.2f M trainable (%s); data: %d train rows, %d validation"
        " rows of %d tokens",
        base.checkpoint,
        total / 1e6,
        trainable / 1e6,
        config.method,
        len(train_rows),
        len(val_rows),
        packed_meta["seq_len"],
    )

    # 3. plan (a resumed run repeats the stored plan)
    if resume_from is not None and run_config_path.is_file():
        plan = json.loads(run_config_path.read_text(encoding="utf-8"))["plan"]
        log.info("resuming from %s (plan: %d steps)", resume_from, plan["max_steps"])
    else:
        probe = None
        if config.minutes is not None:
            probe = seconds_per_step(model, train_rows, config, probe_args.device)
            if world_size > 1 and torch.distributed.is_initialized():
                value = torch.tensor([probe[0], probe[1]], device=probe_args.device)
                torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
                probe = (float(value[0]), float(value[1]))
        # an epoch is one pass over the data: one of the train split's cuttings
        cuttings = packed_meta["splits"]["train"].get("cuttings", 1)
        epoch_rows = math.ceil(len(train_rows) / cuttings)
        plan = plan_steps(config, epoch_rows, len(val_rows), world_size, probe)
        if main_process:
            run_config_path.write_text(
                json.dumps({"config": config.to_json(), "plan": plan}, indent=2) + "\n"
            )
    log.info(
        "plan: %d steps (%s), warm-up %d, validation every %d steps, lr %.2g",
        plan["max_steps"],
        plan["reason"],
        plan["warmup_steps"],
        plan["eval_steps"],
        learning_rate,
    )

    # 4. train
    args = TrainingArguments(
        **args_kwargs,
        max_steps=plan["max_steps"],
        warmup_steps=plan["warmup_steps"],
        eval_steps=plan["eval_steps"],
        save_steps=plan["eval_steps"],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,  # type: ignore[arg-type]
        eval_dataset=val_rows,  # type: ignore[arg-type]
        data_collator=default_data_collator,
        callbacks=_callbacks(config, plan),
    )
    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs to stdout
        base_eval = trainer.evaluate() if resume_from is None and config.eval_base else {}
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        kept_eval = trainer.evaluate()  # the model RUN/model gets: best or last (config.keep)
    seconds = time.monotonic() - started
    steps = int(trainer.state.global_step)
    metrics = {
        "base_val_loss": float(base_eval.get("eval_loss", float("nan"))),
        "val_loss": float(kept_eval["eval_loss"]),
        "best_val_loss": float(
            trainer.state.best_metric
            if trainer.state.best_metric is not None
            else kept_eval["eval_loss"]
        ),
        "train_loss": float(output.training_loss),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "tokens_seen": steps
        * config.batch_size
        * config.grad_accum
        * world_size
        * packed_meta["seq_len"],
    }
    if not main_process or not config.save_model:
        return FinetuneResult(out_dir / "model", metrics, steps)

    # 5. the best model, merged, with tokenizer, configuration and model card
    from codehone_training.model_card import model_card

    final = trainer.model
    if config.method == "lora":
        final = final.merge_and_unload()  # type: ignore[operator,union-attr]
    final.config.use_cache = True  # type: ignore[union-attr]
    model_out = out_dir / "model"
    staging = out_dir / ".model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    final.save_pretrained(staging, safe_serialization=True)  # type: ignore[union-attr]
    AutoTokenizer.from_pretrained(base.checkpoint, trust_remote_code=False).save_pretrained(staging)
    if (base.checkpoint / "generation_config.json").is_file():
        shutil.copy2(base.checkpoint / "generation_config.json", staging)
    hyperparameters = {
        "method": config.method,
        "learning_rate": learning_rate,
        "steps": steps,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "world_size": world_size,
        "seq_len": packed_meta["seq_len"],
        "fim_rate": packed_meta["fim_rate"],
        "spm_rate": packed_meta["spm_rate"],
        "fim_line_rate": packed_meta.get("line_rate", 0.0),
        "warmup_steps": plan["warmup_steps"],
        "schedule": "cosine",
        "weight_decay": config.weight_decay,
        "precision": "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32",
        "kept": config.keep,
    }
    if config.method == "lora":
        hyperparameters.update(lora_rank=config.lora_rank, lora_alpha=config.lora_alpha)
    if config.method == "freeze":
        hyperparameters["trainable_layers"] = config.trainable_layers
    (staging / "README.md").write_text(
        model_card(
            str(base.path),
            config.method,
            meta["summary"],
            hyperparameters,
            metrics,
            project=meta.get("project", ""),
        ),
        encoding="utf-8",
    )
    (staging / CONFIG_FILE).write_text(
        json.dumps(
            {"config": config.to_json(), "plan": plan, "metrics": metrics, "data": meta["summary"]},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    shutil.rmtree(model_out, ignore_errors=True)
    staging.rename(model_out)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info(
        "fine-tuned %d steps in %.0f s: validation loss %.3f -> %.3f; model in %s",
        steps,
        seconds,
        metrics["base_val_loss"],
        metrics["val_loss"],
        model_out,
    )
    return FinetuneResult(model_out, metrics, steps)
