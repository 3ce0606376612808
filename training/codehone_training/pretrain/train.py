"""Steps 5-7 of pretraining and the whole run: the training loop, the validation losses, the
checkpoint and what its provenance says, and ``pretrain()``, which ends with the model
directory (``export.finish``)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codehone.core.errors import TrainingError
from codehone_training.data.corpus import collect_corpus_files
from codehone_training.data.packing import IGNORE_INDEX
from codehone_training.data.tokenizer_train import EOS_TOKEN, train_bpe_tokenizer
from codehone_training.pretrain.config import PretrainConfig
from codehone_training.pretrain.data import (
    MIN_FIM_SEGMENT_TOKENS,
    TokenizedCorpus,
    apply_fim,
    copy_tokenizer,
    corpus_roots,
    eval_windows,
    fim_tokens_of,
    hold_out_files,
    read_texts,
    sample_windows,
    token_stream,
    tokenizer_texts,
)
from codehone_training.pretrain.model import (
    build_model,
    check_device,
    default_threads,
    lm_loss,
    load_init_checkpoint,
    lr_at,
    make_optimizer,
    middle_only_labels,
    tune_glibc_malloc,
)

if TYPE_CHECKING:
    import torch

    from codehone.core.model_dir import ModelDir

log = logging.getLogger("codehone.pretrain")

_PROVENANCE_FILE = "codehone_pretrain.json"


@dataclass(frozen=True)
class TrainOutcome:
    """What the training loop reports back."""

    steps: int
    tokens: int
    seconds: float
    train_loss: float


@dataclass(frozen=True)
class PretrainResult:
    """A trained checkpoint and what the model directory's provenance should say about it."""

    checkpoint: Path
    training_data: str
    steps: int
    metrics: dict[str, float]


# --------------------------------------------------------------------------------------------
# 5. Train, then validate
# --------------------------------------------------------------------------------------------


def train_loop(
    model: torch.nn.Module, corpus: TokenizedCorpus, config: PretrainConfig, block: int
) -> TrainOutcome:
    """Train on ``corpus.train`` until the wall-clock budget (or ``max_steps``) is spent."""
    import torch

    device = torch.device(config.device)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.bf16
    )
    budget = max(config.minutes * 60.0, 1e-3)
    tokens_per_step = config.batch_size * block
    recent: list[float] = []
    ema: float | None = None
    step = 0
    started = last_log = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        progress = elapsed / budget
        if config.max_steps is not None:
            progress = max(progress, step / max(config.max_steps, 1))
        if progress >= 1.0:
            break
        lr = lr_at(config, step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        windows = sample_windows(corpus.train, config.batch_size, block + 1, rng)
        if config.fim_rate > 0:
            windows = apply_fim(
                windows,
                corpus.tokenizer,
                corpus.fim,
                corpus.eos_id,
                config.fim_rate,
                rng,
                config.fim_line_rate,
            )
        batch = torch.from_numpy(windows).to(device, non_blocking=True)
        with autocast:
            loss = lm_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(f"training diverged at step {step} (loss {value}); lower the lr")
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        recent = [*recent[-49:], value]
        now = time.monotonic()
        if now - last_log >= config.log_every_s:
            log.info(
                "step %d  %3.0f%%  loss %.3f  lr %.2e  %.0f tok/s",
                step,
                100 * progress,
                ema,
                lr,
                step * tokens_per_step / (now - started),
            )
            last_log = now
    seconds = time.monotonic() - started
    train_loss = float(np.mean(recent)) if recent else float("nan")
    return TrainOutcome(step, step * tokens_per_step, seconds, train_loss)


def validation_losses(
    model: torch.nn.Module, corpus: TokenizedCorpus, config: PretrainConfig, block: int
) -> dict[str, float]:
    """Losses on the held-out files: plain next-token loss and FIM-middle losses (random
    spans, and line-shaped ones)."""
    import torch

    windows = eval_windows(corpus.validation, config.eval_samples, block + 1)
    if len(windows) == 0:
        return {}
    device = torch.device(config.device)
    fim, eos = corpus.fim, corpus.eos_id
    rng = np.random.default_rng
    fim_windows = apply_fim(windows, corpus.tokenizer, fim, eos, 1.0, rng(1234))
    line_windows = apply_fim(windows, corpus.tokenizer, fim, eos, 1.0, rng(1234), 1.0)
    model.eval()
    plain: list[float] = []
    middle: dict[str, list[float]] = {"val_fim_middle_loss": [], "val_fim_line_middle_loss": []}
    with torch.no_grad():
        for i in range(0, len(windows), config.batch_size):
            batch = torch.from_numpy(windows[i : i + config.batch_size]).to(device)
            plain.append(float(lm_loss(model, batch)))
            for name, samples in (
                ("val_fim_middle_loss", fim_windows),
                ("val_fim_line_middle_loss", line_windows),
            ):
                fim_batch = torch.from_numpy(samples[i : i + config.batch_size]).to(device)
                labels = middle_only_labels(fim_batch, fim, eos)
                if bool((labels[:, 1:] != IGNORE_INDEX).any()):
                    middle[name].append(float(lm_loss(model, fim_batch, labels)))
    model.train()
    metrics = {"val_loss": float(np.mean(plain))}
    for name, values in middle.items():
        if values:
            metrics[name] = float(np.mean(values))
    return metrics


# --------------------------------------------------------------------------------------------
# Steps 1-6: a checkpoint
# --------------------------------------------------------------------------------------------


def init_checkpoint_provenance(source: Path) -> str:
    """What the checkpoint continued from was trained on (recorded beside its weights)."""
    path = source / _PROVENANCE_FILE
    if not path.is_file():
        return ""
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("training_data", ""))
    except (OSError, ValueError):
        return ""


def train_checkpoint(config: PretrainConfig, checkpoint: Path) -> PretrainResult:
    """Steps 1-6: train from scratch and save a Hugging Face checkpoint into ``checkpoint``."""
    import torch

    check_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads or default_threads())
    if config.tune_malloc and config.device == "cpu":
        tune_glibc_malloc()
    try:
        return _train_checkpoint(config, checkpoint)
    finally:
        torch.set_num_threads(previous_threads)


def _train_checkpoint(config: PretrainConfig, checkpoint: Path) -> PretrainResult:
    import torch
    from tokenizers import Tokenizer

    # 1. corpus, split by file
    corpus_dirs, caps = corpus_roots(config)
    files = collect_corpus_files(
        corpus_dirs,
        max_file_bytes=config.max_file_bytes,
        exclude=config.exclude_packages,
        max_root_bytes=caps,
    )
    train_files, val_files = hold_out_files(files, config.val_fraction, config.seed)
    train_texts, val_texts = read_texts(train_files), read_texts(val_files)
    chars = sum(map(len, train_texts)) + sum(map(len, val_texts))
    log.info(
        "corpus: %d files (%d held out for validation), %.1f M characters",
        len(files),
        len(val_files),
        chars / 1e6,
    )

    # 2. tokenizer, trained on the training files only (or the one of the checkpoint continued)
    checkpoint.mkdir(parents=True, exist_ok=True)
    if config.init_checkpoint is not None:
        tokenizer_path = copy_tokenizer(Path(config.init_checkpoint), checkpoint)
    else:
        bpe_texts = tokenizer_texts(train_texts, config.tokenizer_max_bytes)
        tokenizer_path = train_bpe_tokenizer(bpe_texts, config.vocab_size, checkpoint)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    eos_id = tokenizer.get_vocab()[EOS_TOKEN]

    # 3. one token stream per split
    train_stream = token_stream(tokenizer, train_texts, eos_id)
    val_stream = token_stream(tokenizer, val_texts, eos_id)
    if len(val_stream) == 0:  # a one-file corpus: hold out its tail instead
        cut = int(len(train_stream) * 0.9)
        train_stream, val_stream = train_stream[:cut], train_stream[cut:]
    corpus = TokenizedCorpus(tokenizer, fim_tokens_of(tokenizer), eos_id, train_stream, val_stream)
    if config.init_checkpoint is not None:
        model = load_init_checkpoint(Path(config.init_checkpoint), tokenizer.get_vocab_size())
        gpt2 = model.config
        config = replace(
            config,
            n_layer=gpt2.n_layer,
            n_embd=gpt2.n_embd,
            n_head=gpt2.n_head,
            context_length=gpt2.n_positions,
        )
    else:
        model = None
    block = min(config.context_length, len(train_stream) - 1)
    if block < MIN_FIM_SEGMENT_TOKENS:
        raise TrainingError(f"the corpus is too small to train on ({len(train_stream)} tokens)")
    log.info(
        "tokens: %d train, %d validation (vocabulary %d, %.2f characters per token)",
        len(train_stream),
        len(val_stream),
        tokenizer.get_vocab_size(),
        chars / max(1, len(train_stream) + len(val_stream)),
    )

    # 4. model
    if model is None:
        model = build_model(config, tokenizer.get_vocab_size(), eos_id)
    log.info(
        "model: GPT-2, %d layers, %d wide, %d heads, context %d, %.2f M parameters%s; "
        "training for %.1f minutes on %s (%d threads)",
        config.n_layer,
        config.n_embd,
        config.n_head,
        config.context_length,
        sum(p.numel() for p in model.parameters()) / 1e6,
        f", from {config.init_checkpoint}" if config.init_checkpoint else "",
        config.minutes,
        config.device,
        torch.get_num_threads(),
    )

    # 5. train, then validate on the held-out files
    outcome = train_loop(model, corpus, config, block)
    metrics = validation_losses(model, corpus, config, block)
    if "val_loss" in metrics:  # comparable across vocabularies, unlike the loss per token
        val_chars = sum(map(len, val_texts)) if val_texts else len(train_texts[0]) // 10
        metrics["val_bits_per_char"] = (
            metrics["val_loss"] / math.log(2) * len(val_stream) / max(1, val_chars)
        )
    metrics["train_loss"] = outcome.train_loss
    metrics["tokens_per_s"] = outcome.tokens / max(outcome.seconds, 1e-9)
    log.info(
        "trained %d steps, %.2f M tokens in %.0f s (%.0f tok/s): train loss %.3f, "
        "validation loss %s, FIM middle loss %s",
        outcome.steps,
        outcome.tokens / 1e6,
        outcome.seconds,
        metrics["tokens_per_s"],
        outcome.train_loss,
        f"{metrics['val_loss']:.3f}" if "val_loss" in metrics else "n/a",
        f"{metrics['val_fim_middle_loss']:.3f}" if "val_fim_middle_loss" in metrics else "n/a",
    )

    # 6. checkpoint: safetensors weights beside the tokenizer, and what they were trained on
    model.to("cpu")
    model.save_pretrained(checkpoint, safe_serialization=True)
    where = ", ".join(str(d) for d in corpus_dirs if d not in caps)
    if caps:
        where += (
            f" and the packages {', '.join(d.name for d in caps)} (at most "
            f"{config.package_max_bytes / 1e6:g} MB each)"
        )
    if config.exclude_packages:
        where += f"; never {', '.join(config.exclude_packages)}"
    start = "pretrained from scratch" if config.init_checkpoint is None else "trained further"
    training_data = (
        f"{start} on {len(train_files)} files ({len(val_files)} held out), "
        f"{len(train_stream)} tokens, {outcome.tokens} seen, FIM rate {config.fim_rate} "
        f"({config.fim_line_rate:g} of it line-shaped), from {where}"
    )
    if config.init_checkpoint is not None:
        previous = init_checkpoint_provenance(Path(config.init_checkpoint))
        if previous:
            training_data += f"; before that: {previous}"
    (checkpoint / _PROVENANCE_FILE).write_text(
        json.dumps({"training_data": training_data, "steps": outcome.steps, "metrics": metrics})
        + "\n",
        encoding="utf-8",
    )
    return PretrainResult(checkpoint, training_data, outcome.steps, metrics)


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


def pretrain(config: PretrainConfig) -> ModelDir:
    """Build a model directory from scratch on local sources; see the package docstring."""
    from codehone_training.export.checkpoint import check_model_dir_target
    from codehone_training.export.finish import finish_model

    steps = config.finish_steps()
    out_dir = Path(config.out_dir)
    check_model_dir_target(out_dir)  # refused now, not after the training minutes
    started = time.monotonic()
    own_checkpoint = config.checkpoint_dir is None
    checkpoint = (
        Path(tempfile.mkdtemp(prefix="codehone-pretrain-"))
        if config.checkpoint_dir is None
        else Path(config.checkpoint_dir)
    )
    try:
        result = train_checkpoint(config, checkpoint)
        # 7. the model directory: the export (verified against the checkpoint), then the steps
        export_started = time.monotonic()
        model_dir = finish_model(
            result.checkpoint,
            out_dir,
            steps,
            device="cpu",
            dtype=config.export_dtype,
            training_data=result.training_data,
            trained_steps=result.steps,
            metrics=result.metrics,
        )
        now = time.monotonic()
        log.info(
            "model directory %s written (export %.0f s, %.0f s in all)",
            model_dir.root,
            now - export_started,
            now - started,
        )
        return model_dir
    finally:
        if own_checkpoint:
            shutil.rmtree(checkpoint, ignore_errors=True)


def format_summary(model_dir: ModelDir) -> str:
    """A short human summary of a pretrained model directory (for stdout)."""
    provenance = model_dir.manifest.provenance
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(provenance.metrics.items()))
    return (
        f"codehone default model: {model_dir.root}\n"
        f"  {provenance.steps} steps; {metrics}\n"
        f"  {provenance.training_data}"
    )
