"""`codehone demo` (what `make run` runs): the real server, a real LSP session, real output.

Starts `codehone serve` as a subprocess over stdio, as an editor would, opens a sample Python
file, asks for completions at several cursor positions (menu and inline) and prints what the
model answered, with each request's latency.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codehone.core.text_positions import position_at

log = logging.getLogger("codehone.demo")

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


async def run_demo(model: Path | None, device: str) -> int:
    if model is None:
        from codehone_training.fallback_model import ensure_default_model

        model = ensure_default_model()
    text = sample_text()
    uri = "file:///demo/sample.py"
    log_file = Path(tempfile.gettempdir()) / "codehone-demo-server.log"
    client = LanguageClient("codehone-demo", "0.1")
    started = time.perf_counter()
    await client.start_io(
        sys.executable,
        "-m",
        "codehone",
        "serve",
        "--model",
        str(model),
        "--device",
        device,
        "--log-file",
        str(log_file),
    )
    try:
        result = await client.initialize_async(
            types.InitializeParams(
                process_id=None,
                root_uri=None,
                capabilities=types.ClientCapabilities(
                    general=types.GeneralClientCapabilities(
                        position_encodings=[types.PositionEncodingKind.Utf16]
                    )
                ),
            )
        )
        client.initialized(types.InitializedParams())
        print(
            f"server {result.server_info.name} {result.server_info.version} started in "
            f"{time.perf_counter() - started:.1f}s; model {model}"
        )
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        document = types.TextDocumentIdentifier(uri=uri)
        version = 1
        for offset in cursor_offsets(text):
            line, character = position_at(text, offset)
            position = types.Position(line=line, character=character)
            before = text[:offset].rsplit("\n", 1)[-1]
            line_end = text.find("\n", offset)
            rest = text[offset:line_end]
            cut = types.Range(start=position, end=types.Position(line, character + len(rest)))
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[types.TextDocumentContentChangePartial(range=cut, text="")],
                )
            )
            t0 = time.perf_counter()
            menu = await client.text_document_completion_async(
                types.CompletionParams(text_document=document, position=position)
            )
            menu_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            inline = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=document,
                    position=position,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
            inline_ms = (time.perf_counter() - t0) * 1000
            items = menu.items if isinstance(menu, types.CompletionList) else (menu or [])
            menu_text = items[0].text_edit.new_text if items and items[0].text_edit else None
            inline_items = inline.items if isinstance(inline, types.InlineCompletionList) else []
            ghost = inline_items[0].insert_text if inline_items else None
            print(f"\nline {line + 1}, col {character + 1}:  {before!r}  (was: {rest!r})")
            print(f"  completion ({menu_ms:.0f} ms): {menu_text!r}")
            print(f"  inline     ({inline_ms:.0f} ms): {ghost!r}")
            version += 1
            client.text_document_did_change(  # put the line back as it was
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=position, end=position), text=rest
                        )
                    ],
                )
            )
        status = await client.protocol.send_request_async("codehone/status", {})
        provider = status["provider"] if isinstance(status, dict) else status.provider
        print(f"\nprovider: {provider}; server log: {log_file}")
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return 0
