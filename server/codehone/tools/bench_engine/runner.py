"""The run: which contenders, in which order, and the medians they come to.

Every contender is loaded in its own worker process first (``bench_engine.worker``). Then, for
each repeat and prompt length, every contender in turn serves the same requests: a cold one
(nothing cached: the time to first token, then the decode time per token of the greedy
tokens) and a typing one (the prompt extended by the next 1-8 tokens of the code, right after
the cold one: what a user typing sees). The turn order rotates with each repeat, so on a
shared, noisy machine a burst of load hits every contender alike; figures are medians over the
repeats, and what a run claims is a ratio between contenders of the same run.

Before timing, PyTorch's greedy tokens and last-position logits on the same checkpoint are
taken once per prompt (the reference every contender's output is checked against); after
timing, each worker's resident memory is read and its logits compared with PyTorch's.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from codehone.tools.bench_engine.config import (
    MAX_TYPED_TOKENS,
    REFERENCE_TOKENS,
    BenchConfig,
    ContenderSpec,
    Row,
)
from codehone.tools.bench_engine.models import Prompts
from codehone.tools.bench_engine.worker import Worker, WorkerError, decode_logits

T = TypeVar("T")
# A short pause between two contenders' turns: the last one's idle threads stop spinning.
SETTLE_S = 0.05


def interleaved(items: Sequence[T], repeat: int) -> list[T]:
    """The turn order of ``repeat``: the items rotated by ``repeat``, so over as many repeats
    as items each takes every place once."""
    if not items:
        return []
    shift = repeat % len(items)
    return [*items[shift:], *items[:shift]]


def typed_tokens(repeat: int) -> int:
    """How many tokens are typed after the cached prompt in ``repeat``: 1..MAX_TYPED_TOKENS,
    each once every MAX_TYPED_TOKENS repeats, in a spread order (1, 4, 7, 2, 5, 8, 3, 6)."""
    return 1 + (repeat * 3) % MAX_TYPED_TOKENS


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def compare_tokens(tokens: Sequence[int], reference: Sequence[int]) -> tuple[int, int | None]:
    """How many of the first REFERENCE_TOKENS greedy tokens (as many as both have) differ
    from the reference's, and where the first difference is (None: none)."""
    pairs = list(zip(tokens[:REFERENCE_TOKENS], reference[:REFERENCE_TOKENS], strict=False))
    first = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
    return sum(a != b for a, b in pairs), first


@dataclass
class Samples:
    """Every run's figures of one contender on one prompt length."""

    ttft_ms: list[float] = field(default_factory=list)
    ms_per_token: list[float] = field(default_factory=list)
    typing_ms: list[float] = field(default_factory=list)
    prefilled: list[int] = field(default_factory=list)
    drafted: int = 0
    accepted: int = 0
    tokens: list[int] = field(default_factory=list)
    varied: bool = False  # the greedy tokens were not the same in every run

    def add_cold(self, reply: dict[str, Any]) -> None:
        self.ttft_ms.append(float(reply["ttft_ms"]))
        self.ms_per_token.append(float(reply["ms_per_token"]))
        self.drafted += int(reply.get("drafted", 0))
        self.accepted += int(reply.get("accepted", 0))
        if self.tokens and reply["tokens"] != self.tokens:
            self.varied = True
        self.tokens = list(reply["tokens"])

    def add_typing(self, reply: dict[str, Any] | None) -> None:
        if reply is not None:
            self.typing_ms.append(float(reply["ms"]))
            self.prefilled.append(int(reply["prefilled"]))


@dataclass
class Reference:
    """PyTorch's greedy tokens and last-position logits, per prompt length."""

    tokens: dict[int, list[int]] = field(default_factory=dict)
    logits: dict[int, Any] = field(default_factory=dict)
    error: str = ""


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def take_reference(spec: ContenderSpec, prompts: Prompts, out: TextIO) -> Reference:
    """PyTorch's greedy tokens and logits on every prompt, in a worker of their own (freed
    before any timing)."""
    reference = Reference()
    worker = Worker(spec)
    try:
        worker.load()
        worker.receive()
        for length, prompt in prompts.by_length.items():
            reply = worker.request({"op": "cold", "prompt": prompt, "new_tokens": REFERENCE_TOKENS})
            reference.tokens[length] = reply["tokens"]
            reference.logits[length] = decode_logits(
                worker.request({"op": "logits", "prompt": prompt})
            )
    except WorkerError as exc:
        reference.error = str(exc)
        _say(out, f"# the PyTorch reference failed ({exc}): greedy tokens are not checked")
    finally:
        worker.close()
    return reference


def start_workers(specs: Sequence[ContenderSpec], out: TextIO) -> list[Worker]:
    """A loaded worker per contender (they load side by side); a failed one keeps its error."""
    workers = [Worker(spec) for spec in specs]
    for worker in workers:
        try:
            worker.load()
        except WorkerError as exc:
            worker.error = str(exc)
    for worker in workers:
        if worker.error:
            continue
        try:
            worker.describe = worker.receive()["describe"]
        except WorkerError as exc:
            worker.error = str(exc)
        label = f"{worker.spec.name} [{worker.spec.condition}]"
        _say(out, f"# {label}: " + (f"failed: {worker.error}" if worker.error else worker.describe))
    return workers


def _run_turns(
    workers: Sequence[Worker],
    prompts: Prompts,
    config: BenchConfig,
    out: TextIO,
    loads: list[float],
) -> dict[tuple[int, int], Samples]:
    """The warm-up, then ``config.repeats`` rounds of interleaved turns."""
    samples = {(i, n): Samples() for i in range(len(workers)) for n in prompts.by_length}
    indexed = list(enumerate(workers))

    def turn(i: int, worker: Worker, length: int, repeat: int | None) -> None:
        prompt = prompts.by_length[length]
        new_tokens = config.new_tokens if repeat is not None else min(8, config.new_tokens)
        try:
            reply = worker.request({"op": "cold", "prompt": prompt, "new_tokens": new_tokens})
            typed = prompts.typed(length, typed_tokens(repeat or 0))
            typing = worker.request({"op": "typing", "prompt": typed})["typing"]
        except WorkerError as exc:
            worker.error = str(exc)
            _say(out, f"# {worker.spec.name} [{worker.spec.condition}] failed: {exc}")
            return
        if repeat is not None:
            samples[i, length].add_cold(reply)
            samples[i, length].add_typing(typing)
        time.sleep(SETTLE_S)

    for length in prompts.by_length:  # warm-up: page-in, weight repacking, allocators
        for i, worker in indexed:
            if not worker.error:
                turn(i, worker, length, None)
    for repeat in range(config.repeats):
        for length in prompts.by_length:
            for i, worker in interleaved(indexed, repeat):
                if not worker.error:
                    turn(i, worker, length, repeat)
        load = load_average()
        if load is not None:
            loads.append(load)
        shown = f"{load:.2f}" if load is not None else "n/a"
        _say(out, f"# repeat {repeat + 1}/{config.repeats} done (load average {shown})")
    return samples


def _logits_note(worker: Worker, prompt: list[int], reference: Any) -> str:
    """How far the worker's last-position logits are from PyTorch's."""
    import numpy as np

    try:
        logits = decode_logits(worker.request({"op": "logits", "prompt": prompt}))
    except WorkerError as exc:
        return f"logits failed: {exc}"
    if logits.shape != reference.shape:
        return f"logits of {logits.shape[0]} tokens vs PyTorch's {reference.shape[0]}"
    diff = float(np.max(np.abs(logits - reference)))
    scale = max(1.0, float(np.max(np.abs(reference))))
    top = "same" if int(np.argmax(logits)) == int(np.argmax(reference)) else "differs"
    return f"max|dlogit| {diff:.3g} of {scale:.3g}, top-1 {top}"


def _row(model: str, spec: ContenderSpec, length: int, got: Samples, reference: Reference) -> Row:
    row = Row(
        model,
        length,
        spec.name,
        kind=spec.kind,
        width=spec.width,
        condition=spec.condition,
        ttft_ms=median(got.ttft_ms),
        ms_per_token=median(got.ms_per_token),
        typing_ms=median(got.typing_ms),
        tokens=got.tokens,
        runs=len(got.ttft_ms),
        samples={
            "ttft_ms": got.ttft_ms,
            "ms_per_token": got.ms_per_token,
            "typing_ms": got.typing_ms,
        },
    )
    if length in reference.tokens and got.tokens:
        row.mismatches, row.first_mismatch = compare_tokens(got.tokens, reference.tokens[length])
    notes = []
    if got.prefilled:
        notes.append(f"typing prefilled {min(got.prefilled)}-{max(got.prefilled)}")
    if spec.options.get("draft_tokens"):
        notes.append(f"drafts accepted {got.accepted}/{got.drafted}")
    if got.varied:
        notes.append("greedy tokens varied between runs")
    row.note = "; ".join(notes)
    return row


def run_contenders(
    model: str,
    specs: Sequence[ContenderSpec],
    reference_spec: ContenderSpec | None,
    prompts: Prompts,
    config: BenchConfig,
    out: TextIO,
    loads: list[float],
) -> list[Row]:
    """Every contender on every prompt, interleaved; one row per contender and prompt length."""
    reference = Reference(error="no reference")
    if reference_spec is not None:
        reference = take_reference(reference_spec, prompts, out)
    workers = start_workers(specs, out)
    rows: list[Row] = []
    try:
        samples = _run_turns(workers, prompts, config, out, loads)
        for i, worker in enumerate(workers):
            rss, peak = worker.memory_mib()
            for length, prompt in prompts.by_length.items():
                if worker.error and not samples[i, length].ttft_ms:
                    rows.append(
                        Row(
                            model,
                            length,
                            worker.spec.name,
                            kind=worker.spec.kind,
                            width=worker.spec.width,
                            condition=worker.spec.condition,
                            error=worker.error,
                        )
                    )
                    continue
                row = _row(model, worker.spec, length, samples[i, length], reference)
                row.rss_mib, row.peak_rss_mib = rss, peak
                if length in reference.logits and not worker.error:
                    note = _logits_note(worker, prompt, reference.logits[length])
                    row.note = "; ".join(n for n in (row.note, note) if n)
                rows.append(row)
    finally:
        for worker in workers:
            worker.close()
    return rows


def python_environment(device: str) -> list[str]:
    """What the run ran on, as comment lines."""
    import platform

    import onnxruntime as ort

    lines = [
        f"# python {sys.version.split()[0]}, onnxruntime {ort.__version__} "
        f"({', '.join(ort.get_available_providers())}), {platform.machine()}"
    ]
    if device == "cuda":
        lines.append("# device: CUDA (each contender in its own process)")
    else:
        lines.append(f"# device: CPU, {os.cpu_count()} logical cores, {_cpu_name()}")
    return lines


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
