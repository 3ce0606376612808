"""The codehone language server: a pygls server serving completions from one or more models.

Handlers live in ``codehone.lsp.features`` (one LSP feature per module); this module builds the
server, holds its state (options, models per workspace folder, debounce tickets, document
recency), turns a request's document and position into a cursor context, and translates
codehone's errors into JSON-RPC errors at the edge (no tracebacks or paths to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codehone import __version__
from codehone.core.completion.cursor import CursorContext
from codehone.core.errors import CodehoneError
from codehone.core.providers import Device
from codehone.core.text_positions import PositionError
from codehone.lsp.config import ServerOptions, server_options_from, workspace_trust_from
from codehone.lsp.debounce import Debouncer
from codehone.lsp.models.registry import ModelRegistry
from codehone.lsp.models.service import ModelService
from codehone.lsp.models.workspace import WorkspaceModels, uri_path
from codehone.lsp.neighbors import Recency, display_path, path_header, pick_neighbors
from codehone.lsp.protocol import CodehoneProtocol
from codehone.lsp.text_documents import TrackedDocument, install_workspace

log = logging.getLogger("codehone.server")
T = TypeVar("T")


@dataclass
class Answer:
    """What a completion request produced: its candidates and the model that made them."""

    texts: list[str]
    model_name: str


def client_supports(capabilities: Any, dotted: str) -> bool:
    """Whether a (nested, snake_case) client capability is set, e.g. ``workspace.configuration``."""
    value = capabilities
    for name in dotted.split("."):
        value = getattr(value, name, None)
        if value is None:
            return False
    return bool(value)


class CodehoneServer(LanguageServer):
    def __init__(
        self,
        model: ModelService | None,
        device: Device = "auto",
        model_path: Path | None = None,
    ) -> None:
        super().__init__("codehone", __version__, protocol_cls=CodehoneProtocol)
        self.init_options = ServerOptions()  # from initializationOptions: the base of the rest
        self.options = ServerOptions()
        self.editor_watch: asyncio.Future[None] | None = None
        self.debouncer = Debouncer()
        self.recency = Recency()
        self.models = WorkspaceModels(self, ModelRegistry(model, device), model_path)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside any request: log them; malformed JSON also gets a -32700 answer."""
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
            log.warning("malformed message: %s", error)
            self.protocol.answer_parse_error(error)  # type: ignore[attr-defined]
            return
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    def supports(self, dotted: str) -> bool:
        return client_supports(self.client_capabilities, dotted)

    # -- messages to the user ------------------------------------------------------------------

    def warn_user(self, message: str) -> None:
        """A problem the user should see: a log line and a window/showMessage warning."""
        log.warning("%s", message)
        self.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        )

    def log_to_client(self, message: str) -> None:
        """A warning for the editor's log (window/logMessage); the caller logs it here."""
        self.window_log_message(
            types.LogMessageParams(type=types.MessageType.Warning, message=f"codehone: {message}")
        )

    # -- options -------------------------------------------------------------------------------

    def apply_settings(self, raw: Any, origin: str) -> None:
        """New settings (a ``codehone`` section, wrapped or not) on top of the initialization
        options; a changed ``model`` reloads the global slot's model in the background."""
        options, warnings = server_options_from(raw, self.init_options)
        for warning in warnings:
            self.log_to_client(warning)
        changed = options != self.options
        self.options = options
        if changed:
            log.info("options from %s: %s", origin, options.to_json())
        self.models.schedule(self.models.use_global_model(options.model))

    # -- completion ----------------------------------------------------------------------------

    async def register_capability(
        self, registration: types.Registration, what: str, timeout: float = 10.0
    ) -> None:
        """Ask the client to register ``registration``; a refusal or no answer is logged, as
        the server works without it."""
        try:
            await asyncio.wait_for(
                self.client_register_capability_async(types.RegistrationParams([registration])),
                timeout,
            )
        except Exception as exc:
            log.warning("could not register %s: %s", what, exc)

    def cursor_context(
        self, uri: str, position: types.Position, options: ServerOptions
    ) -> CursorContext | None:
        """The document's text and the cursor's offset (and, with ``otherDocuments``, the
        other open files), or None for an unknown document."""
        document = self.workspace.text_documents.get(uri)
        if not isinstance(document, TrackedDocument):
            return None
        text = document.source
        offset = document.offset_at(position)
        if not options.other_documents:
            return CursorContext(text, offset)
        folders = self.models.folder_paths()
        documents = {
            other_uri: (
                doc.language_id,
                display_path(uri_path(other_uri), other_uri, folders),
                doc.source,
            )
            for other_uri, doc in self.workspace.text_documents.items()
        }
        neighbors = pick_neighbors(uri, documents, self.recency)
        header = path_header(document.language_id, documents[uri][1]) if neighbors else ""
        return CursorContext(text, offset, neighbors, header)

    async def run_completion(
        self, kind: str, uri: str, position: types.Position, automatic: bool
    ) -> Answer | None:
        """Shared by menu and inline completion; None when there is nothing to offer."""
        request_id = self.protocol.msg_id
        started = time.perf_counter()
        ticket = self.debouncer.ticket(uri)
        options = self.options
        if not options.enable:
            log.info("request=%s %s: completions are disabled (enable=false)", request_id, kind)
            return None
        if automatic and options.debounce_ms:
            if not await self.debouncer.settle(uri, ticket, options.debounce_ms):
                log.info("request=%s %s dropped: a newer request came in", request_id, kind)
                return None
        service = self.models.service_for(uri)
        if service is None:
            log.info("request=%s %s: no model serves %s", request_id, kind, uri)
            return None
        ctx = await guarded(request_id, lambda: _sync(self.cursor_context, uri, position, options))
        if ctx is None:
            log.info("request=%s %s unknown document %s: empty result", request_id, kind, uri)
            return None
        outcome = await guarded(
            request_id,
            lambda: service.complete(uri, ctx, options.completion, options.sampling),
        )
        log.info(
            "request=%s %s model=%s tokens=%d+%d reused=%d candidates=%d reason=%s "
            "timings_ms=%s handler_ms=%.1f",
            request_id,
            kind,
            service.name,
            outcome.prompt_tokens,
            outcome.new_tokens,
            outcome.reused_tokens,
            len(outcome.texts),
            outcome.reason,
            outcome.timings_ms,
            (time.perf_counter() - started) * 1000,
        )
        return Answer(outcome.texts, service.name)


async def _sync(function: Callable[..., T], *args: Any) -> T:
    return function(*args)


async def guarded(request_id: object, make: Callable[[], Awaitable[T]]) -> T:
    """Run a step; codehone errors become clean JSON-RPC errors, anything else a logged one."""
    try:
        return await make()
    except PositionError as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    except CodehoneError as exc:
        log.error("request=%s failed: %s", request_id, exc)
        raise JsonRpcInternalError(str(exc)) from None
    except (JsonRpcInternalError, JsonRpcInvalidParams):
        raise
    except Exception as exc:
        if type(exc).__name__ == "CancelledError":
            raise
        log.exception("request=%s failed unexpectedly", request_id)
        raise JsonRpcInternalError(f"completion failed ({type(exc).__name__})") from None


async def watch_editor_process(pid: int, interval_s: float = 2.0) -> None:
    """Exit when the editor that started us dies (LSP's processId), so no server is orphaned."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("the editor process %d is gone: exiting", pid)
            os._exit(0)
        except PermissionError:
            pass  # it exists, owned by someone else


def build_server(
    model: ModelService | None, device: Device = "auto", model_path: Path | None = None
) -> CodehoneServer:
    """The server; ``model`` (loaded from ``model_path``) serves documents that no workspace
    folder's configuration claims (None: only configured folders are served)."""
    from codehone.lsp.features import (
        completion,
        configuration,
        documents,
        inline_completion,
        project_models,
        status,
    )

    server = CodehoneServer(model, device, model_path)

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: CodehoneServer, params: types.InitializeParams) -> None:
        install_workspace(ls.protocol)
        ls.init_options, warnings = server_options_from(params.initialization_options)
        ls.options = ls.init_options
        ls.models.trust, trust_warnings = workspace_trust_from(params.initialization_options)
        log.info("workspace trust: %s", ls.models.trust.to_json())
        for warning in [*warnings, *trust_warnings]:
            ls.log_to_client(warning)
        ls.models.set_initial_folders(params.workspace_folders, params.root_uri, params.root_path)
        if params.process_id:
            ls.editor_watch = asyncio.ensure_future(watch_editor_process(params.process_id))

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: CodehoneServer, params: types.InitializedParams) -> None:
        log.info("client initialized; position encoding %s", ls.workspace.position_encoding)
        ls.models.schedule(after_initialized(ls))

    async def after_initialized(ls: CodehoneServer) -> None:
        await project_models.register_watchers(ls)
        await configuration.register_for_changes(ls)
        settings = await configuration.pull_settings(ls)
        if settings is not configuration.NOT_PULLED:
            ls.apply_settings(settings, "workspace/configuration")
        else:
            ls.models.schedule(ls.models.use_global_model(ls.options.model))
        ls.models.discover_folders()
        ls.models.schedule(ls.models.warn_if_nothing_serves())

    completion.register(server)
    inline_completion.register(server)
    configuration.register(server)
    project_models.register(server)
    documents.register(server)
    status.register(server)
    return server
