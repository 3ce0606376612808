"""Pretrain codehone's small embedded default model from scratch, on local sources only.

codehone has to complete code on a fresh machine with no network, so it cannot download a
model: it builds one. This module is that build, written to read top to bottom like nanoGPT:

1. collect the corpus (by default the Python standard library on this machine; optionally the
   sources of installed third-party packages too, never the held-out ones),
2. hold out a few files for validation and train a byte-level BPE tokenizer on the rest,
3. tokenize the corpus into one stream with ``<|endoftext|>`` between files,
4. build a randomly initialised GPT-2 style ``GPT2LMHeadModel``,
5. train it for a wall-clock budget with AdamW and a warm-up + cosine schedule, turning a
   fraction of the samples into fill-in-the-middle samples (StarCoder PSM format, split at
   the character level within a file chunk) so the model can complete between code,
6. measure the validation loss, save a safetensors checkpoint with the tokenizer, and
7. export it to an ONNX model directory with ``codehone_training.export.checkpoint`` and, if asked,
   rebuild it as the fused decode graph, quantize its weights to int8 (both
   ``codehone_training.export.optimize``) and put an fp16 copy of the checkpoint in ``checkpoint/``
   so that fine-tuning can start from the directory.

The defaults are sized so that a 2-core CPU builds the first-run fallback model in about five
minutes in all; the shipped ``models/default`` is a longer run with options (its model card
gives the command).
Progress goes to the ``codehone.pretrain`` logger (stderr); nothing is printed to stdout
except the one-paragraph summary of ``main()``, because the LSP server speaks on stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codehone.core.errors import TrainingError
from codehone_training.data.corpus import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_PACKAGE_MAX_BYTES,
    HELDOUT_PACKAGES,
    collect_corpus_files,
    package_dirs,
    stdlib_dir,
)
from codehone_training.data.tokenizer_train import (
    EOS_TOKEN,
    FIM_MIDDLE_TOKEN,
    FIM_PREFIX_TOKEN,
    FIM_SUFFIX_TOKEN,
    train_bpe_tokenizer,
)

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from codehone.core.model_dir import ModelDir

log = logging.getLogger("codehone.pretrain")

# Loss labels ignored by cross-entropy.
IGNORE_INDEX = -100
# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A file chunk shorter than this (in tokens) is never turned into a FIM sample.
MIN_FIM_SEGMENT_TOKENS = 16


@dataclass
class PretrainConfig:
    """Everything one pretraining run needs; the defaults build codehone's default model."""

    out_dir: Path
    corpus_dirs: list[Path] | None = None  # None: the Python standard library
    extra_corpus_dirs: list[Path] = field(default_factory=list)
    # installed third-party packages (import names) added to the corpus, each capped
    packages: list[str] = field(default_factory=list)
    exclude_packages: list[str] = field(default_factory=lambda: list(HELDOUT_PACKAGES))
    package_max_bytes: int = DEFAULT_PACKAGE_MAX_BYTES
    tokenizer_max_bytes: int = 16_000_000  # the BPE learns from about this much text (chars)
    minutes: float = 3.5  # wall-clock budget of the training loop itself
    device: str = "cpu"  # cpu | cuda
    # model: sized by measurement on a 2-core CPU with a 3.5-minute budget (~1M tokens/minute);
    # at that budget one wide-enough layer beats deeper models, which see too few tokens
    n_layer: int = 1
    n_embd: int = 128
    n_head: int = 4
    context_length: int = 256
    vocab_size: int = 4096
    activation: str = "gelu_pytorch_tanh"  # fused tanh GELU: same as GPT-2's, much faster on CPU
    # optimisation
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    max_steps: int | None = None  # stop earlier than the time budget (tests, debugging)
    # data
    fim_rate: float = 0.5  # probability that a file chunk in a sample becomes a FIM sample
    # share of the FIM samples cut like a line completion (split_line_for_fim) rather than at
    # two random characters. An experiment: 15 more minutes of the shipped model at 0.5
    # (--init-checkpoint) lowered its losses but did not make its FIM completions beat its
    # plain ones (models/default/README.md), so the default stays StarCoder's random spans
    fim_line_rate: float = 0.0
    val_fraction: float = 0.05  # share of the files held out for validation
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    eval_samples: int = 128  # validation windows (evenly spaced over the held-out files)
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; None: every CPU this process may use
    log_every_s: float = 15.0
    bf16: bool = True  # bfloat16 autocast when training on CUDA (ignored on the CPU)
    tune_malloc: bool = True  # keep glibc from mmap-ing (and page-faulting) every big tensor
    # output
    checkpoint_dir: Path | None = None  # None: a temporary directory, removed after export
    # continue training this Hugging Face checkpoint (its tokenizer and shape; the n_*,
    # context_length and vocab_size options are ignored) instead of starting from scratch
    init_checkpoint: Path | None = None
    verify: bool = True
    export_dtype: str = "fp32"
    fuse: bool = False  # rebuild as codehone's fused decode graph (optimize.fuse)
    quantize_bits: int = 0  # 8 or 4: weight-only MatMulNBits (optimize.quantize); 0: none
    embed_checkpoint: bool = False  # copy the checkpoint into <out_dir>/checkpoint/
    # False: the manifest says fim.in_prompts = false, so the server prompts with the text
    # before the cursor only (for a model whose FIM completions measured worse than plain)
    fim_in_prompts: bool = True
    checkpoint_dtype: str = "fp16"  # of that copy: fp16 | bf16 | fp32


@dataclass(frozen=True)
class FimIds:
    """Token ids of the special tokens a FIM sample is built from."""

    prefix: int
    suffix: int
    middle: int
    eos: int


@dataclass(frozen=True)
class TrainOutcome:
    """What the training loop reports back."""

    steps: int
    tokens: int
    seconds: float
    train_loss: float


# --------------------------------------------------------------------------------------------
# Fill-in-the-middle
# --------------------------------------------------------------------------------------------


def split_for_fim(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """Cut ``text`` at two uniformly random character positions into (prefix, middle, suffix)."""
    lo, hi = sorted(int(i) for i in rng.integers(0, len(text) + 1, size=2))
    return text[:lo], text[lo:hi], text[hi:]


def split_line_for_fim(
    text: str, rng: np.random.Generator, prefix_share: float = 0.6
) -> tuple[str, str, str]:
    """Cut ``text`` like the server's line completions: the cursor at a random character of
    the last ``1 - prefix_share`` of the text, the middle the rest of its line (with
    probability 1/4 up to three more lines, as a completion after a block opener), the suffix
    what follows. So the prefix is long and the suffix short, as in the server's prompts (it
    gives the suffix at most a quarter of the budget), and the model practises the one thing a
    completion needs: continuing the prefix exactly where it stops, across the suffix between.
    A middle that would be blank (the cursor at a line end) takes the next line instead (which
    is blank too before a blank line)."""
    if not text:
        return "", "", ""
    cursor = int(rng.integers(int(len(text) * prefix_share), len(text)))
    end = cursor
    extra_lines = int(rng.integers(1, 4)) if rng.random() < 0.25 else 0
    for k in range(extra_lines + 1):
        newline = text.find("\n", end + (1 if k else 0))
        end = len(text) if newline < 0 else newline
        if k == 0 and not text[cursor:end].strip() and newline >= 0:  # nothing left on the line
            newline = text.find("\n", end + 1)
            end = len(text) if newline < 0 else newline
    return text[:cursor], text[cursor:end], text[end:]


def psm_text(prefix: str, middle: str, suffix: str) -> str:
    """Lay a split out in StarCoder's prefix-suffix-middle order, as the server prompts it."""
    return f"{FIM_PREFIX_TOKEN}{prefix}{FIM_SUFFIX_TOKEN}{suffix}{FIM_MIDDLE_TOKEN}{middle}"


def psm_ids(
    prefix: list[int],
    middle: list[int],
    suffix: list[int],
    ids: FimIds,
    target_len: int,
    add_eos: bool,
) -> list[int] | None:
    """Token-level PSM sample of exactly ``target_len`` tokens, or None if it cannot fit.

    The middle always ends the sample (followed by EOS when ``add_eos``), so the model learns
    to stop after the middle. The special tokens make the sample longer than the chunk it came
    from; to keep the length fixed the suffix is cut from its end and, if that is not enough,
    the prefix from its start, just as the server cuts a long suffix and prefix at inference.
    """
    tail = [ids.eos] if add_eos else []
    extra = 3 + len(prefix) + len(suffix) + len(middle) + len(tail) - target_len
    if extra < 0 or extra > len(suffix) + len(prefix):
        return None
    cut_suffix = min(extra, len(suffix))
    suffix = suffix[: len(suffix) - cut_suffix]
    prefix = prefix[extra - cut_suffix :]
    return [ids.prefix, *prefix, ids.suffix, *suffix, ids.middle, *middle, *tail]


def apply_fim(
    windows: np.ndarray,
    tokenizer: Tokenizer,
    ids: FimIds,
    rate: float,
    rng: np.random.Generator,
    line_rate: float = 0.0,
) -> np.ndarray:
    """Turn file chunks of token windows into PSM samples with probability ``rate`` each.

    A window is cut at its EOS tokens into file chunks; each chosen chunk is decoded to text,
    split at two random characters (StarCoder's FIM) or, for a ``line_rate`` share of them,
    like a line completion (``split_line_for_fim``), re-tokenized piece by piece and laid out in
    PSM order with the same length, so windows stay rectangular. Chunks that would not fit stay
    as they are.
    """
    out = windows.copy()
    jobs: list[tuple[int, int, int, bool]] = []  # (row, start, end, add_eos)
    for row in range(windows.shape[0]):
        eos_at = np.flatnonzero(windows[row] == ids.eos).tolist()
        start = 0
        for end in [*eos_at, windows.shape[1]]:
            if end - start >= MIN_FIM_SEGMENT_TOKENS and rng.random() < rate:
                jobs.append((row, start, end, end == windows.shape[1]))
            start = end + 1
    if not jobs:
        return out
    texts = tokenizer.decode_batch(
        [windows[row, start:end].tolist() for row, start, end, _ in jobs],
        skip_special_tokens=False,
    )
    pieces: list[str] = []
    for text in texts:
        if line_rate > 0 and rng.random() < line_rate:
            prefix, middle, suffix = split_line_for_fim(text, rng)
        else:
            prefix, middle, suffix = split_for_fim(text, rng)
        pieces += [prefix, middle, suffix]
    encoded = tokenizer.encode_batch(pieces, add_special_tokens=False)
    for k, (row, start, end, add_eos) in enumerate(jobs):
        prefix, middle, suffix = (e.ids for e in encoded[3 * k : 3 * k + 3])
        sample = psm_ids(prefix, middle, suffix, ids, end - start, add_eos)
        if sample is not None:
            out[row, start:end] = sample
    return out


def middle_only_labels(batch: torch.Tensor, ids: FimIds) -> torch.Tensor:
    """Next-token labels that score only the FIM middles (and the EOS that ends each one)."""
    import torch

    labels = torch.full_like(batch, IGNORE_INDEX)
    for row in range(batch.shape[0]):
        inside = False
        for pos in range(1, batch.shape[1]):
            token = int(batch[row, pos])
            prev = int(batch[row, pos - 1])
            if prev == ids.middle:
                inside = True
            elif prev in (ids.eos, ids.prefix):
                inside = False
            if inside:
                labels[row, pos] = token
    return labels


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def split_files(files: Sequence[Path], val_fraction: float, seed: int) -> tuple[list, list]:
    """Hold out whole files for validation: a seeded, deterministic choice."""
    if len(files) < 2 or val_fraction <= 0:
        return list(files), []
    n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(files))
    val_idx = set(order[:n_val].tolist())
    train = [f for i, f in enumerate(files) if i not in val_idx]
    val = [f for i, f in enumerate(files) if i in val_idx]
    return train, val


def tokenizer_texts(texts: Sequence[str], max_chars: int) -> list[str]:
    """About ``max_chars`` of ``texts`` for the BPE to learn from (every k-th file, so the
    whole corpus is represented), or all of them when they are no more than that. Learning
    the merges from a sample costs minutes less on a big corpus and changes them little."""
    total = sum(map(len, texts))
    if max_chars <= 0 or total <= max_chars:
        return list(texts)
    return list(texts[:: math.ceil(total / max_chars)])


def corpus_roots(config: PretrainConfig) -> tuple[list[Path], dict[Path, int]]:
    """The directories to collect from, and the size cap of each package among them."""
    roots = list(config.corpus_dirs) if config.corpus_dirs else [stdlib_dir()]
    roots += list(config.extra_corpus_dirs)
    packages = package_dirs(config.packages, exclude=config.exclude_packages)
    return roots + packages, {p: config.package_max_bytes for p in packages}


def read_texts(files: Sequence[Path]) -> list[str]:
    texts: list[str] = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError(f"cannot read corpus file {path}: {exc}") from None
    return texts


def token_stream(tokenizer: Tokenizer, texts: Sequence[str], eos_id: int) -> np.ndarray:
    """Tokenize ``texts`` into one stream with EOS after every file."""
    dtype = np.uint16 if tokenizer.get_vocab_size() <= np.iinfo(np.uint16).max else np.int32
    if not texts:
        return np.zeros(0, dtype=dtype)
    parts: list[np.ndarray] = []
    eos = np.array([eos_id], dtype=dtype)
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        parts += [np.asarray(encoding.ids, dtype=dtype), eos]
    return np.concatenate(parts)


def sample_windows(
    stream: np.ndarray, batch_size: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """``batch_size`` random windows of ``length`` tokens from the stream."""
    starts = rng.integers(0, len(stream) - length + 1, size=batch_size)
    return np.stack([stream[s : s + length] for s in starts]).astype(np.int64)


def eval_windows(stream: np.ndarray, count: int, length: int) -> np.ndarray:
    """Up to ``count`` evenly spaced windows of ``length`` tokens: the same every run."""
    if len(stream) < length:
        return np.zeros((0, length), dtype=np.int64)
    last = len(stream) - length
    n = min(count, last // length + 1)
    starts = np.linspace(0, last, num=n).astype(np.int64)
    return np.stack([stream[s : s + length] for s in starts]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Model and training
# --------------------------------------------------------------------------------------------


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


def train_loop(
    model: torch.nn.Module,
    train_stream: np.ndarray,
    tokenizer: Tokenizer,
    fim_ids: FimIds,
    config: PretrainConfig,
    block: int,
) -> TrainOutcome:
    """Train until the wall-clock budget (or ``max_steps``) is spent."""
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
        windows = sample_windows(train_stream, config.batch_size, block + 1, rng)
        if config.fim_rate > 0:
            windows = apply_fim(
                windows, tokenizer, fim_ids, config.fim_rate, rng, config.fim_line_rate
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


def evaluate(
    model: torch.nn.Module,
    stream: np.ndarray,
    tokenizer: Tokenizer,
    fim_ids: FimIds,
    config: PretrainConfig,
    block: int,
) -> dict[str, float]:
    """Validation losses on held-out files: plain next-token loss and FIM-middle loss."""
    import torch

    windows = eval_windows(stream, config.eval_samples, block + 1)
    if len(windows) == 0:
        return {}
    device = torch.device(config.device)
    fim_windows = apply_fim(windows, tokenizer, fim_ids, 1.0, np.random.default_rng(1234))
    line_windows = apply_fim(windows, tokenizer, fim_ids, 1.0, np.random.default_rng(1234), 1.0)
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
                labels = middle_only_labels(fim_batch, fim_ids)
                if bool((labels[:, 1:] != IGNORE_INDEX).any()):
                    middle[name].append(float(lm_loss(model, fim_batch, labels)))
    model.train()
    metrics = {"val_loss": float(np.mean(plain))}
    for name, values in middle.items():
        if values:
            metrics[name] = float(np.mean(values))
    return metrics


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_PROVENANCE_FILE = "codehone_pretrain.json"


def copy_tokenizer(source: Path, checkpoint: Path) -> Path:
    """Copy a checkpoint's tokenizer files into ``checkpoint``; return its tokenizer.json."""
    if not (source / "tokenizer.json").is_file():
        raise TrainingError(f"{source}: no tokenizer.json to continue training with")
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, checkpoint / name)
    return checkpoint / "tokenizer.json"


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


def init_checkpoint_provenance(source: Path) -> str:
    """What the checkpoint continued from was trained on (recorded beside its weights)."""
    path = source / _PROVENANCE_FILE
    if not path.is_file():
        return ""
    import json

    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("training_data", ""))
    except (OSError, ValueError):
        return ""


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _tune_malloc() -> None:
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


def _check_device(device: str) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise TrainingError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for but torch sees no CUDA GPU")


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainResult:
    """A trained checkpoint and what the model directory's provenance should say about it."""

    checkpoint: Path
    training_data: str
    steps: int
    metrics: dict[str, float]


def train_checkpoint(config: PretrainConfig, checkpoint: Path) -> PretrainResult:
    """Steps 1-6: train from scratch and save a Hugging Face checkpoint into ``checkpoint``."""
    import torch

    _check_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads or _default_threads())
    if config.tune_malloc and config.device == "cpu":
        _tune_malloc()
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
    train_files, val_files = split_files(files, config.val_fraction, config.seed)
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
    vocab = tokenizer.get_vocab()
    fim_ids = FimIds(
        vocab[FIM_PREFIX_TOKEN], vocab[FIM_SUFFIX_TOKEN], vocab[FIM_MIDDLE_TOKEN], vocab[EOS_TOKEN]
    )

    # 3. one token stream per split
    train_stream = token_stream(tokenizer, train_texts, fim_ids.eos)
    val_stream = token_stream(tokenizer, val_texts, fim_ids.eos)
    if len(val_stream) == 0:  # a one-file corpus: hold out its tail instead
        cut = int(len(train_stream) * 0.9)
        train_stream, val_stream = train_stream[:cut], train_stream[cut:]
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
        model = build_model(config, tokenizer.get_vocab_size(), fim_ids.eos)
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

    # 5. train, then evaluate on the held-out files
    outcome = train_loop(model, train_stream, tokenizer, fim_ids, config, block)
    metrics = evaluate(model, val_stream, tokenizer, fim_ids, config, block)
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

    # 6. checkpoint: safetensors weights beside the tokenizer
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
    import json

    (checkpoint / _PROVENANCE_FILE).write_text(
        json.dumps({"training_data": training_data, "steps": outcome.steps, "metrics": metrics})
        + "\n",
        encoding="utf-8",
    )
    return PretrainResult(checkpoint, training_data, outcome.steps, metrics)


CHECKPOINT_SUBDIR = "checkpoint"
_CHECKPOINT_DTYPES = ("fp16", "bf16", "fp32")


def embed_checkpoint(checkpoint: Path, model_dir: Path, dtype: str = "fp16") -> Path:
    """Copy the Hugging Face checkpoint into ``model_dir/checkpoint`` (weights cast to
    ``dtype`` to save space), so ``codehone finetune`` / ``tune`` can start from the model
    directory (``codehone_training.base_model`` looks there first). Returns that directory."""
    import torch
    from safetensors.torch import load_file, save_file

    if dtype not in _CHECKPOINT_DTYPES:
        raise TrainingError(f"checkpoint dtype must be one of {_CHECKPOINT_DTYPES}, not {dtype!r}")
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    target = Path(model_dir) / CHECKPOINT_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(checkpoint).iterdir()):
        if not item.is_file():
            continue
        if item.suffix == ".safetensors":
            tensors = {k: v.to(torch_dtype).contiguous() for k, v in load_file(item).items()}
            save_file(tensors, target / item.name, metadata={"format": "pt"})
        elif item.suffix in (".json", ".txt"):  # config, generation config, tokenizer files
            shutil.copy2(item, target / item.name)
    return target


def pretrain(config: PretrainConfig) -> ModelDir:
    """Build a model directory from scratch on local sources; see the module docstring."""
    from codehone.core.model_dir import load_model_dir, with_fim_in_prompts, write_manifest
    from codehone_training.export.checkpoint import export_checkpoint

    if config.quantize_bits not in (0, 4, 8):
        raise TrainingError(f"quantize_bits must be 0, 4 or 8, not {config.quantize_bits}")
    if config.checkpoint_dtype not in _CHECKPOINT_DTYPES:
        raise TrainingError(f"checkpoint_dtype must be one of {_CHECKPOINT_DTYPES}")
    started = time.monotonic()
    out_dir = Path(config.out_dir)
    own_checkpoint = config.checkpoint_dir is None
    checkpoint = (
        Path(tempfile.mkdtemp(prefix="codehone-pretrain-"))
        if config.checkpoint_dir is None
        else Path(config.checkpoint_dir)
    )
    post = (
        config.fuse or config.quantize_bits or config.embed_checkpoint or not config.fim_in_prompts
    )
    work: Path | None = None
    try:
        result = train_checkpoint(config, checkpoint)
        # 7. export to an ONNX model directory (verified against the checkpoint); the optional
        # steps after it work beside the target and publish the last one by renaming it
        export_started = time.monotonic()
        if post:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.steps-", dir=out_dir.parent))
        model_dir = export_checkpoint(
            result.checkpoint,
            work / "exported" if work else out_dir,
            device="cpu",
            dtype=config.export_dtype,
            training_data=result.training_data,
            steps=result.steps,
            metrics=result.metrics,
            verify=config.verify,
        )
        if work is not None:
            from codehone_training.export import optimize

            if config.fuse:
                model_dir = optimize.fuse(
                    model_dir.root,
                    work / "fused",
                    checkpoint=result.checkpoint,
                    verify=config.verify,
                )
            if config.quantize_bits:
                model_dir = optimize.quantize(
                    model_dir.root, work / "quantized", bits=config.quantize_bits
                )
            manifest = model_dir.manifest
            if config.embed_checkpoint:
                embed_checkpoint(result.checkpoint, model_dir.root, config.checkpoint_dtype)
                provenance = replace(manifest.provenance, base_checkpoint=CHECKPOINT_SUBDIR)
                manifest = replace(manifest, provenance=provenance)
            if not config.fim_in_prompts:
                manifest = with_fim_in_prompts(manifest, False)
            write_manifest(model_dir.root, manifest)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(model_dir.root, out_dir)
            model_dir = load_model_dir(out_dir)
        now = time.monotonic()
        log.info(
            "model directory %s written (export %.0f s, %.0f s in all)",
            model_dir.root,
            now - export_started,
            now - started,
        )
        return model_dir
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
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


def _parse_args(argv: Sequence[str] | None) -> PretrainConfig:
    defaults = PretrainConfig(out_dir=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m codehone_training.pretrain",
        description="Pretrain a small code model from scratch on local sources.",
    )
    parser.add_argument("out_dir", type=Path, help="model directory to write")
    parser.add_argument(
        "--corpus",
        type=Path,
        action="append",
        dest="corpus_dirs",
        help="corpus directory (repeatable; default: the Python stdlib)",
    )
    parser.add_argument(
        "--extra-corpus",
        type=Path,
        action="append",
        default=[],
        dest="extra_corpus_dirs",
        help="add a directory to the corpus",
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="keep the Hugging Face checkpoint here"
    )
    for name, value in asdict(defaults).items():
        if name in {"out_dir", "corpus_dirs", "extra_corpus_dirs", "checkpoint_dir"}:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            parser.add_argument(
                flag,
                type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
                default=value,
                help="comma-separated",
            )
        elif value is None:
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    return PretrainConfig(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: progress on stderr, the summary on stdout."""
    from codehone.core.errors import CodehoneError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    config = _parse_args(argv)
    try:
        model_dir = pretrain(config)
    except CodehoneError as exc:
        print(f"codehone: {exc}", file=sys.stderr)
        return 1
    print(format_summary(model_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
