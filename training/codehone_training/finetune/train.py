"""One fine-tuning run with the Hugging Face ``Trainer``, from the data set to ``RUN_DIR/model``
(steps 1-5 of the package docstring)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.errors import TrainingError
from codehone.core.staging import refuse_links, staged_dir, write_text_atomic
from codehone_training.base_model import ModelRef, check_safetensors_only, resolve_model
from codehone_training.data.packing import PACKED_DIR, PackedRows, load_packed, pack_dataset
from codehone_training.data.project import load_dataset
from codehone_training.finetune.config import (
    CONFIG_FILE,
    METHODS,
    FinetuneConfig,
    FinetuneResult,
    check_resumable,
)
from codehone_training.finetune.model import (
    checkpoint_parameters,
    count_parameters,
    load_trainable_model,
)
from codehone_training.finetune.plan import (
    device_memory_bytes,
    fit_batch_to_memory,
    plan_steps,
    precision_flags,
    seconds_per_step,
)

log = logging.getLogger("codehone.finetune")


def evenly_spaced(rows: np.ndarray, count: int) -> np.ndarray:
    if len(rows) <= count:
        return rows
    return rows[np.linspace(0, len(rows) - 1, num=count).astype(np.int64)]


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
                if folder.is_dir():  # a file, or a link planted there, is replaced whole
                    write_text_atomic(
                        folder / CONFIG_FILE,
                        json.dumps({"config": config.to_json(), "plan": plan}, indent=2) + "\n",
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

    if config.method not in (*METHODS, "auto"):
        raise TrainingError(
            f"unknown method {config.method!r}; use auto or one of {', '.join(METHODS)}"
        )
    if config.keep not in ("best", "last"):
        raise TrainingError(f"keep must be 'best' or 'last', not {config.keep!r}")
    if config.keep == "last" and config.early_stopping_patience > 0:
        raise TrainingError(
            "early stopping keeps the best checkpoint: keep 'last' needs patience 0"
        )
    out_dir = Path(config.out_dir)
    checkpoints = out_dir / "checkpoints"
    # a fresh run deletes stale checkpoints; packing writes DATA/packed
    refuse_links((out_dir, checkpoints, Path(config.data_dir) / PACKED_DIR), TrainingError)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    main_process = int(os.environ.get("RANK", "0")) == 0

    # 1. base model and data
    base: ModelRef = resolve_model(config.base, need_checkpoint=True)
    assert base.checkpoint is not None
    if config.method == "auto":
        check_safetensors_only(base.checkpoint, TrainingError)
        config = config.resolved(checkpoint_parameters(base.checkpoint))
        log.info("method auto: %s for this base", config.method)
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
    # micro-batches that fit in memory (a 49k vocabulary's logits alone are 200 MB a row)
    from transformers import AutoConfig

    micro_batch, accumulation = fit_batch_to_memory(
        config,
        AutoConfig.from_pretrained(base.checkpoint),
        int(packed_meta["seq_len"]),
        device_memory_bytes(),
    )
    fitted = replace(config, batch_size=micro_batch, grad_accum=accumulation)  # probe, plan
    if micro_batch != config.batch_size:
        log.info(
            "batches of %d rows as %d micro-batches of %d (to fit the activations in memory)",
            config.batch_size * config.grad_accum,
            accumulation,
            micro_batch,
        )
    args_kwargs.update(
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
    )
    train_rows = PackedRows(train_np, base.eos_id)
    val_rows = PackedRows(evenly_spaced(val_np, config.eval_rows), base.eos_id)

    # 2. model
    model = load_trainable_model(base.checkpoint, config)
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
            probe = seconds_per_step(model, train_rows, fitted, probe_args.device)
            if world_size > 1 and torch.distributed.is_initialized():
                value = torch.tensor([probe[0], probe[1]], device=probe_args.device)
                torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
                probe = (float(value[0]), float(value[1]))
        # an epoch is one pass over the data: one of the train split's cuttings
        cuttings = packed_meta["splits"]["train"].get("cuttings", 1)
        epoch_rows = math.ceil(len(train_rows) / cuttings)
        plan = plan_steps(fitted, epoch_rows, len(val_rows), world_size, probe)
        if main_process:
            write_text_atomic(
                run_config_path,
                json.dumps({"config": config.to_json(), "plan": plan}, indent=2) + "\n",
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
    hyperparameters = _hyperparameters(
        config, learning_rate, steps, world_size, packed_meta, plan, flags
    )
    with staged_dir(model_out, _is_run_model, "a fine-tuned model", TrainingError) as staging:
        final.save_pretrained(staging, safe_serialization=True)  # type: ignore[union-attr]
        tokenizer = AutoTokenizer.from_pretrained(base.checkpoint, trust_remote_code=False)
        tokenizer.save_pretrained(staging)
        if (base.checkpoint / "generation_config.json").is_file():
            shutil.copy2(base.checkpoint / "generation_config.json", staging)
        card = model_card(
            str(base.path),
            config.method,
            meta["summary"],
            hyperparameters,
            metrics,
            project=meta.get("project", ""),
        )
        (staging / "README.md").write_text(card, encoding="utf-8")
        record = {
            "config": config.to_json(),
            "plan": plan,
            "metrics": metrics,
            "data": meta["summary"],
        }
        (staging / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info(
        "fine-tuned %d steps in %.0f s: validation loss %.3f -> %.3f; model in %s",
        steps,
        seconds,
        metrics["base_val_loss"],
        metrics["val_loss"],
        model_out,
    )
    return FinetuneResult(model_out, metrics, steps)


def _is_run_model(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def _hyperparameters(
    config: FinetuneConfig,
    learning_rate: float,
    steps: int,
    world_size: int,
    packed_meta: dict[str, Any],
    plan: dict[str, Any],
    flags: dict[str, bool],
) -> dict[str, Any]:
    """What the model card lists about the run."""
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
    return hyperparameters
