"""End to end: codehone/status and the codehone.status command report model, provider, latency."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient


def field(obj: object, name: str) -> object:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


async def test_status(gpt2_client: LanguageClient, tiny_model_dir: Path):
    await gpt2_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=None)
    )
    before = await gpt2_client.protocol.send_request_async("codehone/status", {})
    assert field(before, "provider") == "CPUExecutionProvider"  # no CUDA on test machines
    (model,) = field(before, "models")
    assert field(model, "model_dir") == str(tiny_model_dir.resolve())
    assert field(model, "architecture") == "gpt2"
    assert field(before, "completions") == 0

    uri = "file:///s.py"
    gpt2_client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text="x = ")
        )
    )
    for line, character in [(0, 4), (0, 0), (0, 2)]:
        await gpt2_client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
            )
        )
    after = await gpt2_client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="codehone.status")
    )
    completions = field(after, "completions")
    assert isinstance(completions, int)
    latency = field(after, "latency_ms")
    if completions:
        assert 0 < field(latency, "p50") <= field(latency, "p99")
    await gpt2_client.shutdown_session()
