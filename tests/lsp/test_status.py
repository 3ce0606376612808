"""End to end: codehone/status and the codehone.status command report model, provider, and the
latency of every completion that produced text."""

from __future__ import annotations

import time
from pathlib import Path

from lsp_session import complete, status
from lsprotocol import types

from codehone.check.client import EditorSession, plain_data
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.text_positions import offset_at
from codehone.core.tokenizer import TextTokenizer

URI = "file:///project/status.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n    x = \n    print(\n"
POSITIONS = [(4, 24), (5, 8), (6, 10), (3, 11), (0, 9), (0, 3)]  # (0, 3): mid-word, no answer


async def test_status(gpt2_session: EditorSession, tiny_model_dir: Path):
    session = gpt2_session
    await session.initialize(capabilities=types.ClientCapabilities())
    before = await status(session)
    assert before["provider"] == "CPUExecutionProvider"  # no CUDA on test machines
    (model,) = before["models"]
    assert model["model_dir"] == str(tiny_model_dir.resolve())
    assert model["architecture"] == "gpt2"
    assert before["completions"] == 0 and before["latency_ms"] == {}

    model_dir = load_model_dir(tiny_model_dir)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    session.open(URI, TEXT)
    round_trips_ms = []  # of the requests that were answered with a completion
    for line, character in POSITIONS:
        started = time.perf_counter()
        result = await complete(session, URI, line, character)
        elapsed_ms = (time.perf_counter() - started) * 1000
        ctx = CursorContext(TEXT, offset_at(TEXT, line, character))
        assert bool(result.items) == (completer.complete(ctx, CompletionOptions()).text is not None)
        if result.items:
            round_trips_ms.append(elapsed_ms)
    assert round_trips_ms, "no position produced a completion"
    assert len(round_trips_ms) < len(POSITIONS)  # one answered nothing: it is not counted

    after = plain_data(
        await session.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="codehone.status")
        )
    )
    assert after["completions"] == len(round_trips_ms)
    latency = after["latency_ms"]
    assert set(latency) == {"p50", "p95", "p99", "last"}
    # the server's own timings, each within the round trip the client saw
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= max(round_trips_ms)
    assert 0 < latency["last"] <= round_trips_ms[-1]
    (model,) = after["models"]
    assert model["completions"] == len(round_trips_ms) and model["latency_ms"] == latency
