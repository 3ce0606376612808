"""What a run of ``codehone bench engine`` is made of: its settings, the contenders it runs
(each a spec a worker process can load), and the rows it reports.

A contender's *width* is the bit width of its weights (``fp32``, ``fp16``, ``int8``, ``int4``
for codehone; the GGUF type, ``Q4_0``, ``Q8_0``, ``F16`` ..., for llama.cpp); its *class*
(``float``, ``8-bit``, ``4-bit``) is what pairs a codehone row with the llama.cpp rows it is
compared with: int8 with Q8_0, int4 with Q4_0/Q4_1, fp32/fp16 with F32/F16.

A *condition* says how idle threads wait, the same way in both runtimes: ``spin`` (each
library's default: ONNX Runtime's intra-op threads spin before sleeping, llama.cpp's OpenMP
threads spin actively) or ``passive`` (ONNX Runtime ``session.intra_op.allow_spinning`` 0,
``OMP_WAIT_POLICY=PASSIVE``). On a busy machine the two differ a lot, so a run can hold both.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONDITIONS = ("spin", "passive")
# Greedy tokens compared with PyTorch's (of the new tokens each contender generates).
REFERENCE_TOKENS = 32
# Tokens typed after the cached prompt in the typing measurement cycle through 1..this.
MAX_TYPED_TOKENS = 8

_CLASSES = {
    "fp32": "float",
    "fp16": "float",
    "bf16": "float",
    "F32": "float",
    "F16": "float",
    "BF16": "float",
    "int8": "8-bit",
    "int4": "4-bit",
}


def width_class(width: str) -> str:
    """The class a width is compared within (``float``, ``8-bit``, ``4-bit``; a GGUF type
    like ``Q5_K_M`` gets its own, ``5-bit``)."""
    if width in _CLASSES:
        return _CLASSES[width]
    bits = re.match(r"I?Q(\d)", width)
    return f"{bits.group(1)}-bit" if bits else width


def codehone_width(optimizations: list[str], export_dtype: str) -> str:
    """A model directory's weight width, from its manifest: the last ``intN-blockB`` step of
    ``codehone optimize quantize``, else the exported dtype."""
    for step in reversed(optimizations):
        match = re.fullmatch(r"int(\d+)-.*", step)
        if match:
            return f"int{match.group(1)}"
    return export_dtype


class _Described:
    """What a contender and its rows share: a kind and a weight width."""

    kind: str
    width: str

    @property
    def width_class(self) -> str:
        return width_class(self.width)

    @property
    def is_codehone(self) -> bool:
        return self.kind == "codehone"


@dataclass(frozen=True)
class ContenderSpec(_Described):
    """One contender, as a worker process loads it (plain values only: it is sent as JSON).

    ``kind``: codehone | llama.cpp | hf-eager | optimum. ``path``: a model directory, a GGUF
    file or a checkpoint. ``options``: the kind's own (draft_tokens, cuda_graph ...)."""

    name: str
    kind: str
    path: str
    width: str
    device: str = "cpu"
    threads: int | None = None
    condition: str = "spin"
    options: dict[str, Any] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """Variables the worker process starts with (OpenMP's wait policy must be set before
        the library loads, so it is the process's)."""
        if self.kind == "llama.cpp" and self.condition == "passive":
            return {"OMP_WAIT_POLICY": "PASSIVE"}
        return {}


@dataclass
class BenchConfig:
    device: str = "auto"
    shapes: list[str] = field(default_factory=list)  # random-weight shapes (no --model)
    models: list[Path] = field(default_factory=list)  # real model directories
    llama_cpp: list[Path] = field(default_factory=list)  # GGUF files of the same weights
    checkpoint: Path | None = None  # PyTorch reference (default: the first model's)
    prompt_file: Path | None = None  # the code the prompts are cut from
    prompt_lengths: list[int] = field(default_factory=lambda: [512, 1500])
    new_tokens: int = 48
    repeats: int = 5
    # default: both on the CPU with real models (--model), else spin
    conditions: list[str] = field(default_factory=list)
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "codehone" / "bench")
    contenders: list[str] = field(default_factory=list)  # shape mode: default all for the device
    draft_tokens: int | None = None  # codehone+spec (shape mode default BENCH_DRAFT_TOKENS)
    json_path: Path | None = None
    threads: int | None = None  # CPU threads for every contender (default: one per core)

    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass
class Row(_Described):
    """One contender on one prompt length: medians over the run's repeats (milliseconds)."""

    model: str  # the shape or the model the contenders share
    prompt_tokens: int
    contender: str
    kind: str = ""
    width: str = ""
    condition: str = ""
    ttft_ms: float | None = None  # cold prefill + first token
    ms_per_token: float | None = None  # decode, per token after the first
    typing_ms: float | None = None  # first token after 1-8 new tokens on a cached prompt
    rss_mib: float | None = None  # the contender's process, after the runs
    peak_rss_mib: float | None = None
    tokens: list[int] = field(default_factory=list)
    mismatches: int | None = None  # of the first REFERENCE_TOKENS, vs PyTorch's
    first_mismatch: int | None = None
    runs: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)  # every run's figures
    note: str = ""
    error: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return 1000.0 / self.ms_per_token if self.ms_per_token else None
