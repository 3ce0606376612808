"""`codehone bench engine`: codehone's decode engine against the usual runtimes, side by side.

Why it exists: latency claims only mean something when measured in one process, in one run,
on the same prompts, against the runtimes people would otherwise use, with the output checked
at the same time. The contenders:

- ``hf-eager``: Hugging Face transformers' PyTorch ``generate`` (eager attention; fp16 on
  CUDA). Its greedy tokens are the reference the others are checked against;
- ``optimum``: optimum's ``ORTModelForCausalLM`` on the exported graph (CUDA provider with IO
  binding on the GPU);
- ``codehone-export``: codehone's engine on that same exported graph;
- ``codehone``: codehone's engine on its fused graph (``codehone_training.export.fused_graph``);
- ``codehone+graph`` (CUDA): the same, with the decode step captured as a CUDA graph;
- ``codehone+spec``: the fused graph with prompt-lookup speculation (exact greedy output).

Checkpoints have random weights (``codehone_training.random_models``): speed does not depend on the
weights' values. They are built, exported and fused once into a cache directory.

Per contender and prompt length it reports the time to first token (median wall time of a
one-token request), the decode time per token ((time of N tokens - time of 1) / (N - 1)),
tokens/s, the time ratios codehone/HF and codehone/optimum (below 1 is faster), and how many of
the N greedy tokens differ from PyTorch's. The ``typing`` row is codehone's time to first
token when the prompt shares all but its last 1-8 tokens with the previous request.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("codehone.bench")

ALL_CONTENDERS = (
    "hf-eager",
    "optimum",
    "codehone-export",
    "codehone",
    "codehone+graph",
    "codehone+spec",
)
# Draft tokens per step of the codehone+spec contender (the engine's own default drafts none).
BENCH_DRAFT_TOKENS = 6


def _shapes(device: str) -> dict[str, Any]:
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
    return list(_shapes(device))[:2]


@dataclass
class Row:
    """One contender on one prompt length (times in milliseconds)."""

    shape: str
    prompt_tokens: int
    contender: str
    ttft_ms: float | None = None
    ms_per_token: float | None = None
    tokens: list[int] = field(default_factory=list)
    mismatches: int | None = None  # greedy tokens that differ from hf-eager's
    first_mismatch: int | None = None
    note: str = ""
    error: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return 1000.0 / self.ms_per_token if self.ms_per_token else None


@dataclass
class BenchConfig:
    device: str = "cuda"
    shapes: list[str] = field(default_factory=list)
    prompt_lengths: list[int] = field(default_factory=lambda: [512, 1500])
    new_tokens: int = 48
    repeats: int = 5
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "codehone" / "bench")
    contenders: list[str] = field(default_factory=list)  # default: all for the device
    draft_tokens: int = BENCH_DRAFT_TOKENS
    json_path: Path | None = None
    threads: int | None = None  # CPU threads for every contender (default: each library's)


# ---------------------------------------------------------------------------------------------
# Models: random checkpoint -> export -> fused graph, cached
# ---------------------------------------------------------------------------------------------


@dataclass
class ContenderModels:
    """One shape's models every contender runs: the checkpoint, its export, its fused graph."""

    name: str
    checkpoint: Path
    exported: Path
    fused: Path | None
    fused_error: str = ""


def _tokenizer_texts() -> list[str]:
    """Text to train the random models' tokenizer on: codehone's own sources."""
    import codehone
    from codehone_training.data.tokenizer_train import iter_file_texts

    server = Path(codehone.__file__).resolve().parents[1]
    files = sorted(server.rglob("*.py")) + sorted((server.parent / "training").rglob("*.py"))
    return list(iter_file_texts(files))


def build_contender_models(
    name: str, shape: Any, config: BenchConfig, out: TextIO
) -> ContenderModels:
    """Build (once) the checkpoint, its export and its fused graph for this device."""
    from codehone_training.export.checkpoint import export_checkpoint
    from codehone_training.random_models import build_random_checkpoint

    dtype = "fp16" if config.device == "cuda" else "fp32"
    base = config.cache_dir / name
    checkpoint = base / "checkpoint"
    if not (checkpoint / "config.json").is_file() or not any(checkpoint.glob("*.safetensors")):
        _say(out, f"# {name}: building a random-weight checkpoint")
        build_random_checkpoint(shape, checkpoint, _tokenizer_texts())
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
            error = _short(exc)
            _say(out, f"# {name}: fused graph failed: {error}")
    return ContenderModels(name, checkpoint, exported, fused if not error else None, error)


_PROMPT_START = 1000  # tokens skipped first: licence headers and imports are not typical code


def bench_prompts(
    checkpoint: Path, lengths: Sequence[int], vocab_limit: int
) -> dict[int, list[int]]:
    """Prompts of exactly the asked lengths: codehone's own source, tokenized (real code, so
    prompt lookup sees the repetition real code has)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ids: list[int] = []
    for text in _tokenizer_texts():
        ids += [t for t in tokenizer.encode(text).ids if t < vocab_limit]
        if len(ids) >= _PROMPT_START + max(lengths):
            break
    return {n: ids[_PROMPT_START : _PROMPT_START + n] for n in lengths}


# ---------------------------------------------------------------------------------------------
# Contenders: each is a function prompt -> (generated ids) with max_new_tokens
# ---------------------------------------------------------------------------------------------

Generate = Callable[[list[int], int], list[int]]


@dataclass
class Contender:
    name: str
    generate: Generate
    sync: Callable[[], None] = lambda: None
    engine: Any = None  # codehone's Engine, for the typing row and notes
    # The last position's logits for a prompt (float32), to tell numerics from bugs.
    last_logits: Callable[[list[int]], Any] | None = None


def _greedy_generate(model: Any, device: str) -> Callable[[list[int], int], list[int]]:
    """Exactly ``n`` greedy tokens from a transformers-style ``generate`` (HF or optimum)."""
    import torch

    def generate(prompt: list[int], n: int) -> list[int]:
        ids = torch.tensor([prompt], device=device)
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                num_beams=1,
            )
        return out[0, len(prompt) :].tolist()

    return generate


def _hf_contender(models: ContenderModels, device: str, threads: int | None) -> Contender:
    import torch
    from transformers import AutoModelForCausalLM

    if threads:
        torch.set_num_threads(threads)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        models.checkpoint, dtype=dtype, attn_implementation="eager", use_safetensors=True
    ).to(device)
    model.eval()
    model.generation_config.eos_token_id = None  # exactly N greedy tokens
    model.generation_config.pad_token_id = 0

    generate = _greedy_generate(model, device)

    def last_logits(prompt: list[int]) -> Any:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prompt], device=device))
        return out.logits[0, -1].float().cpu().numpy()

    return Contender("hf-eager", generate, _torch_sync(device), last_logits=last_logits)


def _optimum_contender(models: ContenderModels, device: str, threads: int | None) -> Contender:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    model = ORTModelForCausalLM.from_pretrained(
        models.exported,
        provider=provider,
        use_io_binding=device == "cuda",
        session_options=options,
    )
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    generate = _greedy_generate(model, device)

    return Contender("optimum", generate, _torch_sync(device))


def _codehone_contender(
    name: str,
    model_dir: Path,
    device: str,
    *,
    draft_tokens: int = 0,
    cuda_graph: bool = False,
    threads: int | None = None,
) -> Contender:
    from codehone.core.engine.protocol import StopConditions
    from codehone.core.engine.session import Engine
    from codehone.core.model_dir import load_model_dir
    from codehone.core.providers import choose_provider

    engine = Engine(
        load_model_dir(model_dir),
        choose_provider("cuda" if device == "cuda" else "cpu"),
        draft_tokens=draft_tokens,
        cuda_graph=cuda_graph,
        threads=threads,
    )
    if cuda_graph and not engine.cuda_graph:
        raise RuntimeError("CUDA graphs are not available for this model/provider")

    def generate(prompt: list[int], n: int) -> list[int]:
        engine.reset_prefix_cache()  # cold requests: no reuse from the previous run
        return engine.generate(prompt, StopConditions(max_new_tokens=n)).token_ids

    def last_logits(prompt: list[int]) -> Any:
        return engine.forward(prompt, engine.empty_cache())[0]

    return Contender(name, generate, engine=engine, last_logits=last_logits)


def _torch_sync(device: str) -> Callable[[], None]:
    if device != "cuda":
        return lambda: None
    import torch

    return torch.cuda.synchronize


def _make_contender(name: str, models: ContenderModels, config: BenchConfig) -> Contender:
    device, threads = config.device, config.threads
    if name == "hf-eager":
        return _hf_contender(models, device, threads)
    if name == "optimum":
        return _optimum_contender(models, device, threads)
    if name == "codehone-export":
        return _codehone_contender(name, models.exported, device, threads=threads)
    if models.fused is None:
        raise RuntimeError(f"no fused graph ({models.fused_error})")
    if name == "codehone":
        return _codehone_contender(name, models.fused, device, threads=threads)
    if name == "codehone+graph":
        if device != "cuda":
            raise RuntimeError("CUDA graphs need --device cuda")
        return _codehone_contender(name, models.fused, device, cuda_graph=True)
    if name == "codehone+spec":
        return _codehone_contender(
            name, models.fused, device, draft_tokens=config.draft_tokens, threads=threads
        )
    raise ValueError(f"unknown contender {name!r}")


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def _timed(contender: Contender, prompt: list[int], n: int) -> tuple[float, list[int]]:
    contender.sync()
    started = time.perf_counter()
    tokens = contender.generate(prompt, n)
    contender.sync()
    return (time.perf_counter() - started) * 1000, tokens


def measure(contender: Contender, shape: str, prompt: list[int], config: BenchConfig) -> Row:
    """Time to first token and per-token decode time (medians of ``repeats``)."""
    n = config.new_tokens
    engine = contender.engine
    before = (0, 0)
    if engine is not None:
        before = (engine.speculation_stats.accepted_tokens, engine.speculation_stats.drafted_tokens)
    _timed(contender, prompt, 2)  # warm-up: kernels, allocator, CUDA graph capture
    _timed(contender, prompt, n)
    first = [_timed(contender, prompt, 1)[0] for _ in range(config.repeats)]
    full: list[float] = []
    tokens: list[int] = []
    for _ in range(config.repeats):
        ms, tokens = _timed(contender, prompt, n)
        full.append(ms)
    ttft = statistics.median(first)
    per_token = (statistics.median(full) - ttft) / max(1, n - 1)
    row = Row(shape, len(prompt), contender.name, ttft, per_token, tokens)
    if engine is not None and engine.draft_tokens:
        stats = engine.speculation_stats
        accepted, drafted = stats.accepted_tokens - before[0], stats.drafted_tokens - before[1]
        row.note = f"drafts accepted {accepted}/{drafted}"
    return row


def measure_typing(contender: Contender, shape: str, prompt: list[int], config: BenchConfig) -> Row:
    """codehone's time to first token when the new prompt shares all but its last 1-8 tokens
    with the previous request (prefix reuse)."""
    from codehone.core.engine.protocol import StopConditions

    engine = contender.engine
    vocab = engine.manifest.vocab_size
    times: list[float] = []
    new_tokens: list[int] = []
    reused: list[int] = []
    for r in range(max(config.repeats, 8)):
        engine.reset_prefix_cache()
        engine.generate(prompt, StopConditions(max_new_tokens=config.new_tokens))
        changed = 1 + r % 8  # the user edits the last 1-8 tokens
        typed = [*prompt[:-changed], *[(t * 7 + r) % vocab for t in prompt[-changed:]]]
        started = time.perf_counter()
        result = engine.generate(typed, StopConditions(max_new_tokens=1))
        times.append((time.perf_counter() - started) * 1000)
        new_tokens.append(len(typed) - result.reused_tokens)
        reused.append(result.reused_tokens)
    return Row(
        shape,
        len(prompt),
        f"{contender.name} typing",
        ttft_ms=statistics.median(times),
        note=f"prefilled {min(new_tokens)}-{max(new_tokens)} tokens, reused {min(reused)}",
    )


def memcpy_nodes(model_dir: Path, device: str) -> str:
    """How many host<->device copies ONNX Runtime inserted into the optimized graph (the
    fused decode step should have none), read back from the optimized model it saves."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from codehone.core.model_dir import load_model_dir

    if device != "cuda":
        return "n/a on the CPU"
    model = load_model_dir(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "optimized.onnx.data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        ort.InferenceSession(
            str(model.model_path),
            options,
            providers=[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
        )
        graph = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    copies = sum(op.startswith("Memcpy") for op in ops)
    return f"{copies} memcpy nodes among {len(ops)} nodes after optimization"


def _compare_logits(
    row: Row, contender: Contender, prompt: list[int], reference: dict[int, Any], length: int
) -> None:
    """Note how far the last position's logits are from PyTorch's (hf-eager's are kept)."""
    import numpy as np

    try:
        assert contender.last_logits is not None
        logits = np.asarray(contender.last_logits(prompt), dtype=np.float32)
    except Exception as exc:
        row.note = f"{row.note} logits failed: {_short(exc)}".strip()
        return
    if row.contender == "hf-eager":
        reference[length] = logits
        return
    if length in reference:
        ref = reference[length]
        diff = float(np.max(np.abs(logits - ref)))
        scale = max(1.0, float(np.max(np.abs(ref))))
        top = "same" if int(np.argmax(logits)) == int(np.argmax(ref)) else "differs"
        row.note = f"{row.note} max|dlogit| {diff:.3g} of {scale:.3g}, top-1 {top}".strip()


def _compare(row: Row, reference: list[int] | None) -> None:
    if reference is None or not row.tokens:
        return
    pairs = list(zip(row.tokens, reference, strict=False))
    row.mismatches = sum(a != b for a, b in pairs) + abs(len(row.tokens) - len(reference))
    row.first_mismatch = next((i for i, (a, b) in enumerate(pairs) if a != b), None)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

_HEADER = (
    f"{'shape':<20} {'prompt':>6} {'contender':<24} {'TTFT ms':>9} {'ms/token':>9} "
    f"{'tok/s':>8} {'t/HF':>6} {'t/ORT':>6} {'TTFT/HF':>7} {'TTFT/ORT':>8} {'greedy != HF':>13}  note"
)


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return format(value, spec) if value is not None else "-".rjust(width)


def format_row(row: Row, hf: Row | None, ort_row: Row | None) -> str:
    def ratio(mine: float | None, base: Row | None, attr: str) -> str:
        theirs = getattr(base, attr) if base is not None else None
        if mine is None or not theirs or not row.contender.startswith("codehone"):
            return "-"
        return f"{mine / theirs:.2f}"

    if row.error:
        return f"{row.shape:<20} {row.prompt_tokens:>6} {row.contender:<24} failed: {row.error}"
    if row.mismatches is None:
        mismatch = "-"
    elif row.mismatches == 0:
        mismatch = "0"
    else:
        mismatch = f"{row.mismatches} @{row.first_mismatch}"
    return (
        f"{row.shape:<20} {row.prompt_tokens:>6} {row.contender:<24} "
        f"{_fmt(row.ttft_ms, '9.2f')} {_fmt(row.ms_per_token, '9.3f')} "
        f"{_fmt(row.tokens_per_s, '8.0f')} "
        f"{ratio(row.ms_per_token, hf, 'ms_per_token'):>6} "
        f"{ratio(row.ms_per_token, ort_row, 'ms_per_token'):>6} "
        f"{ratio(row.ttft_ms, hf, 'ttft_ms'):>7} {ratio(row.ttft_ms, ort_row, 'ttft_ms'):>8} "
        f"{mismatch:>13}  {row.note}"
    )


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text[:300]


def _environment(device: str) -> list[str]:
    import onnxruntime as ort
    import torch

    lines = [
        f"# python {sys.version.split()[0]}, onnxruntime {ort.__version__} "
        f"({', '.join(ort.get_available_providers())}), torch {torch.__version__}"
    ]
    if device == "cuda":
        lines.append(f"# device: {torch.cuda.get_device_name(0)}")
    else:
        import os

        lines.append(f"# device: CPU, {os.cpu_count()} logical cores")
    with contextlib.suppress(Exception):
        import optimum.version
        import transformers

        lines.append(
            f"# transformers {transformers.__version__}, optimum {optimum.version.__version__}"
        )
    return lines


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep library warnings (tracer, deprecation) out of the table."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def run_bench(config: BenchConfig, out: TextIO = sys.stdout) -> list[Row]:
    """Run every contender on every shape and prompt length; print rows as they come."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    shapes = _shapes(config.device)
    names = config.shapes or default_shapes(config.device)
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; known: {', '.join(shapes)}")
    for line in _environment(config.device):
        _say(out, line)
    threads = f"{config.threads} CPU thread(s) per contender; " if config.threads else ""
    _say(
        out,
        f"# batch 1, greedy, {config.new_tokens} new tokens, medians of {config.repeats}; "
        f"{threads}"
        "t/X = codehone time / X time (below 1: codehone is faster); "
        "greedy != HF: tokens differing from PyTorch's (@ first position)",
    )
    if not config.contenders:
        config.contenders = [
            c for c in ALL_CONTENDERS if config.device == "cuda" or c != "codehone+graph"
        ]
    rows: list[Row] = []
    for name in names:
        with _quiet():
            try:
                models = build_contender_models(name, shapes[name], config, out)
            except Exception as exc:
                _say(out, f"# {name}: building the models failed: {_short(exc)}")
                log.debug("building the models failed", exc_info=True)
                continue
            vocab = min(shapes[name].vocab_size, 4096)
            prompts = bench_prompts(models.checkpoint, config.prompt_lengths, vocab)
            rows += _bench_shape(name, models, prompts, config, out)
            _free(config.device)
    _say(out, "")
    for line in _goals(rows, config):
        _say(out, line)
    if config.json_path is not None:
        config.json_path.write_text(
            json.dumps([asdict(r) for r in rows], indent=1) + "\n", encoding="utf-8"
        )
    return rows


def _bench_shape(
    name: str,
    models: ContenderModels,
    prompts: dict[int, list[int]],
    config: BenchConfig,
    out: TextIO,
) -> list[Row]:
    _say(out, "")
    _say(out, _HEADER)
    rows: list[Row] = []
    by_length: dict[int, dict[str, Row]] = {n: {} for n in prompts}
    reference_logits: dict[int, Any] = {}
    for contender_name in config.contenders:
        try:
            contender = _make_contender(contender_name, models, config)
        except Exception as exc:
            for length in prompts:
                row = Row(name, length, contender_name, error=_short(exc))
                rows.append(row)
                _say(out, format_row(row, None, None))
            log.debug("contender failed", exc_info=True)
            continue
        if contender_name == "codehone" and config.device == "cuda":
            try:
                assert models.fused is not None
                _say(out, f"# {contender_name}: {memcpy_nodes(models.fused, config.device)}")
            except Exception as exc:
                _say(out, f"# {contender_name}: could not count memcpy nodes: {_short(exc)}")
        try:
            for length, prompt in prompts.items():
                done = by_length[length]
                try:
                    row = measure(contender, name, prompt, config)
                except Exception as exc:
                    row = Row(name, length, contender_name, error=_short(exc))
                    log.debug("%s", traceback.format_exc())
                reference = done.get("hf-eager")
                _compare(row, reference.tokens if reference else None)
                if contender.last_logits is not None and not row.error:
                    _compare_logits(row, contender, prompt, reference_logits, length)
                done[contender_name] = row
                rows.append(row)
                _say(out, format_row(row, done.get("hf-eager"), done.get("optimum")))
                if contender.engine is not None and contender_name == "codehone" and not row.error:
                    try:
                        typing_row = measure_typing(contender, name, prompt, config)
                    except Exception as exc:
                        typing_row = Row(name, length, "codehone typing", error=_short(exc))
                    rows.append(typing_row)
                    _say(out, format_row(typing_row, done.get("hf-eager"), done.get("optimum")))
        finally:
            del contender  # free the model before loading the next contender
            _free(config.device)
    return rows


def _goals(rows: Sequence[Row], config: BenchConfig) -> list[str]:
    """The issue's targets (H100, fp16), checked against the best codehone rows."""
    if config.device != "cuda":
        return ["# goals are stated for the H100 (fp16); not checked on the CPU"]
    lines = ["# goals (H100, fp16):"]
    limits = {"gpt2-124m": 1.0, "qwen2.5-coder-0.5b": 2.0}
    for shape, limit in limits.items():
        best = [
            r.ms_per_token
            for r in rows
            if r.shape == shape
            and r.contender.startswith("codehone")
            and r.ms_per_token
            and "typing" not in r.contender
        ]
        if best:
            verdict = "met" if min(best) <= limit else "NOT met"
            lines.append(f"#   {shape}: per-token {min(best):.3f} ms (goal <= {limit}): {verdict}")
    for what, limit, match in (
        ("TTFT, 512-token prompt", 5.0, lambda r: r.contender in ("codehone", "codehone+graph")),
        ("TTFT, typing", 2.0, lambda r: r.contender.endswith("typing")),
    ):
        for shape in limits:
            best = [
                r.ttft_ms
                for r in rows
                if r.shape == shape and r.prompt_tokens == 512 and match(r) and r.ttft_ms
            ]
            if best:
                verdict = "met" if min(best) <= limit else "NOT met"
                lines.append(f"#   {shape}: {what} {min(best):.2f} ms (goal <= {limit}): {verdict}")
    return lines
