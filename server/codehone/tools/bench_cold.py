"""`codehone bench lsp`'s cold first request: what the first completion in a freshly opened file
costs, with the background prefill (codehone.lsp.prefill) and without.

Each measurement starts a fresh `codehone serve` (so no prefix cache survives from an earlier
one), opens the document, waits while the user would read it (``pause_s``), types one keystroke
at its end and sends the inline-completion request an editor sends after it. The two settings
alternate, so a change in the machine's load falls on both. Reported per setting: the median
latency, and from `codehone/status` the request's prompt tokens and how many of them the
prefix cache held, and what the background prefill fed.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from codehone.check.client import EditorSession, serve_command


@dataclass
class ColdRun:
    background_prefill: bool
    latency_ms: float
    prompt_tokens: int
    reused_tokens: int
    prefilled_in_background: int


@dataclass
class ColdResult:
    pause_s: float
    runs: list[ColdRun] = field(default_factory=list)

    def of(self, background_prefill: bool) -> list[ColdRun]:
        return [run for run in self.runs if run.background_prefill == background_prefill]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reading_pause_s": self.pause_s}
        for enabled in (True, False):
            runs = self.of(enabled)
            out["with_background_prefill" if enabled else "without_background_prefill"] = {
                "runs": len(runs),
                "latency_ms_median": statistics.median(r.latency_ms for r in runs)
                if runs
                else None,
                "latency_ms": [round(r.latency_ms, 1) for r in runs],
                "prompt_tokens": [r.prompt_tokens for r in runs],
                "reused_tokens": [r.reused_tokens for r in runs],
                "prefilled_in_background": [r.prefilled_in_background for r in runs],
            }
        return out


@dataclass(frozen=True)
class ColdSetup:
    """What each cold measurement opens and asks, on which model."""

    model: Path
    name: str  # the document's file name
    text: str  # the document
    next_char: str  # the keystroke typed at its end
    device: str
    completion: dict[str, Any]  # the completion options of the typing run


async def cold_first_request(setup: ColdSetup, background_prefill: bool, pause_s: float) -> ColdRun:
    log_dir = Path(tempfile.mkdtemp(prefix="codehone-bench-cold-"))
    command = serve_command(setup.model, setup.device, ["--log-file", str(log_dir / "server.log")])
    session = await EditorSession.start(command, name="codehone bench (cold)")
    try:
        await session.initialize(
            capabilities=types.ClientCapabilities(),
            initialization_options={
                "completion": setup.completion,
                "backgroundPrefill": background_prefill,
            },
        )
        text = setup.text
        uri = session.open("file:///bench/cold/" + setup.name, text)
        await asyncio.sleep(pause_s)  # the user reads the file
        end = len(text)
        session.change(uri, setup.next_char, (end, end))
        request = session.send("inline", uri, session.position(uri, end + 1), True)
        await session.wait("the first request", request.future, 120)
        latency_ms = (time.perf_counter() - request.sent) * 1000
        status = await session.status() or {}
    finally:
        await session.close()
    cache = status.get("prefix_cache") or {}
    prefill = status.get("background_prefill") or {}
    return ColdRun(
        background_prefill,
        latency_ms,
        int(cache.get("last_prompt_tokens", 0)),
        int(cache.get("last_reused_tokens", 0)),
        int(prefill.get("tokens", 0)),
    )


async def run_cold(setup: ColdSetup, repeats: int, pause_s: float) -> ColdResult:
    result = ColdResult(pause_s)
    for index in range(2 * repeats):
        result.runs.append(await cold_first_request(setup, index % 2 == 0, pause_s))
    return result


def cold_lines(result: ColdResult) -> list[str]:
    lines = [
        f"cold first request (fresh server, freshly opened file, {result.pause_s:.1f} s reading "
        "pause, one keystroke at its end), median of each:"
    ]
    for enabled in (True, False):
        runs = result.of(enabled)
        if not runs:
            continue
        median = statistics.median(r.latency_ms for r in runs)
        each = ", ".join(f"{r.latency_ms:.0f}" for r in runs)
        lines.append(
            f"  {'with' if enabled else 'without'} background prefill: {median:.1f} ms "
            f"(runs: {each} ms; prompt {runs[0].prompt_tokens} tokens, "
            f"{statistics.median(r.reused_tokens for r in runs):.0f} from the prefix cache, "
            f"{statistics.median(r.prefilled_in_background for r in runs):.0f} prefilled in "
            "the background)"
        )
    return lines
