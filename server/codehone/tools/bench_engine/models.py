"""What the contenders run on: the models and the prompts.

Two ways to get models. With ``--model DIR`` (real weights), the model directories are given
(and the GGUF files of the same weights, for llama.cpp); the PyTorch reference is the
checkpoint the first directory was exported from. Without, random-weight checkpoints of a few
shapes (``codehone_training.random_models``: speed does not depend on the weights' values) are
built, exported and fused once into a cache directory.

Prompts are real code, tokenized once and fed as the same token ids to every contender: a file
of a package installed in the virtualenv for a real model, codehone's own sources for the
random models (whose tokenizer was trained on them).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from codehone.tools.bench_engine.config import MAX_TYPED_TOKENS, BenchConfig

# Tokens skipped first (at most): licence headers and imports are not typical code.
_PROMPT_START = 1000
# The real-model prompt's default source: a module of a package codehone depends on.
DEFAULT_PROMPT_MODULE = "pathspec.pathspec"


def shapes(device: str) -> dict[str, Any]:
    """The random-weight shapes known on ``device``, by name."""
    from codehone_training.random_models import GPT2_124M, QWEN25_CODER_05B, Shape

    if device == "cuda":
        return {"gpt2-124m": GPT2_124M, "qwen2.5-coder-0.5b": QWEN25_CODER_05B}
    return {
        # Small enough for a laptop CPU, with the families' real structure.
        "gpt2-small": Shape("gpt2", 4, 256, 4, 4, 1024, 8192, 2048),
        "qwen2-small": Shape("qwen2", 4, 256, 4, 2, 768, 16384, 2048),
        # The real shapes are accepted on the CPU too (slow).
        "gpt2-124m": GPT2_124M,
        "qwen2.5-coder-0.5b": QWEN25_CODER_05B,
    }


def default_shapes(device: str) -> list[str]:
    return list(shapes(device))[:2]


@dataclass
class ShapeModels:
    """One shape's models every contender runs: the checkpoint, its export, its fused graph."""

    name: str
    checkpoint: Path
    exported: Path
    fused: Path | None
    fused_error: str = ""


def _codehone_texts() -> list[str]:
    """Text to train the random models' tokenizer on (and their prompts): codehone's sources."""
    import codehone
    from codehone_training.data.tokenizer_train import iter_file_texts

    server = Path(codehone.__file__).resolve().parents[1]
    files = sorted(server.rglob("*.py")) + sorted((server.parent / "training").rglob("*.py"))
    return list(iter_file_texts(files))


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def build_shape_models(name: str, shape: Any, config: BenchConfig, out: TextIO) -> ShapeModels:
    """Build (once) the checkpoint, its export and its fused graph for this device."""
    from codehone_training.export.checkpoint import export_checkpoint
    from codehone_training.random_models import build_random_checkpoint

    dtype = "fp16" if config.device == "cuda" else "fp32"
    base = config.cache_dir / name
    checkpoint = base / "checkpoint"
    if not (checkpoint / "config.json").is_file() or not any(checkpoint.glob("*.safetensors")):
        _say(out, f"# {name}: building a random-weight checkpoint")
        build_random_checkpoint(shape, checkpoint, _codehone_texts())
    exported = base / f"export-{config.device}-{dtype}"
    if not (exported / "codehone.json").is_file():
        _say(out, f"# {name}: exporting with optimum ({dtype} on {config.device})")
        started = time.monotonic()
        export_checkpoint(checkpoint, exported, device=config.device, dtype=dtype, verify=False)
        _say(out, f"# {name}: exported in {time.monotonic() - started:.0f} s")
    fused = base / f"fused-{config.device}-{dtype}"
    error = ""
    if not (fused / "codehone.json").is_file():
        from codehone_training.export.optimize import fuse

        _say(out, f"# {name}: building the fused graph")
        try:
            fuse(exported, fused, dtype=dtype, checkpoint=checkpoint, verify=False)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            _say(out, f"# {name}: fused graph failed: {error}")
    return ShapeModels(name, checkpoint, exported, fused if not error else None, error)


@dataclass
class Prompts:
    """The prompts of each length, and the code that follows each (what the user types next)."""

    source: str  # where the code came from
    by_length: dict[int, list[int]]
    following: dict[int, list[int]]

    def typed(self, length: int, count: int) -> list[int]:
        """The prompt of ``length`` with the next ``count`` tokens of the code typed after it."""
        return [*self.by_length[length], *self.following[length][:count]]


def cut_prompts(ids: Sequence[int], lengths: Sequence[int], source: str) -> Prompts:
    """Prompts of exactly the asked lengths from one token sequence, all starting at the same
    place (up to ``_PROMPT_START`` tokens in, as far as the sequence allows)."""
    needed = max(lengths) + MAX_TYPED_TOKENS
    if len(ids) < needed:
        raise ValueError(f"{source} has {len(ids)} tokens; prompts of {max(lengths)} need {needed}")
    start = min(_PROMPT_START, len(ids) - needed)
    by_length = {n: list(ids[start : start + n]) for n in lengths}
    following = {n: list(ids[start + n : start + n + MAX_TYPED_TOKENS]) for n in lengths}
    return Prompts(source, by_length, following)


def shape_prompts(checkpoint: Path, lengths: Sequence[int], vocab_limit: int) -> Prompts:
    """A random model's prompts: codehone's own source, tokenized (real code, so prompt lookup
    sees the repetition real code has)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ids: list[int] = []
    for text in _codehone_texts():
        ids += [t for t in tokenizer.encode(text).ids if t < vocab_limit]
        if len(ids) >= _PROMPT_START + max(lengths) + MAX_TYPED_TOKENS:
            break
    return cut_prompts(ids, lengths, "codehone's own sources")


def default_prompt_file() -> Path:
    """The real-model prompts' default source file (a package installed with codehone)."""
    spec = importlib.util.find_spec(DEFAULT_PROMPT_MODULE)
    if spec is None or spec.origin is None:
        raise ValueError(f"{DEFAULT_PROMPT_MODULE} is not installed; pass --prompt-file")
    return Path(spec.origin)


def model_prompts(
    tokenizer_paths: Sequence[Path], prompt_file: Path, lengths: Sequence[int]
) -> Prompts:
    """Real-model prompts cut from ``prompt_file``, tokenized by the models' tokenizer, which
    every model directory must share (the same ids go to every contender)."""
    from tokenizers import Tokenizer

    try:
        text = prompt_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{prompt_file}: cannot read it: {exc}") from None
    encodings = {path: Tokenizer.from_file(str(path)).encode(text).ids for path in tokenizer_paths}
    first, *others = tokenizer_paths
    for other in others:
        if encodings[other] != encodings[first]:
            raise ValueError(
                f"{other.parent} and {first.parent} tokenize differently; "
                "benchmark models of the same weights"
            )
    return cut_prompts(encodings[first], lengths, str(prompt_file))
