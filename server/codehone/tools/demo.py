"""`codehone demo` (what `make run` runs): the real server, a real LSP session, real output.

Starts `codehone serve` as a subprocess over stdio, as an editor would (through the one LSP
client, ``codehone.check.client``: a server that fails or hangs ends the demo with one line,
never a hung `make run`), opens a sample Python file, asks for completions at several cursor
positions (menu and inline) and prints what the model answered, with each request's latency.
"""

from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

from lsprotocol import types

from codehone.check.client import CompletionReply, EditorSession, serve_command

# What the demo declares: UTF-16 positions, and nothing that makes the server ask it things.
CAPABILITIES = types.ClientCapabilities(
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16])
)

# Cursor positions in the sample: right after the first occurrence of each snippet. The rest
# of the line is deleted first (an incremental didChange), as if the user were typing there.
CURSORS = [
    "import ",
    "    with open(path, encoding=",
    "    if not os.path.",
    "        return self.price * ",
    "    for item in ",
    "        self.items.",
    "    return [Item(**entry) for entry in ",
    "        return sum(",
]


def sample_text() -> str:
    return (
        resources.files("codehone.tools").joinpath("samples/sample.py").read_text(encoding="utf-8")
    )


def cursor_offsets(text: str) -> list[int]:
    offsets = []
    for snippet in CURSORS:
        index = text.find(snippet)
        if index >= 0:
            offsets.append(index + len(snippet))
    return offsets


def _shown(reply: CompletionReply) -> str:
    return repr(reply.text) if reply.error is None else f"error: {reply.error}"


async def run_demo(model: Path | None, device: str) -> int:
    if model is None:
        from codehone_training.fallback_model import ensure_default_model

        model = ensure_default_model()
    text = sample_text()
    log_file = Path(tempfile.gettempdir()) / "codehone-demo-server.log"
    started = time.perf_counter()
    command = serve_command(model, device, ["--log-file", str(log_file)])
    session = await EditorSession.start(command, name="codehone demo")
    try:
        result = await session.initialize(capabilities=CAPABILITIES)
        info = result.server_info
        print(
            f"server {info.name if info else '?'} {info.version if info else '?'} started in "
            f"{time.perf_counter() - started:.1f}s; model {model}"
        )
        uri = session.open("file:///demo/sample.py", text)
        for offset in cursor_offsets(text):
            position = session.position(uri, offset)
            before = text[:offset].rsplit("\n", 1)[-1]
            line_end = text.find("\n", offset)
            rest = text[offset:line_end]
            session.change(uri, "", (offset, line_end))  # as if the user were typing here
            menu = await session.request("completion", uri, offset)
            inline = await session.request("inline", uri, offset)
            print(
                f"\nline {position.line + 1}, col {position.character + 1}:  {before!r}  "
                f"(was: {rest!r})"
            )
            print(f"  completion ({menu.latency_ms:.0f} ms): {_shown(menu)}")
            print(f"  inline     ({inline.latency_ms:.0f} ms): {_shown(inline)}")
            session.change(uri, rest, (offset, offset))  # put the line back as it was
        status = await session.status() or {}
        print(f"\nprovider: {status.get('provider', '?')}; server log: {log_file}")
    finally:
        await session.close()
    return 0
