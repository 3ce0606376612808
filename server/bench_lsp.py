"""`codehone bench lsp`: end-to-end latency as an editor sees it while a user types.

Starts the real `codehone serve` over stdio, opens a real source file cut at a point with
enough text before it for the context asked for, then types the file's next characters one
keystroke at a time (50-150 ms apart, seeded), sending an inline-completion request after
each keystroke and cancelling the previous one if it is still running, as editors do. Prints
latency percentiles of the answered requests, how many were cancelled and how fast the
cancellations were answered, and the server's own counters (prefix-cache hits) from
`codehone/status`. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codehone.text_positions import position_at


@dataclass
class BenchResult:
    latencies_ms: list[float] = field(default_factory=list)
    cancel_answer_ms: list[float] = field(default_factory=list)
    cancelled: int = 0
    empty: int = 0
    errors: int = 0
    status: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def default_file() -> Path:
    import inspect
    import json.decoder

    return Path(inspect.getfile(json.decoder))


def start_offset(text: str, context_chars: int) -> int:
    """A cursor at the end of a line with about ``context_chars`` before it."""
    offset = min(len(text) - 200, context_chars) if len(text) > 400 else len(text) // 2
    newline = text.find("\n", max(0, offset))
    return newline if newline > 0 else offset


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {k: getattr(value, k) for k in dir(value) if not k.startswith("_")}


async def run_bench(
    model: Path,
    source: Path,
    keystrokes: int,
    context_chars: int,
    device: str,
    seed: int,
    max_new_tokens: int,
) -> BenchResult:
    text = source.read_text(encoding="utf-8")
    offset = start_offset(text, context_chars)
    keystrokes = min(keystrokes, len(text) - offset)
    rng = random.Random(seed)
    uri = "file:///bench/" + source.name
    log_file = Path(tempfile.gettempdir()) / "codehone-bench-lsp-server.log"
    client = LanguageClient("codehone-bench", "0.1")
    await client.start_io(
        sys.executable, "-m", "codehone", "serve", "--model", str(model),
        "--device", device, "--log-file", str(log_file),
    )  # fmt: skip
    result = BenchResult()
    try:
        await client.initialize_async(
            types.InitializeParams(
                process_id=None,
                capabilities=types.ClientCapabilities(),
                initialization_options={
                    "completion": {"maxNewTokens": max_new_tokens, "multiline": "never"}
                },
            )
        )
        client.initialized(types.InitializedParams())
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text[:offset])
            )
        )
        document = text[:offset]
        pending: dict[str, tuple[float, asyncio.Future[Any]]] = {}
        cancel_sent: dict[str, float] = {}
        finished: list[asyncio.Task[None]] = []

        async def track(msg_id: str, sent: float, future: asyncio.Future[Any]) -> None:
            try:
                answer = await future
                items = getattr(answer, "items", None) or []
                if msg_id in cancel_sent:
                    result.cancel_answer_ms.append((time.perf_counter() - cancel_sent[msg_id]) * 1000)
                    result.cancelled += 1
                    return
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                if not items:
                    result.empty += 1
            except Exception as exc:  # RequestCancelled arrives as an error response
                if msg_id in cancel_sent and "cancel" in str(exc).lower():
                    result.cancel_answer_ms.append((time.perf_counter() - cancel_sent[msg_id]) * 1000)
                    result.cancelled += 1
                else:
                    result.errors += 1
            finally:
                pending.pop(msg_id, None)

        for index in range(keystrokes):
            char = text[offset + index]
            line, character = position_at(document, len(document))
            cursor = types.Position(line=line, character=character)
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=index + 2),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=cursor, end=cursor), text=char
                        )
                    ],
                )
            )
            document += char
            for stale_id in list(pending):  # the editor drops what the user typed past
                cancel_sent[stale_id] = time.perf_counter()
                client.protocol.notify("$/cancelRequest", types.CancelParams(id=stale_id))
            line, character = position_at(document, len(document))
            msg_id = str(uuid.uuid4())
            params = types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
            sent = time.perf_counter()
            future = asyncio.wrap_future(
                client.protocol.send_request(
                    types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
                )
            )
            pending[msg_id] = (sent, future)
            finished.append(asyncio.ensure_future(track(msg_id, sent, future)))
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        await asyncio.wait_for(asyncio.gather(*finished), 120)
        status = await client.protocol.send_request_async("codehone/status", {})
        result.status = _to_dict(status)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return result


def report(result: BenchResult, model: Path, source: Path, keystrokes: int) -> str:
    lat = result.latencies_ms
    lines = [
        f"codehone bench lsp: model {model}, typing {keystrokes} keystrokes of {source}",
        f"provider: {result.status.get('provider', '?')}",
        f"answered requests: {len(lat)} ({result.empty} empty), cancelled: {result.cancelled}, "
        f"errors: {result.errors}",
        "end-to-end latency ms (answered): "
        f"p50 {percentile(lat, 0.5):.1f}  p95 {percentile(lat, 0.95):.1f}  "
        f"p99 {percentile(lat, 0.99):.1f}  mean {statistics.fmean(lat) if lat else float('nan'):.1f}",
    ]
    if result.cancel_answer_ms:
        lines.append(
            "cancel -> answer ms: "
            f"p50 {percentile(result.cancel_answer_ms, 0.5):.1f}  "
            f"p95 {percentile(result.cancel_answer_ms, 0.95):.1f}"
        )
    prefix = result.status.get("prefix_cache")
    if prefix:
        lines.append(f"prefix cache: {prefix}")
    return "\n".join(lines)


def main(
    model: Path | None,
    source: Path | None,
    keystrokes: int,
    context_chars: int,
    device: str,
    seed: int,
    max_new_tokens: int,
) -> int:
    if model is None:
        from codehone.default_model import ensure_default_model

        model = ensure_default_model()
    source = source or default_file()
    result = asyncio.run(
        run_bench(model, source, keystrokes, context_chars, device, seed, max_new_tokens)
    )
    print(report(result, model, source, keystrokes))
    return 0
