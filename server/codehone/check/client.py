"""The one LSP client: an editor's session with a real ``codehone serve`` process, where every
wait has a limit.

Everything that talks to the server as an editor would goes through ``EditorSession``:
``codehone check`` and its pytest plugin, ``codehone demo``, ``codehone bench lsp`` and the
end-to-end tests. It starts the server over stdio (or wraps a client already started, such as
pytest-lsp's), ``initialize``s with the capabilities a real editor sends (VS Code's, inline
completion included, unless told otherwise), keeps the open documents' text and versions,
edits them with incremental ``didChange``, asks for completion or inline completion (waiting
for the answer, or sending it off to be cancelled later, as editors do while the user types),
reads ``codehone/status`` and shuts the server down. A server that exits, or does not answer in
time, raises ``ServerFailure`` (one line, with the last line the server wrote to stderr);
``close`` always leaves the process dead, killing it if it must.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codehone import __version__
from codehone.check.capabilities import editor_capabilities
from codehone.check.run import DEFAULT_REQUEST_TIMEOUT, DEFAULT_START_TIMEOUT
from codehone.core.errors import CodehoneError
from codehone.core.text_positions import position_at

log = logging.getLogger("codehone.check")
T = TypeVar("T")
Kind = Literal["completion", "inline"]


def serve_command(
    model: Path | None = None,
    device: str = "auto",
    extra: Sequence[str] = (),
    prefix: Sequence[str] | None = None,
) -> list[str]:
    """The command an editor runs: ``python -m codehone serve [--model DIR] --device D`` and
    ``extra``; ``prefix`` replaces ``python -m codehone serve`` (a wrapper script, a container)."""
    command = list(prefix) if prefix else [sys.executable, "-m", "codehone", "serve"]
    if model is not None:
        command += ["--model", str(model)]
    return [*command, "--device", device, *extra]


def document_uri(document: str | Path) -> str:
    """A document's URI: a string is one already; a path is resolved and made into one."""
    return document if isinstance(document, str) else Path(document).resolve().as_uri()


class ServerFailure(CodehoneError):
    """The server exited, did not answer in time, or broke the protocol."""


@dataclass(frozen=True)
class CompletionReply:
    """The server's reply to one completion request: the text it offered first (None:
    nothing), or the error it answered with, and the request's round-trip latency."""

    text: str | None
    latency_ms: float
    error: str | None = None


@dataclass
class PendingRequest:
    """A completion request sent and not yet awaited (``EditorSession.send``)."""

    msg_id: str
    method: str
    sent: float  # time.perf_counter() when it was sent
    future: asyncio.Future[Any]


@dataclass
class OpenDocument:
    text: str
    language_id: str
    version: int


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
    """One server process and the client talking to it, as an editor would.

    ``client`` is the pygls client (a pytest-lsp one in tests: its records of messages,
    progress and configuration are there for anything this class does not cover).
    """

    def __init__(self, client: LanguageClient, drain_stderr: bool = True, echo: bool = False):
        self.client = client
        self.name = "codehone check"
        self.started = time.perf_counter()
        self.initialize_result: types.InitializeResult | None = None
        self.position_encoding = "utf-16"
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.registrations: list[types.Registration] = []  # client/registerCapability asks
        self._documents: dict[str, OpenDocument] = {}
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
        cls,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        echo: bool = False,
        name: str = "codehone check",
    ) -> EditorSession:
        """Start ``command`` (the server) on stdio with a plain pygls client; ``name`` is the
        client's name in ``initialize``."""
        client = LanguageClient(name.replace(" ", "-"), __version__)
        log.info("starting %s", " ".join(command))
        try:
            await client.start_io(*command, env=env)
        except OSError as exc:
            raise ServerFailure(f"cannot start the server {command[0]!r}: {exc}") from None
        session = cls(client, drain_stderr=True, echo=echo)
        session.name = name
        return session

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
        """Answer what a server may ask of an editor, so a request of its never goes
        unanswered (a pytest-lsp client answers most of these itself, and records them)."""
        features = self.client.protocol.fm.features

        def add(method: str, handler: Any) -> None:
            if method not in features:
                self.client.feature(method)(handler)

        def configuration(params: types.ConfigurationParams) -> list[None]:
            return [None for _ in params.items]

        def register_capability(params: types.RegistrationParams) -> None:
            self.registrations.extend(params.registrations)

        def nothing(params: Any) -> None:
            return None

        def show_message(params: types.ShowMessageParams) -> None:
            log.info("server says: %s", params.message)

        def log_message(params: types.LogMessageParams) -> None:
            log.debug("server log: %s", params.message)

        add(types.WORKSPACE_CONFIGURATION, configuration)
        add(types.WINDOW_WORK_DONE_PROGRESS_CREATE, nothing)
        add(types.CLIENT_REGISTER_CAPABILITY, register_capability)
        add(types.CLIENT_UNREGISTER_CAPABILITY, nothing)
        add(types.WINDOW_SHOW_MESSAGE, show_message)
        add(types.WINDOW_LOG_MESSAGE, log_message)

    # -- waiting -------------------------------------------------------------------------------

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
        """Await a server answer (or anything else), racing the process's exit and a
        deadline; an error answer is raised as it came."""
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

    # -- the session ---------------------------------------------------------------------------

    async def initialize(
        self,
        folders: Sequence[Path] = (),
        timeout: float = DEFAULT_START_TIMEOUT,
        capabilities: types.ClientCapabilities | None = None,
        initialization_options: Any = None,
    ) -> types.InitializeResult:
        """``initialize`` (``folders`` as the workspace folders) + ``initialized``, with VS
        Code's capabilities unless ``capabilities`` are given."""
        workspace = [
            types.WorkspaceFolder(uri=folder.absolute().as_uri(), name=folder.name)
            for folder in folders
        ]
        params = types.InitializeParams(
            process_id=os.getpid(),
            client_info=types.ClientInfo(name=self.name, version=__version__),
            locale="en",
            root_uri=workspace[0].uri if workspace else None,
            workspace_folders=workspace or None,
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

    # -- documents -----------------------------------------------------------------------------

    def open(self, document: str | Path, text: str, language_id: str = "python") -> str:
        """``didOpen`` a document (a URI, or a path; replacing an earlier open of it); its URI."""
        uri = document_uri(document)
        if uri in self._documents:
            self.close_document(uri)
        self._documents[uri] = OpenDocument(text, language_id, 1)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
            )
        )
        return uri

    def text(self, uri: str) -> str:
        """An open document's text, as the server has it."""
        return self._documents[uri].text

    def position(self, uri: str, offset: int) -> types.Position:
        """The LSP position of ``offset`` in an open document (the negotiated encoding)."""
        line, character = position_at(self.text(uri), offset, self.position_encoding)
        return types.Position(line=line, character=character)

    def change(self, uri: str, text: str, span: tuple[int, int] | None = None) -> None:
        """``didChange``: ``text`` replaces the characters ``span`` (start, end offsets) with
        an incremental change, or, without a span, the whole document."""
        document = self._documents[uri]
        document.version += 1
        if span is None:
            change: types.TextDocumentContentChangeEvent = (
                types.TextDocumentContentChangeWholeDocument(text=text)
            )
            document.text = text
        else:
            start, end = span
            edit = types.Range(start=self.position(uri, start), end=self.position(uri, end))
            change = types.TextDocumentContentChangePartial(range=edit, text=text)
            document.text = document.text[:start] + text + document.text[end:]
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=document.version
                ),
                content_changes=[change],
            )
        )

    def close_document(self, uri: str) -> None:
        if self._documents.pop(uri, None) is not None:
            self.client.text_document_did_close(
                types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
            )

    # -- completion ----------------------------------------------------------------------------

    def send(
        self,
        kind: Kind,
        uri: str,
        position: types.Position,
        automatic: bool = False,
        selected: types.SelectedCompletionInfo | None = None,
    ) -> PendingRequest:
        """Send a completion (``kind`` "completion": the menu) or inline completion ("inline")
        request without waiting for it. ``automatic``: asked for while the user types (a menu
        re-asked for as its list is incomplete; inline ghost text), else invoked explicitly.
        ``selected``: an inline request made while the menu shows that item selected."""
        document = types.TextDocumentIdentifier(uri=uri)
        params: types.CompletionParams | types.InlineCompletionParams
        if kind == "completion":
            menu = types.CompletionTriggerKind
            trigger = menu.TriggerForIncompleteCompletions if automatic else menu.Invoked
            method = types.TEXT_DOCUMENT_COMPLETION
            context = types.CompletionContext(trigger_kind=trigger)
            params = types.CompletionParams(
                text_document=document, position=position, context=context
            )
        else:
            ghost = types.InlineCompletionTriggerKind
            method = types.TEXT_DOCUMENT_INLINE_COMPLETION
            inline = types.InlineCompletionContext(
                trigger_kind=ghost.Automatic if automatic else ghost.Invoked,
                selected_completion_info=selected,
            )
            params = types.InlineCompletionParams(
                text_document=document, position=position, context=inline
            )
        msg_id = str(uuid.uuid4())
        sent = time.perf_counter()
        future = self.client.protocol.send_request(method, params, msg_id=msg_id)
        return PendingRequest(msg_id, method, sent, asyncio.wrap_future(future))

    def cancel(self, request: PendingRequest) -> None:
        """``$/cancelRequest`` for a request still in flight (its answer is then an error)."""
        self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=request.msg_id))

    async def ask(
        self,
        kind: Kind,
        uri: str,
        position: types.Position,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        automatic: bool = False,
        selected: types.SelectedCompletionInfo | None = None,
    ) -> Any:
        """Send a request (see ``send``) and wait for its result: a CompletionList or an
        InlineCompletionList (an error answer is raised)."""
        request = self.send(kind, uri, position, automatic, selected)
        return await self.wait(request.method, request.future, timeout)

    async def request(
        self, kind: Kind, uri: str, offset: int, timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> CompletionReply:
        """An explicitly invoked completion at ``offset`` of an open document, as a reply: its
        first text, or the error the server answered with, and its latency."""
        request = self.send(kind, uri, self.position(uri, offset))
        try:
            result = await self.wait(request.method, request.future, timeout)
        except ServerFailure:
            raise
        except Exception as exc:  # the server answered with an error
            latency = (time.perf_counter() - request.sent) * 1000
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return CompletionReply(None, latency, error=error)
        latency = (time.perf_counter() - request.sent) * 1000
        text = completion_text(result) if kind == "completion" else inline_text(result)
        return CompletionReply(text, latency)

    async def status(self, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> dict[str, Any] | None:
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

    # -- the end -------------------------------------------------------------------------------

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
