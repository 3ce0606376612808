"""An editor's LSP session with a real ``codehone serve`` process, where every wait has a limit.

``codehone check`` and ``codehone.check.pytest_plugin`` drive the server through this: start it over stdio,
``initialize`` with the capabilities a real editor sends (VS Code's, inline completion
included), open documents, ask for completion or inline completion, and shut it down. A server
that exits, or does not answer in time, raises ``ServerFailure`` (one line, with the last line
the server wrote to stderr); ``close`` always leaves the process dead, killing it if it must.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codehone import __version__
from codehone.core.errors import CodehoneError
from codehone.core.text_positions import position_at

log = logging.getLogger("codehone.check")
T = TypeVar("T")

# What VS Code (1.9x, vscode-languageclient 9) declares, trimmed to what matters to a
# completion server: UTF-16 positions, incremental sync, snippet-capable completion items,
# inline completion (LSP 3.18), workspace folders and configuration.
EDITOR_CAPABILITIES: dict[str, Any] = {
    "general": {
        "positionEncodings": ["utf-16"],
        "staleRequestSupport": {
            "cancel": True,
            "retryOnContentModified": [
                "textDocument/semanticTokens/full",
                "textDocument/semanticTokens/range",
                "textDocument/semanticTokens/full/delta",
            ],
        },
        "regularExpressions": {"engine": "ECMAScript", "version": "ES2020"},
        "markdown": {"parser": "marked", "version": "1.1.0"},
    },
    "window": {
        "workDoneProgress": True,
        "showMessage": {"messageActionItem": {"additionalPropertiesSupport": True}},
        "showDocument": {"support": True},
    },
    "workspace": {
        "applyEdit": True,
        "workspaceEdit": {"documentChanges": True},
        "didChangeConfiguration": {"dynamicRegistration": True},
        "executeCommand": {"dynamicRegistration": True},
        "workspaceFolders": True,
        "configuration": True,
        "didChangeWatchedFiles": {"dynamicRegistration": True, "relativePatternSupport": True},
    },
    "textDocument": {
        "synchronization": {
            "dynamicRegistration": True,
            "willSave": True,
            "willSaveWaitUntil": True,
            "didSave": True,
        },
        "completion": {
            "dynamicRegistration": True,
            "contextSupport": True,
            "completionItem": {
                "snippetSupport": True,
                "commitCharactersSupport": True,
                "documentationFormat": ["markdown", "plaintext"],
                "deprecatedSupport": True,
                "preselectSupport": True,
                "tagSupport": {"valueSet": [1]},
                "insertReplaceSupport": True,
                "resolveSupport": {
                    "properties": ["documentation", "detail", "additionalTextEdits"]
                },
                "insertTextModeSupport": {"valueSet": [1, 2]},
                "labelDetailsSupport": True,
            },
            "insertTextMode": 2,
            "completionItemKind": {"valueSet": list(range(1, 26))},
            "completionList": {
                "itemDefaults": [
                    "commitCharacters",
                    "editRange",
                    "insertTextFormat",
                    "insertTextMode",
                    "data",
                ]
            },
        },
        "inlineCompletion": {"dynamicRegistration": True},
    },
}


def editor_capabilities() -> types.ClientCapabilities:
    from lsprotocol.converters import get_converter

    return get_converter().structure(EDITOR_CAPABILITIES, types.ClientCapabilities)


def serve_command(
    model: Path, device: str = "auto", base: Sequence[str] | None = None
) -> list[str]:
    """The command an editor runs: ``python -m codehone serve --model DIR --device D``."""
    prefix = list(base) if base else [sys.executable, "-m", "codehone", "serve"]
    return [*prefix, "--model", str(model), "--device", device]


class ServerFailure(CodehoneError):
    """The server exited, did not answer in time, or broke the protocol."""


@dataclass(frozen=True)
class Answer:
    """A completion request's outcome: the text that came back (None: nothing), or the error
    the server answered with, and the request's round-trip latency."""

    text: str | None
    latency_ms: float
    error: str | None = None


def completion_text(result: Any) -> str | None:
    """The first menu item's inserted text (textEdit, else insertText, else label)."""
    items = result.items if isinstance(result, types.CompletionList) else (result or [])
    if not items:
        return None
    item = items[0]
    if item.text_edit is not None:
        return item.text_edit.new_text
    return item.insert_text if item.insert_text is not None else item.label


def inline_text(result: Any) -> str | None:
    """The first inline completion item's text."""
    items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    if not items:
        return None
    insert = items[0].insert_text
    return insert.value if isinstance(insert, types.StringValue) else insert


def plain_data(value: Any) -> Any:
    """pygls hands untyped results over as nested namedtuples: back to dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain_data(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    return value


class EditorSession:
    """One server process and the client talking to it, as an editor would."""

    def __init__(self, client: LanguageClient, drain_stderr: bool = True, echo: bool = False):
        self.client = client
        self.started = time.perf_counter()
        self.initialize_result: types.InitializeResult | None = None
        self.position_encoding = "utf-16"
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._versions: dict[str, int] = {}
        self._exit_task: asyncio.Task[int] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        process = self.process
        if process is not None:
            self._exit_task = asyncio.ensure_future(process.wait())
            if drain_stderr and process.stderr is not None:
                self._stderr_task = asyncio.ensure_future(self._drain(process.stderr, echo))
        self._register_client_features()

    @classmethod
    async def start(
        cls, command: Sequence[str], env: dict[str, str] | None = None, echo: bool = False
    ) -> EditorSession:
        """Start ``command`` (the server) on stdio with a plain pygls client."""
        client = LanguageClient("codehone-check", __version__)
        log.info("starting %s", " ".join(command))
        try:
            await client.start_io(*command, env=env)
        except OSError as exc:
            raise ServerFailure(f"cannot start the server {command[0]!r}: {exc}") from None
        return cls(client, drain_stderr=True, echo=echo)

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self.client._server  # pygls keeps the process it started here

    async def _drain(self, stream: asyncio.StreamReader, echo: bool) -> None:
        """Keep reading the server's stderr (a full pipe would block it); keep the tail."""
        while True:
            try:
                line = await stream.readline()
            except (ValueError, OSError):  # a line longer than the stream limit, a closed pipe
                continue
            if not line:
                return
            decoded = line.decode("utf-8", errors="replace").rstrip()
            self.stderr_tail.append(decoded)
            if echo:
                sys.stderr.write(f"[server] {decoded}\n")

    def _register_client_features(self) -> None:
        """Answer what a server may ask of an editor, so a request of its never goes unanswered."""
        features = self.client.protocol.fm.features

        def add(method: str, handler: Any) -> None:
            if method not in features:
                self.client.feature(method)(handler)

        def configuration(params: types.ConfigurationParams) -> list[None]:
            return [None for _ in params.items]

        def nothing(params: Any) -> None:
            return None

        def show_message(params: types.ShowMessageParams) -> None:
            log.info("server says: %s", params.message)

        def log_message(params: types.LogMessageParams) -> None:
            log.debug("server log: %s", params.message)

        add(types.WORKSPACE_CONFIGURATION, configuration)
        add(types.WINDOW_WORK_DONE_PROGRESS_CREATE, nothing)
        add(types.CLIENT_REGISTER_CAPABILITY, nothing)
        add(types.CLIENT_UNREGISTER_CAPABILITY, nothing)
        add(types.WINDOW_SHOW_MESSAGE, show_message)
        add(types.WINDOW_LOG_MESSAGE, log_message)

    # ---------------------------------------------------------------------------------------

    def last_words(self) -> str:
        """The last meaningful line the server wrote to stderr (its error, usually)."""
        for line in reversed(self.stderr_tail):
            if line.strip():
                return line.strip()
        return ""

    async def _exited(self) -> int | None:
        """The exit code, once the process has exited and its stderr has been read."""
        if self._exit_task is None:
            return None
        if not self._exit_task.done():  # pygls may have seen the exit a moment before us
            try:
                await asyncio.wait_for(asyncio.shield(self._exit_task), 2)
            except TimeoutError:
                return None
        if self._stderr_task is not None:
            try:  # the last words are in the pipe: read them before reporting
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 2)
            except TimeoutError:
                pass
        return self._exit_task.result()

    async def _failure(self, what: str) -> ServerFailure:
        code = await self._exited()
        words = self.last_words().removeprefix("codehone: error: ")
        detail = f": {words}" if words else ""
        return ServerFailure(f"the server exited (code {code}) during {what}{detail}")

    async def wait(self, what: str, awaitable: Awaitable[T], timeout: float) -> T:
        """Await a server answer, racing the process's exit and a deadline."""
        if self._exit_task is not None and self._exit_task.done():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise await self._failure(what)
        task = asyncio.ensure_future(awaitable)
        waiting: set[asyncio.Future[Any]] = {task}
        if self._exit_task is not None:
            waiting.add(self._exit_task)
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            exc = task.exception()
            if exc is None:
                return task.result()
            if self._exit_task is not None and self._exit_task.done():
                raise await self._failure(what) from None
            if isinstance(exc, RuntimeError) and "exited" in str(exc):
                raise await self._failure(what) from None
            raise exc
        task.cancel()
        if self._exit_task is not None and self._exit_task.done():
            raise await self._failure(what)
        raise ServerFailure(f"the server did not answer {what} within {timeout:g} s")

    async def initialize(
        self,
        root: Path | None,
        timeout: float,
        capabilities: types.ClientCapabilities | None = None,
        initialization_options: Any = None,
    ) -> types.InitializeResult:
        """``initialize`` (with ``root`` as the workspace folder, when given) + ``initialized``."""
        folders = None
        if root is not None:
            folders = [types.WorkspaceFolder(uri=root.resolve().as_uri(), name=root.resolve().name)]
        params = types.InitializeParams(
            process_id=os.getpid(),
            client_info=types.ClientInfo(name="codehone check", version=__version__),
            locale="en",
            root_uri=folders[0].uri if folders else None,
            workspace_folders=folders,
            capabilities=capabilities or editor_capabilities(),
            initialization_options=initialization_options,
        )
        if hasattr(self.client, "capabilities"):  # pytest-lsp checks answers against them
            self.client.capabilities = params.capabilities
        try:
            result = await self.wait("initialize", self.client.initialize_async(params), timeout)
        except ServerFailure:
            raise
        except Exception as exc:  # an error answer
            raise ServerFailure(f"the server refused initialize: {exc}") from None
        self.initialize_result = result
        encoding = result.capabilities.position_encoding
        self.position_encoding = str(encoding) if encoding else "utf-16"
        self.client.initialized(types.InitializedParams())
        return result

    def open(self, path: Path, text: str, language_id: str) -> str:
        """``didOpen`` a document (replacing a previous open of the same path); its URI."""
        uri = Path(path).resolve().as_uri()
        if uri in self._versions:
            self.close_document(uri)
        version = self._versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)
            )
        )
        return uri

    def close_document(self, uri: str) -> None:
        if self._versions.pop(uri, None) is not None:
            self.client.text_document_did_close(
                types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
            )

    async def request(self, kind: str, uri: str, text: str, offset: int, timeout: float) -> Answer:
        """Completion (``kind`` "completion") or inline completion ("inline") at ``offset``."""
        line, character = position_at(text, offset, self.position_encoding)
        position = types.Position(line=line, character=character)
        document = types.TextDocumentIdentifier(uri=uri)
        if kind == "completion":
            what = types.TEXT_DOCUMENT_COMPLETION
            awaitable: Awaitable[Any] = self.client.text_document_completion_async(
                types.CompletionParams(
                    text_document=document,
                    position=position,
                    context=types.CompletionContext(
                        trigger_kind=types.CompletionTriggerKind.Invoked
                    ),
                )
            )
        else:
            what = types.TEXT_DOCUMENT_INLINE_COMPLETION
            awaitable = self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=document,
                    position=position,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
        started = time.perf_counter()
        try:
            result = await self.wait(what, awaitable, timeout)
        except ServerFailure:
            raise
        except Exception as exc:  # the server answered with an error
            latency = (time.perf_counter() - started) * 1000
            return Answer(None, latency, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        latency = (time.perf_counter() - started) * 1000
        text_out = completion_text(result) if kind == "completion" else inline_text(result)
        return Answer(text_out, latency)

    async def status(self, timeout: float) -> dict[str, Any] | None:
        """``codehone/status`` as a plain dict (None when the server does not answer it)."""
        try:
            result = await self.wait(
                "codehone/status",
                self.client.protocol.send_request_async("codehone/status", {}),
                timeout,
            )
        except ServerFailure:
            raise
        except Exception:
            return None
        plain = plain_data(result)
        return plain if isinstance(plain, dict) else None

    async def close(self, timeout: float = 5.0) -> int | None:
        """Shut the server down (``shutdown`` + ``exit``); kill it if it does not go in time.
        Always leaves the process dead; returns its exit code."""
        process = self.process
        if process is None:
            return None
        try:
            if process.returncode is None and self.initialize_result is not None:
                try:
                    await self.wait("shutdown", self.client.shutdown_async(None), timeout)
                    self.client.exit(None)
                    await asyncio.wait_for(process.wait(), timeout)
                except (ServerFailure, TimeoutError, Exception) as exc:
                    log.debug("clean shutdown failed: %s", exc)
        finally:
            if process.returncode is None:
                log.warning("the server did not exit; killing it (pid %d)", process.pid)
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    log.error("the server (pid %d) survived SIGKILL for %g s", process.pid, timeout)
            try:
                await asyncio.wait_for(self.client.stop(), timeout)
            except (TimeoutError, Exception) as exc:
                log.debug("stopping the client: %s", exc)
            for task in (self._stderr_task, self._exit_task):
                if task is not None and not task.done():
                    task.cancel()
        return process.returncode
