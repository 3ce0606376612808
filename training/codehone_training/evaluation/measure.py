"""What an optimization buys and costs: ``codehone optimize measure``.

Each model directory is run on the CPU on the same held-out text (this Python's standard
library by default, tokenized with the first model's tokenizer): speed (ms per generated token,
prefill) and quality against the first model, the reference (mean next-token loss, greedy
tokens and teacher-forced arg-max that agree with the reference's). Weight-only quantization is
why it exists: its logits are meant to differ, so it is measured instead of verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codehone.core.errors import CodehoneError
from codehone.core.model_dir import ModelDir, load_model_dir
from codehone_training.evaluation.metrics import log_softmax


@dataclass
class Measurement:
    name: str
    size_mb: float
    ms_per_token: float
    prefill_ms: float
    loss: float  # mean next-token cross-entropy (nats) on the evaluation windows
    greedy_agreement: float  # fraction of greedy tokens equal to the reference model's
    top1_agreement: float  # teacher-forced: fraction of positions with the same arg-max


def _model_size_mb(model_dir: ModelDir) -> float:
    return sum(p.stat().st_size for p in model_dir.root.glob("model.onnx*")) / 1e6


def evaluation_windows(
    model_dir: ModelDir, files: Sequence[Path], count: int, length: int
) -> list[list[int]]:
    """Token windows of held-out text, tokenized with the model's own tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir.tokenizer_path))
    windows: list[list[int]] = []
    for path in files:
        try:
            ids = tokenizer.encode(path.read_text(encoding="utf-8")).ids
        except (OSError, UnicodeDecodeError):
            continue
        for start in range(0, len(ids) - length, length):
            windows.append(ids[start : start + length])
            if len(windows) >= count:
                return windows
    return windows


def measure(
    model_dirs: Sequence[Path],
    files: Sequence[Path],
    *,
    windows: int = 16,
    window_length: int = 128,
    new_tokens: int = 32,
    threads: int | None = None,
) -> list[Measurement]:
    """Speed and quality of each model on the CPU; the first one is the reference."""
    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    provider = choose_provider("cpu")
    loaded = [load_model_dir(d) for d in model_dirs]
    length = min(window_length, loaded[0].manifest.context_length - new_tokens - 1)
    evals = evaluation_windows(loaded[0], files, windows, length)
    if not evals:
        raise CodehoneError("no evaluation text long enough")
    results: list[Measurement] = []
    reference_greedy: list[list[int]] = []
    reference_top1: list[np.ndarray] = []
    for index, model_dir in enumerate(loaded):
        engine = Engine(model_dir, provider, threads=threads)
        losses: list[float] = []
        top1: list[np.ndarray] = []
        for ids in evals:
            logits, _ = engine.forward(ids, engine.empty_cache(), all_logits=True)
            logprobs = log_softmax(logits[:-1])
            losses.append(float(-logprobs[np.arange(len(ids) - 1), ids[1:]].mean()))
            top1.append(np.argmax(logits, axis=-1))
        greedy: list[list[int]] = []
        per_token: list[float] = []
        prefill: list[float] = []
        for ids in evals:
            engine.reset_prefix_cache()
            result = engine.generate(ids, StopConditions(max_new_tokens=new_tokens))
            greedy.append(result.token_ids)
            per_token.append(result.ms_per_token)
            prefill.append(result.prefill_ms)
        if index == 0:
            reference_greedy, reference_top1 = greedy, top1
        same = sum(
            sum(a == b for a, b in zip(g, r, strict=False))
            for g, r in zip(greedy, reference_greedy, strict=True)
        )
        total = sum(len(r) for r in reference_greedy) or 1
        top1_same = sum(int((a == b).sum()) for a, b in zip(top1, reference_top1, strict=True))
        top1_total = sum(len(r) for r in reference_top1)
        results.append(
            Measurement(
                name=model_dir.root.name,
                size_mb=_model_size_mb(model_dir),
                ms_per_token=float(np.median(per_token)),
                prefill_ms=float(np.median(prefill)),
                loss=float(np.mean(losses)),
                greedy_agreement=same / total,
                top1_agreement=top1_same / top1_total,
            )
        )
    return results


def format_measurements(results: Sequence[Measurement]) -> str:
    base = results[0]
    lines = [
        f"{'model':<28} {'MB':>7} {'ms/token':>9} {'x':>5} {'prefill ms':>10} "
        f"{'loss':>7} {'dloss':>7} {'greedy=':>8} {'top1=':>7}"
    ]
    for r in results:
        lines.append(
            f"{r.name:<28} {r.size_mb:>7.1f} {r.ms_per_token:>9.3f} "
            f"{base.ms_per_token / r.ms_per_token:>5.2f} {r.prefill_ms:>10.2f} {r.loss:>7.4f} "
            f"{r.loss - base.loss:>+7.4f} {r.greedy_agreement:>8.1%} {r.top1_agreement:>7.1%}"
        )
    return "\n".join(lines)


def default_eval_files() -> list[Path]:
    """Held-out text for ``measure``: this Python's standard library, in a fixed order."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("[n-z]*.py"))
