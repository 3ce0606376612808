"""`codehone bench documents`: what a keystroke costs the server in a huge document.

The README promises that a huge file costs no more than a small one. This starts the real
`codehone serve` over stdio (through the one LSP client, ``codehone.check.client``), opens
documents of several shapes (a small source file; one line of 5 MB; 30 MB of ordinary lines),
and, in each, types one character at a time at the far end of the document (the end of its
last line, where locating a position costs the most). After each keystroke it measures:

- edit: from just after the one-character ``didChange`` is sent to the answer of a
  ``codehone/status`` request sent right behind it: the time the event loop spent on the edit
  (plus one round trip, which the small file shows);
- completion: the latency of an explicitly invoked inline completion at the new cursor.

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codehone.check.client import EditorSession, serve_command
from codehone.core.errors import CodehoneError
from codehone.core.percentiles import percentile

SHAPES = ("small", "long-line-5mb", "lines-30mb")


def document_text(shape: str) -> str:
    """The text of one document shape (a real source file, repeated or stretched)."""
    import json.decoder

    source = Path(inspect.getfile(json.decoder)).read_text(encoding="utf-8")
    if shape == "small":
        return source
    if shape == "long-line-5mb":  # minified-style: one line, no break anywhere
        return "data = [" + "1234567, " * (5_000_000 // 9) + "0]"
    if shape == "lines-30mb":
        return source * (30_000_000 // len(source) + 1)
    raise ValueError(f"unknown document shape {shape!r}; known: {', '.join(SHAPES)}")


@dataclass
class ShapeResult:
    shape: str
    chars: int
    lines: int
    open_ms: float = 0.0
    edit_ms: list[float] = field(default_factory=list)
    completion_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        def figures(values: list[float]) -> dict[str, float | None]:
            return {
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "max": max(values) if values else None,
                "mean": statistics.fmean(values) if values else None,
            }

        return {
            "shape": self.shape,
            "chars": self.chars,
            "lines": self.lines,
            "open_ms": round(self.open_ms, 1),
            "edit_ms": figures(self.edit_ms),
            "completion_ms": figures(self.completion_ms),
            "errors": self.errors,
        }


async def bench_shape(session: EditorSession, shape: str, edits: int) -> ShapeResult:
    text = document_text(shape)
    result = ShapeResult(shape, len(text), text.count("\n") + 1)
    started = time.perf_counter()
    uri = session.open(f"file:///bench/{shape}.py", text)
    await session.status()  # answered once the document is in
    result.open_ms = (time.perf_counter() - started) * 1000
    for index in range(edits):
        cursor = len(session.text(uri))
        session.change(uri, "x" if index % 2 else " ", (cursor, cursor))
        started = time.perf_counter()  # the client's own work on the edit is done
        await session.status()  # answered after the server has applied the edit
        result.edit_ms.append((time.perf_counter() - started) * 1000)
        reply = await session.request("inline", uri, cursor + 1)
        if reply.error is not None:
            result.errors += 1
        else:
            result.completion_ms.append(reply.latency_ms)
    session.close_document(uri)
    return result


async def run_bench(model: Path, shapes: list[str], edits: int, device: str) -> list[ShapeResult]:
    log_file = Path(tempfile.gettempdir()) / "codehone-bench-documents-server.log"
    command = serve_command(model, device, ["--log-file", str(log_file)])
    session = await EditorSession.start(command, name="codehone bench")
    try:
        await session.initialize(
            initialization_options={"completion": {"maxNewTokens": 8, "multiline": "never"}}
        )
        return [await bench_shape(session, shape, edits) for shape in shapes]
    finally:
        await session.close()


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def report(results: list[ShapeResult], model: Path, edits: int) -> str:
    lines = [
        f"codehone bench documents: model {model}, {edits} one-character edits at the end of "
        "each document, each followed by an inline completion",
        f"{'document':<15} {'chars':>11} {'lines':>8} {'open ms':>9}  "
        f"{'edit ms p50 / max':>19}  {'completion ms p50 / max':>25}",
    ]
    for r in results:
        s = r.summary()
        edit, comp = s["edit_ms"], s["completion_ms"]
        lines.append(
            f"{r.shape:<15} {r.chars:>11,} {r.lines:>8,} {r.open_ms:>9.0f}  "
            f"{_ms(edit['p50']):>9} / {_ms(edit['max']):>7}  "
            f"{_ms(comp['p50']):>13} / {_ms(comp['max']):>9}"
            + (f"  ({r.errors} errors)" if r.errors else "")
        )
    return "\n".join(lines)


def main(
    model: Path | None,
    shapes: list[str] | None,
    edits: int,
    device: str,
    json_path: Path | None = None,
) -> int:
    chosen = shapes or list(SHAPES)
    unknown = [shape for shape in chosen if shape not in SHAPES]
    if unknown:
        raise CodehoneError(f"unknown document shape(s) {unknown}; known: {', '.join(SHAPES)}")
    if model is None:
        from codehone_training.fallback_model import ensure_default_model

        model = ensure_default_model()
    results = asyncio.run(run_bench(model, chosen, edits, device))
    print(report(results, model, edits))
    if json_path is not None:
        data = {"model": str(model), "edits": edits, "results": [r.summary() for r in results]}
        json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0
