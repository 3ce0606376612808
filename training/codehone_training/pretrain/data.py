"""Steps 1-3 of pretraining, and its fill-in-the-middle samples: the corpus, the held-out
files, the tokenizer, one token stream per split, the windows training and validation read,
and the FIM rearrangement of those windows.

The FIM layout is ``codehone.core.fim``'s (through ``codehone_training.data.packing``'s
``fim_sample``), the one the server prompts with; what is particular to pretraining is the
cutting (two random characters, StarCoder's; or a line-completion shape) and that a sample
replaces its chunk in place, at the same length, so that windows stay rectangular.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codehone.core.errors import TrainingError
from codehone.core.model_dir import FimTokens, detect_fim_tokens
from codehone_training.data.corpus import package_dirs, stdlib_dir
from codehone_training.data.packing import fim_sample
from codehone_training.pretrain.config import PretrainConfig

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A file chunk shorter than this (in tokens) is never turned into a FIM sample.
MIN_FIM_SEGMENT_TOKENS = 16
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class TokenizedCorpus:
    """The corpus as training reads it: its tokenizer, special tokens and two streams."""

    tokenizer: Tokenizer
    fim: FimTokens
    eos_id: int
    train: np.ndarray
    validation: np.ndarray


# --------------------------------------------------------------------------------------------
# 1. The corpus, split by file
# --------------------------------------------------------------------------------------------


def corpus_roots(config: PretrainConfig) -> tuple[list[Path], dict[Path, int]]:
    """The directories to collect from, and the size cap of each package among them."""
    roots = list(config.corpus_dirs) if config.corpus_dirs else [stdlib_dir()]
    roots += list(config.extra_corpus_dirs)
    packages = package_dirs(config.packages, exclude=config.exclude_packages)
    return roots + packages, {p: config.package_max_bytes for p in packages}


def hold_out_files(
    files: Sequence[Path], val_fraction: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """(train, validation): whole files held out for validation, a seeded choice.

    Not the fine-tuning data set's split (``data.project.split_files``): that one also holds
    out test files and hashes project-relative paths; this one draws from a seeded
    permutation, which is what every pretrained model so far was trained with."""
    if len(files) < 2 or val_fraction <= 0:
        return list(files), []
    n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(files))
    val_idx = set(order[:n_val].tolist())
    train = [f for i, f in enumerate(files) if i not in val_idx]
    val = [f for i, f in enumerate(files) if i in val_idx]
    return train, val


def read_texts(files: Sequence[Path]) -> list[str]:
    texts: list[str] = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError(f"cannot read corpus file {path}: {exc}") from None
    return texts


# --------------------------------------------------------------------------------------------
# 2. The tokenizer
# --------------------------------------------------------------------------------------------


def tokenizer_texts(texts: Sequence[str], max_chars: int) -> list[str]:
    """About ``max_chars`` of ``texts`` for the BPE to learn from (every k-th file, so the
    whole corpus is represented), or all of them when they are no more than that. Learning
    the merges from a sample costs minutes less on a big corpus and changes them little."""
    total = sum(map(len, texts))
    if max_chars <= 0 or total <= max_chars:
        return list(texts)
    return list(texts[:: math.ceil(total / max_chars)])


def copy_tokenizer(source: Path, checkpoint: Path) -> Path:
    """Copy a checkpoint's tokenizer files into ``checkpoint``; return its tokenizer.json."""
    if not (source / "tokenizer.json").is_file():
        raise TrainingError(f"{source}: no tokenizer.json to continue training with")
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, checkpoint / name)
    return checkpoint / "tokenizer.json"


def fim_tokens_of(tokenizer: Tokenizer) -> FimTokens:
    """The tokenizer's fill-in-the-middle tokens (codehone's own are StarCoder's)."""
    fim = detect_fim_tokens(tokenizer.get_vocab())
    if fim is None:
        raise TrainingError("the tokenizer has no fill-in-the-middle tokens")
    return fim


# --------------------------------------------------------------------------------------------
# 3. Token streams and the windows cut from them
# --------------------------------------------------------------------------------------------


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


def fim_in_place(
    prefix: list[int],
    middle: list[int],
    suffix: list[int],
    fim: FimTokens,
    target_len: int,
    tail: list[int],
) -> list[int] | None:
    """A PSM sample of exactly ``target_len`` tokens to replace its chunk, or None if it
    cannot be made that long.

    The middle always ends the sample (followed by ``tail``, the EOS when the chunk ended a
    file), so the model learns to stop after the middle. The special tokens make the sample
    longer than the chunk it came from; ``fim_sample`` cuts the suffix from its end and, if
    that is not enough, the prefix from its start, as the server cuts a long prompt. A sample
    that comes out shorter (re-tokenized pieces can be) cannot be padded inside a window.
    """
    extra = 3 + len(prefix) + len(suffix) + len(middle) + len(tail) - target_len
    if extra < 0 or extra > len(suffix) + len(prefix):
        return None
    return fim_sample(prefix, middle, suffix, fim, "psm", target_len, tail)


def apply_fim(
    windows: np.ndarray,
    tokenizer: Tokenizer,
    fim: FimTokens,
    eos_id: int,
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
        eos_at = np.flatnonzero(windows[row] == eos_id).tolist()
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
        tail = [eos_id] if add_eos else []
        sample = fim_in_place(prefix, middle, suffix, fim, end - start, tail)
        if sample is not None:
            out[row, start:end] = sample
    return out
