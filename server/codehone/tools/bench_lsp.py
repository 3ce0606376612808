"""`codehone bench lsp`: end-to-end latency as an editor sees it while a user types.

Starts the real `codehone serve` over stdio (through the one LSP client,
``codehone.check.client``: every wait has a limit), opens a real source file cut at a point with
about the context asked for before it, then types the file's next characters one keystroke at
a time (``--keystroke-ms``: 50-150 ms apart by default, seeded), sending an inline-completion request (trigger Automatic)
after each keystroke and cancelling the previous one if it is still running, as editors do.
Prints latency percentiles of the answered requests, how many were cancelled and how fast the
cancellations were answered, and the server's own counters (prefix-cache hit rate) from
`codehone/status`, and, from the server's log, where an answered request's time went (tokens
prefilled and decoded, milliseconds in each).

Then the cold first request: a fresh server, the same document freshly opened, a pause while
the user reads it, one keystroke at its end and its request; with the background prefill
(codehone.lsp.prefill) and without, alternately, a few times each (``--cold-repeats``).

A benchmark, not a test: it prints figures and asserts nothing.

Every request ends up in exactly one of: answered (with items, or empty), cancelled, errors.
"""

from __future__ import annotations

import ast
import asyncio
import json
import random
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from codehone.check.client import EditorSession, PendingRequest, serve_command
from codehone.core.completion.typed_ahead import REASON as TYPED_AHEAD
from codehone.core.percentiles import percentile
from codehone.tools.bench_cold import ColdResult, ColdSetup, cold_lines, run_cold

CHARS_PER_TOKEN = 4  # to place the cursor after about --context-tokens tokens of text


@dataclass
class BenchResult:
    keystrokes: int = 0
    keystroke_ms: tuple[int, int] = (50, 150)  # the pause between keystrokes: from, to
    latencies_ms: list[float] = field(default_factory=list)
    answered_ids: list[str] = field(default_factory=list)  # in the order of latencies_ms
    typed_ahead_ids: set[str] = field(default_factory=set)  # answered without a model call
    cancel_answer_ms: list[float] = field(default_factory=list)
    cancelled: int = 0
    empty: int = 0
    errors: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)  # from the server's log: request_costs
    cold: ColdResult | None = None

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def model_latencies_ms(self) -> list[float]:
        """The answered requests' latencies less those answered from the typed-ahead offer
        (all of them when the requests' ids were not kept)."""
        if not self.answered_ids:
            return list(self.latencies_ms)
        return [
            ms
            for ms, msg_id in zip(self.latencies_ms, self.answered_ids, strict=True)
            if msg_id not in self.typed_ahead_ids
        ]

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        model_lat = self.model_latencies_ms
        prefix = self.status.get("prefix_cache") or {}
        return {
            "keystrokes": self.keystrokes,
            "keystroke_ms": list(self.keystroke_ms),
            "requests": self.answered + self.cancelled + self.errors,
            "answered": self.answered,
            "empty": self.empty,
            "cancelled": self.cancelled,
            "cancelled_share": round(self.cancelled / max(1, self.keystrokes), 4),
            "errors": self.errors,
            "typed_ahead": len(self.typed_ahead_ids),
            "latency_ms": _latency(lat),
            "model_latency_ms": _latency(model_lat),
            "cancel_answer_ms": {
                "p50": percentile(self.cancel_answer_ms, 50),
                "p95": percentile(self.cancel_answer_ms, 95),
            },
            "prefix_cache_hit_rate": prefix.get("hit_rate"),
            "prefix_token_reuse_rate": prefix.get("token_reuse_rate"),
            "provider": self.status.get("provider"),
            "request_costs": self.costs,
            "cold_first_request": self.cold.summary() if self.cold else None,
        }


def _latency(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else None,
    }


def default_file() -> Path:
    import inspect
    import json.decoder

    return Path(inspect.getfile(json.decoder))


def start_offset(text: str, context_chars: int) -> int:
    """A cursor at the end of a line with about ``context_chars`` before it."""
    offset = min(len(text) - 200, context_chars) if len(text) > 400 else len(text) // 2
    newline = text.find("\n", max(0, offset))
    return newline if newline > 0 else offset


# The server's line for each request that reached a model (codehone.lsp.server).
_REQUEST_LINE = re.compile(
    r"request=(\S+) .*?tokens=(\d+)\+(\d+) reused=(\d+) .*? reason=(.*?) timings_ms=(\{[^}]*\})"
)


def typed_ahead_ids(log_text: str) -> set[str]:
    """The requests the server answered from the completion it offered before (no model)."""
    return {
        match.group(1)
        for match in _REQUEST_LINE.finditer(log_text)
        if match.group(5) == TYPED_AHEAD
    }


def request_costs(log_text: str) -> dict[str, Any]:
    """Where the answered requests' time went, from the server's log: the tokens each prefilled
    (prompt less the cached part) and decoded, and the milliseconds of each step (means)."""
    answered: list[tuple[int, int, dict[str, float]]] = []
    reached = 0
    for match in _REQUEST_LINE.finditer(log_text):
        _, prompt, new, reused, reason, timings = match.groups()
        if reason == TYPED_AHEAD:
            continue  # never reached the model
        reached += 1
        if "cancelled" in reason:
            continue
        answered.append((int(prompt) - int(reused), int(new), ast.literal_eval(timings)))
    if not answered:
        return {"reached_model": reached, "answered": 0}

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 1)

    return {
        "reached_model": reached,
        "answered": len(answered),
        "prefilled_tokens_mean": mean([a[0] for a in answered]),
        "decoded_tokens_mean": mean([a[1] for a in answered]),
        "ms_mean": {
            step: mean([a[2].get(step, 0.0) for a in answered])
            for step in ("prompt", "prefill", "decode", "total")
        },
    }


async def run_bench(
    model: Path,
    source: Path,
    keystrokes: int,
    context_tokens: int,
    device: str,
    seed: int,
    max_new_tokens: int | None,
    anchor_prompt: bool = True,
    cold_repeats: int = 0,
    reading_pause_s: float = 1.5,
    keystroke_ms: tuple[int, int] = (50, 150),
    typed_ahead: bool = True,
) -> BenchResult:
    text = source.read_text(encoding="utf-8")
    offset = start_offset(text, context_tokens * CHARS_PER_TOKEN)
    keystrokes = max(0, min(keystrokes, len(text) - offset))
    rng = random.Random(seed)
    log_file = Path(tempfile.mkdtemp(prefix="codehone-bench-lsp-")) / "server.log"
    command = serve_command(model, device, ["--log-file", str(log_file)])
    completion: dict[str, Any] = {
        "maxPromptTokens": max(16, min(32768, context_tokens)),
        "multiline": "never",
        "anchorPrompt": anchor_prompt,
    }
    if max_new_tokens is not None:
        completion["maxNewTokens"] = max_new_tokens
    session = await EditorSession.start(command, name="codehone bench")
    result = BenchResult(keystrokes=keystrokes, keystroke_ms=keystroke_ms)
    try:
        await session.initialize(
            capabilities=types.ClientCapabilities(),
            initialization_options={"completion": completion, "typedAhead": typed_ahead},
        )
        uri = session.open("file:///bench/" + source.name, text[:offset])
        pending: dict[str, PendingRequest] = {}
        cancel_sent: dict[str, float] = {}
        finished: list[asyncio.Task[None]] = []

        async def track(request: PendingRequest) -> None:
            msg_id = request.msg_id
            try:
                answer = await request.future
                items = getattr(answer, "items", None) or []
                if msg_id in cancel_sent:
                    result.cancel_answer_ms.append(
                        (time.perf_counter() - cancel_sent[msg_id]) * 1000
                    )
                    result.cancelled += 1
                    return
                result.latencies_ms.append((time.perf_counter() - request.sent) * 1000)
                result.answered_ids.append(msg_id)
                if not items:
                    result.empty += 1
            except Exception as exc:  # RequestCancelled arrives as an error response
                if msg_id in cancel_sent and "cancel" in str(exc).lower():
                    result.cancel_answer_ms.append(
                        (time.perf_counter() - cancel_sent[msg_id]) * 1000
                    )
                    result.cancelled += 1
                else:
                    result.errors += 1
            finally:
                pending.pop(msg_id, None)

        for index in range(keystrokes):
            cursor = offset + index
            session.change(uri, text[cursor], (cursor, cursor))  # one keystroke
            for stale in list(pending.values()):  # the editor drops what the user typed past
                cancel_sent[stale.msg_id] = time.perf_counter()
                session.cancel(stale)
            request = session.send("inline", uri, session.position(uri, cursor + 1), True)
            pending[request.msg_id] = request
            finished.append(asyncio.ensure_future(track(request)))
            await asyncio.sleep(rng.uniform(*keystroke_ms) / 1000)
        await session.wait("the last answers", asyncio.gather(*finished), 120)
        result.status = await session.status() or {}
    finally:
        await session.close()
    if log_file.exists():
        log_text = log_file.read_text(encoding="utf-8", errors="replace")
        result.costs = request_costs(log_text)
        result.typed_ahead_ids = typed_ahead_ids(log_text) & set(result.answered_ids)
    if cold_repeats > 0 and len(text) > offset:
        setup = ColdSetup(model, source.name, text[:offset], text[offset], device, completion)
        result.cold = await run_cold(setup, cold_repeats, reading_pause_s)
    return result


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def report(result: BenchResult, model: Path, source: Path) -> str:
    summary = result.summary()
    lat, model_lat = summary["latency_ms"], summary["model_latency_ms"]
    lines = [
        f"codehone bench lsp: model {model}, typing {result.keystrokes} keystrokes of {source} "
        f"({result.keystroke_ms[0]}-{result.keystroke_ms[1]} ms apart)",
        f"provider: {summary['provider'] or '?'}",
        f"requests: {summary['requests']} = answered {summary['answered']} "
        f"({summary['empty']} empty) + cancelled {summary['cancelled']} "
        f"+ errors {summary['errors']}; cancelled by the next keystroke: "
        f"{100 * summary['cancelled_share']:.1f}%",
        f"end-to-end latency ms (answered): p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  "
        f"p99 {_ms(lat['p99'])}  mean {_ms(lat['mean'])}",
        f"  of which {summary['typed_ahead']} answered from the completion offered before "
        f"(its start typed, no model call); the {len(result.model_latencies_ms)} the model "
        f"answered: p50 {_ms(model_lat['p50'])}  p95 {_ms(model_lat['p95'])}  "
        f"p99 {_ms(model_lat['p99'])}",
    ]
    if result.cancel_answer_ms:
        cancel = summary["cancel_answer_ms"]
        lines.append(f"cancel -> answer ms: p50 {_ms(cancel['p50'])}  p95 {_ms(cancel['p95'])}")
    prefix = result.status.get("prefix_cache") or {}
    if prefix:
        lines.append(
            f"prefix cache: hit rate {100 * prefix.get('hit_rate', 0.0):.1f}% "
            f"({prefix.get('hits', 0)} of {prefix.get('requests', 0)} requests that reached "
            f"the model), {100 * prefix.get('token_reuse_rate', 0.0):.1f}% of prompt tokens "
            "reused"
        )
    costs = result.costs
    if costs.get("answered"):
        ms = costs["ms_mean"]
        lines.append(
            f"an answered request (means, from the server's log): prefilled "
            f"{costs['prefilled_tokens_mean']:.1f} tokens in {ms['prefill']:.1f} ms, decoded "
            f"{costs['decoded_tokens_mean']:.1f} tokens in {ms['decode']:.1f} ms, prompt "
            f"{ms['prompt']:.1f} ms, total {ms['total']:.1f} ms"
        )
    if result.cold is not None:
        lines += cold_lines(result.cold)
    return "\n".join(lines)


def main(
    model: Path | None,
    source: Path | None,
    keystrokes: int,
    context_tokens: int,
    device: str,
    seed: int,
    max_new_tokens: int | None,
    json_path: Path | None = None,
    anchor_prompt: bool = True,
    typed_ahead: bool = True,
    cold_repeats: int = 0,
    reading_pause_s: float = 1.5,
    keystroke_ms: tuple[int, int] = (50, 150),
) -> int:
    if model is None:
        from codehone_training.fallback_model import ensure_default_model

        model = ensure_default_model()
    source = source or default_file()
    result = asyncio.run(
        run_bench(
            model,
            source,
            keystrokes,
            context_tokens,
            device,
            seed,
            max_new_tokens,
            anchor_prompt,
            cold_repeats,
            reading_pause_s,
            keystroke_ms,
            typed_ahead,
        )
    )
    print(report(result, model, source))
    if json_path is not None:
        data = {
            "model": str(model),
            "file": str(source),
            "anchor_prompt": anchor_prompt,
            "typed_ahead": typed_ahead,
            "summary": result.summary(),
            "raw": {
                k: v for k, v in asdict(result).items() if k not in ("status", "costs", "cold")
            },
            "status": result.status,
        }
        json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return 0
