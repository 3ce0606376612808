"""``run_bench``: from the settings to the printed table, in either of the benchmark's modes.

- real weights (``--model DIR ... --llama-cpp GGUF ...``): codehone on each model directory
  against llama.cpp on each GGUF, in each condition (``config.CONDITIONS``), with PyTorch's
  greedy tokens on the checkpoint the first directory was exported from as the reference;
- random-weight shapes (``--shapes``): codehone against Hugging Face eager and optimum, each
  shape built, exported and fused once into a cache directory.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from codehone.tools.bench_engine import llama_cpp, report
from codehone.tools.bench_engine.config import (
    CONDITIONS,
    MAX_TYPED_TOKENS,
    REFERENCE_TOKENS,
    BenchConfig,
    ContenderSpec,
    Row,
    codehone_width,
)
from codehone.tools.bench_engine.models import (
    ShapeModels,
    build_shape_models,
    default_prompt_file,
    default_shapes,
    model_prompts,
    shape_prompts,
    shapes,
)
from codehone.tools.bench_engine.runner import python_environment, run_contenders

ALL_CONTENDERS = (
    "hf-eager",
    "optimum",
    "codehone-export",
    "codehone",
    "codehone+graph",
    "codehone+spec",
)
# Draft tokens per step of the codehone+spec contender when not told otherwise.
BENCH_DRAFT_TOKENS = 6


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def resolve_device(device: str) -> str:
    """``auto`` is CUDA where it can run, else the CPU."""
    if device != "auto":
        return device
    from codehone.core.providers import cuda_unavailable_reason

    return "cuda" if cuda_unavailable_reason() is None else "cpu"


def _unique(specs: list[ContenderSpec]) -> list[ContenderSpec]:
    """Contender names made unique within a condition (two files of one type, say)."""
    seen: dict[tuple[str, str], int] = {}
    unique = []
    for spec in specs:
        key = (spec.name, spec.condition)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            spec = ContenderSpec(**{**asdict(spec), "name": f"{spec.name} #{seen[key]}"})
        unique.append(spec)
    return unique


# ---------------------------------------------------------------------------------------------
# Real weights
# ---------------------------------------------------------------------------------------------


def llama_context(config: BenchConfig) -> int:
    """llama.cpp's context: the longest prompt, the new tokens and the typed ones, in 256s."""
    needed = max(config.prompt_lengths) + config.new_tokens + MAX_TYPED_TOKENS + 8
    return -(-needed // 256) * 256


def model_specs(config: BenchConfig, device: str) -> list[ContenderSpec]:
    """codehone on each model directory (and with speculation, and CUDA graphs on the GPU),
    llama.cpp on each GGUF, in each condition."""
    from codehone.core.model_dir import load_model_dir

    threads = config.resolved_threads()
    specs: list[ContenderSpec] = []
    for condition in config.conditions:
        for directory in config.models:
            provenance = load_model_dir(directory).manifest.provenance
            width = codehone_width(provenance.optimizations, provenance.export_dtype)
            name = f"codehone {Path(directory).name}"
            variants: list[tuple[str, dict[str, object]]] = [(name, {"draft_tokens": 0})]
            if config.draft_tokens:
                variants.append((name + "+spec", {"draft_tokens": config.draft_tokens}))
            if device == "cuda":
                variants.append((name + "+graph", {"draft_tokens": 0, "cuda_graph": True}))
            specs += [
                ContenderSpec(
                    label, "codehone", str(directory), width, device, threads, condition, options
                )
                for label, options in variants
            ]
        for gguf in config.llama_cpp:
            file_type = llama_cpp.gguf_file_type(gguf)
            specs.append(
                ContenderSpec(
                    f"llama.cpp {file_type}",
                    "llama.cpp",
                    str(gguf),
                    file_type,
                    device,
                    threads,
                    condition,
                    {"n_ctx": llama_context(config)},
                )
            )
    return _unique(specs)


def reference_checkpoint(config: BenchConfig) -> Path | None:
    """The checkpoint PyTorch's reference runs on: the one given, else the first model's."""
    from codehone.core.model_dir import load_model_dir

    if config.checkpoint is not None:
        return config.checkpoint
    base = Path(load_model_dir(config.models[0]).manifest.provenance.base_checkpoint)
    return base if (base / "config.json").is_file() else None


def _check_model_config(config: BenchConfig) -> None:
    """Refuse, in one line and before loading anything, what cannot run."""
    if config.llama_cpp and not config.models:
        raise ValueError("--llama-cpp needs --model: the same token ids go to every contender")
    if config.llama_cpp and not llama_cpp.available():
        raise ValueError(llama_cpp.INSTALL_HINT)
    for gguf in config.llama_cpp:
        llama_cpp.gguf_file_type(gguf)  # a clear error for a file that is not a GGUF
    unknown = [c for c in config.conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")


def _bench_models(config: BenchConfig, device: str, out: TextIO, loads: list[float]) -> list[Row]:
    from codehone.core.model_dir import load_model_dir

    dirs = [load_model_dir(d) for d in config.models]
    prompt_file = config.prompt_file or default_prompt_file()
    prompts = model_prompts([d.tokenizer_path for d in dirs], prompt_file, config.prompt_lengths)
    _say(out, f"# prompts: {prompts.source}, {', '.join(map(str, prompts.by_length))} tokens")
    checkpoint = reference_checkpoint(config)
    reference = None
    if checkpoint is None:
        _say(
            out, "# no checkpoint for the PyTorch reference (--checkpoint): greedy tokens unchecked"
        )
    else:
        _say(out, f"# reference: PyTorch (transformers, eager) on {checkpoint}")
        reference = ContenderSpec(
            "pytorch", "hf-eager", str(checkpoint), "fp32", "cpu", config.resolved_threads()
        )
    specs = model_specs(config, device)
    model = dirs[0].manifest.architecture
    return run_contenders(model, specs, reference, prompts, config, out, loads)


# ---------------------------------------------------------------------------------------------
# Random-weight shapes
# ---------------------------------------------------------------------------------------------


# What each shape-mode contender runs: its kind, the model it takes, its options.
_SHAPE_CONTENDERS: dict[str, tuple[str, str, dict[str, object]]] = {
    "hf-eager": ("hf-eager", "checkpoint", {}),
    "optimum": ("optimum", "exported", {}),
    "codehone-export": ("codehone", "exported", {}),
    "codehone": ("codehone", "fused", {}),
    "codehone+graph": ("codehone", "fused", {"cuda_graph": True}),
    "codehone+spec": ("codehone", "fused", {"draft_tokens": None}),  # None: the run's
}


def shape_specs(
    models: ShapeModels, config: BenchConfig, device: str
) -> tuple[list[ContenderSpec], list[Row]]:
    """The contenders of one shape, and error rows for those that cannot run."""
    dtype = "fp16" if device == "cuda" else "fp32"
    threads = config.resolved_threads()
    draft = config.draft_tokens if config.draft_tokens is not None else BENCH_DRAFT_TOKENS
    paths = {"checkpoint": models.checkpoint, "exported": models.exported, "fused": models.fused}
    specs: list[ContenderSpec] = []
    errors: list[Row] = []
    for condition in config.conditions:
        for name in config.contenders:
            kind, model, options = _SHAPE_CONTENDERS[name]
            path = paths[model]
            error = ""
            if options.get("cuda_graph") and device != "cuda":
                error = "CUDA graphs need --device cuda"
            elif path is None:
                error = f"no fused graph ({models.fused_error})"
            if error:
                errors += [
                    Row(
                        models.name,
                        n,
                        name,
                        kind=kind,
                        width=dtype,
                        condition=condition,
                        error=error,
                    )
                    for n in config.prompt_lengths
                ]
                continue
            options = {k: (draft if v is None else v) for k, v in options.items()}
            specs.append(
                ContenderSpec(name, kind, str(path), dtype, device, threads, condition, options)
            )
    return specs, errors


def _bench_shapes(config: BenchConfig, device: str, out: TextIO, loads: list[float]) -> list[Row]:
    known = shapes(device)
    names = config.shapes or default_shapes(device)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; known: {', '.join(known)}")
    if not config.contenders:
        config.contenders = [c for c in ALL_CONTENDERS if device == "cuda" or c != "codehone+graph"]
    unknown = [c for c in config.contenders if c not in ALL_CONTENDERS]
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; known: {', '.join(ALL_CONTENDERS)}")
    rows: list[Row] = []
    for name in names:
        try:
            models = build_shape_models(name, known[name], config, out)
        except Exception as exc:
            _say(out, f"# {name}: building the models failed: {type(exc).__name__}: {exc}")
            continue
        prompts = shape_prompts(
            models.checkpoint, config.prompt_lengths, min(known[name].vocab_size, 4096)
        )
        specs, errors = shape_specs(models, config, device)
        dtype = "fp16" if device == "cuda" else "fp32"
        reference = ContenderSpec(
            "pytorch", "hf-eager", str(models.checkpoint), dtype, device, config.resolved_threads()
        )
        rows += errors + run_contenders(name, specs, reference, prompts, config, out, loads)
    return rows


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run_bench(config: BenchConfig, out: TextIO = sys.stdout) -> list[Row]:
    """Run every contender on every prompt, interleaved; print the table and the goals."""
    device = resolve_device(config.device)
    real = bool(config.models or config.llama_cpp)
    if not config.conditions:
        config.conditions = list(CONDITIONS) if real and device == "cpu" else ["spin"]
    if real:
        _check_model_config(config)
    environment = python_environment(device)
    for line in environment:
        _say(out, line)
    _say(
        out,
        f"# batch 1, greedy, {config.new_tokens} new tokens, medians of {config.repeats} runs, "
        f"contenders interleaved, each in its own process; {config.resolved_threads()} "
        f"thread(s) each; conditions: {', '.join(config.conditions)}",
    )
    loads: list[float] = []
    if real:
        rows = _bench_models(config, device, out, loads)
    else:
        rows = _bench_shapes(config, device, out, loads)
    _say(out, "")
    _say(
        out,
        "# TTFT: cold prefill + first token; typing: first token after 1-8 new tokens on a "
        "cached prompt; RSS: the contender's process; "
        f"!=PT/{REFERENCE_TOKENS}: of the first {REFERENCE_TOKENS} greedy tokens, how many differ "
        "from PyTorch's (@ the first); x/ll: codehone / llama.cpp's best at the matched width "
        "(vs: that format); t/X: codehone / X (below 1: codehone is faster)",
    )
    for line in report.format_table(rows):
        _say(out, line)
    _say(out, "")
    _say(out, report.load_line(loads))
    for line in report.goal_lines(rows, device):
        _say(out, line)
    if config.json_path is not None:
        payload = {
            "environment": environment,
            "device": device,
            "conditions": config.conditions,
            "load_averages": loads,
            "rows": [asdict(r) for r in rows],
        }
        config.json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return rows
