"""The codehone language server: a pygls server serving completions from one or more models.

Handlers live in ``codehone.lsp.features`` (one LSP feature per module); this module builds the
server, holds its state (options, models per workspace folder, debounce tickets, document
recency, what the menu last offered), turns a request's document and position into a cursor
context, and translates codehone's errors into JSON-RPC errors at the edge (no tracebacks or
paths to the client).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codehone import __version__
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.postprocess import Completion
from codehone.core.errors import CodehoneError
from codehone.core.providers import Device
from codehone.core.text_positions import PositionError
from codehone.lsp.config import (
    ServerOptions,
    server_options_from,
    unwrap_settings,
    workspace_trust_from,
)
from codehone.lsp.debounce import Debouncer
from codehone.lsp.editor_watch import watch_editor
from codehone.lsp.models.registry import ModelRegistry
from codehone.lsp.models.service import ModelService
from codehone.lsp.models.workspace import WorkspaceModels, uri_path
from codehone.lsp.neighbors import Recency, display_path, path_header, pick_neighbors
from codehone.lsp.prefill import BackgroundPrefill
from codehone.lsp.protocol import CodehoneProtocol
from codehone.lsp.text_documents import TrackedDocument, install_workspace

log = logging.getLogger("codehone.server")
T = TypeVar("T")


# The initialization option by which a client says it debounces its automatic inline
# requests itself (the VS Code extension does): the server then does not wait on them again.
CLIENT_DEBOUNCES_INLINE = "clientDebouncesInline"


@dataclass
class Answer:
    """What a completion request produced: its candidates and the model that made them."""

    completions: list[Completion]
    model_name: str


@dataclass(frozen=True)
class MenuOffer:
    """The texts the menu last offered for a document, and where."""

    position: types.Position
    texts: frozenset[str]


def client_supports(capabilities: Any, dotted: str) -> bool:
    """Whether a (nested, snake_case) client capability is set, e.g. ``workspace.configuration``."""
    value = capabilities
    for name in dotted.split("."):
        value = getattr(value, name, None)
        if value is None:
            return False
    return bool(value)


class CodehoneServer(LanguageServer):
    protocol: CodehoneProtocol

    def __init__(
        self,
        model: ModelService | None,
        device: Device = "auto",
        model_path: Path | None = None,
    ) -> None:
        super().__init__("codehone", __version__, protocol_cls=CodehoneProtocol)
        self.init_options = ServerOptions()  # from initializationOptions: the base of the rest
        self.options = ServerOptions()
        self.editor_watch: asyncio.Task[None] | None = None
        self.debouncer = Debouncer()
        self.client_debounces_inline = False
        self.menu_offers: dict[str, MenuOffer] = {}  # per document, the last menu answer
        self.recency = Recency()
        self.models = WorkspaceModels(self, ModelRegistry(model, device), model_path)
        self.prefill = BackgroundPrefill(self)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls reports each error here. A request's error (an unknown method's included) was
        already logged, by pygls or ``guarded``, and answered: it is not logged again."""
        if source is FeatureRequestError:
            log.debug("a request was answered with an error: %s", error)
            return
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    def close(self, keep: ModelService | None = None) -> None:
        """The session is over: stop watching the editor and close its models (but ``keep``,
        which the next TCP session shares)."""
        if self.editor_watch is not None:
            self.editor_watch.cancel()
        self.models.registry.close(keep=keep)

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
        self,
        uri: str,
        position: types.Position,
        options: ServerOptions,
        selected: types.SelectedCompletionInfo | None = None,
    ) -> CursorContext | None:
        """The document's text and the cursor's offset (and, with ``otherDocuments``, the
        other open files), or None for an unknown document. With ``selected`` (a menu item),
        the text as if that item were accepted, the cursor after it."""
        document = self.workspace.text_documents.get(uri)
        if not isinstance(document, TrackedDocument):
            return None
        text = document.source
        offset = document.offset_at(position)
        if selected is not None:
            start = document.offset_at(selected.range.start)
            end = document.offset_at(selected.range.end)
            if end < start:
                raise PositionError("selectedCompletionInfo.range ends before it starts")
            text = text[:start] + selected.text + text[end:]
            offset = start + len(selected.text)
        return self._with_neighbors(uri, document, text, offset, options)

    def guessed_context(
        self, uri: str, position: types.Position | None, options: ServerOptions
    ) -> tuple[int, CursorContext] | None:
        """A cursor at ``position`` (clamped; None: the end of the document) and its line, or
        None for an unknown document or a position inside a character."""
        document = self.workspace.text_documents.get(uri)
        if not isinstance(document, TrackedDocument):
            return None
        if position is None:
            last = document.buffer.index.line_count - 1
            offset = len(document.source)
            line = last
        else:
            try:
                offset = document.offset_at(position)
            except PositionError:
                return None
            line = position.line
        return line, self._with_neighbors(uri, document, document.source, offset, options)

    def _with_neighbors(
        self, uri: str, document: TrackedDocument, text: str, offset: int, options: ServerOptions
    ) -> CursorContext:
        """The cursor context at ``offset`` of ``text`` (``uri``'s, possibly with a menu item
        accepted), with the other open files when ``otherDocuments`` is on."""
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

    def remember_menu_offer(
        self, uri: str, position: types.Position, completions: list[Completion]
    ) -> None:
        self.menu_offers[uri] = MenuOffer(position, frozenset(c.text for c in completions))

    def offered_in_menu(self, uri: str, selected: types.SelectedCompletionInfo) -> bool:
        """Whether ``selected`` is one of the items the menu last offered for ``uri``."""
        offer = self.menu_offers.get(uri)
        return (
            offer is not None
            and offer.position == selected.range.start
            and selected.text in offer.texts
        )

    async def run_completion(
        self,
        kind: str,
        uri: str,
        position: types.Position,
        automatic: bool,
        selected: types.SelectedCompletionInfo | None = None,
    ) -> Answer | None:
        """Shared by menu (``kind`` "completion") and inline completion ("inlineCompletion");
        None when there is nothing to offer. ``selected``: complete after that menu item."""
        request_id = self.protocol.msg_id
        started = time.perf_counter()
        ticket = self.debouncer.ticket(uri, kind)
        options = self.options
        if not options.enable:
            log.info("request=%s %s: completions are disabled (enable=false)", request_id, kind)
            return None
        debounced_by_client = kind == "inlineCompletion" and self.client_debounces_inline
        waits = bool(automatic and options.debounce_ms and not debounced_by_client)
        self.prefill.requested(uri, position, waits)
        if waits:
            if not await self.debouncer.settle(uri, kind, ticket, options.debounce_ms):
                log.info("request=%s %s dropped: a newer one came in", request_id, kind)
                return None
        service = self.models.service_for(uri)
        if service is None:
            log.info("request=%s %s: no model serves %s", request_id, kind, uri)
            return None
        ctx = await guarded(
            request_id, lambda: _sync(self.cursor_context, uri, position, options, selected)
        )
        if ctx is None:
            log.info("request=%s %s unknown document %s: empty result", request_id, kind, uri)
            return None
        outcome = await guarded(
            request_id,
            lambda: service.complete(
                f"{kind} {uri}", ctx, options.completion, options.sampling, options.typed_ahead
            ),
        )
        log.info(
            "request=%s %s%s model=%s tokens=%d+%d reused=%d candidates=%d replaced=%s "
            "reason=%s timings_ms=%s handler_ms=%.1f",
            request_id,
            kind,
            " after the selected menu item" if selected is not None else "",
            service.name,
            outcome.prompt_tokens,
            outcome.new_tokens,
            outcome.reused_tokens,
            len(outcome.completions),
            [completion.replaced for completion in outcome.completions],
            outcome.reason,
            outcome.timings_ms,
            (time.perf_counter() - started) * 1000,
        )
        return Answer(outcome.completions, service.name)


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
        raw = unwrap_settings(params.initialization_options)
        ls.client_debounces_inline = (
            isinstance(raw, dict) and raw.get(CLIENT_DEBOUNCES_INLINE) is True
        )
        completion.declare_trigger_characters(ls, params.capabilities)
        ls.models.trust, trust_warnings = workspace_trust_from(params.initialization_options)
        log.info("workspace trust: %s", ls.models.trust.to_json())
        for warning in [*warnings, *trust_warnings]:
            ls.log_to_client(warning)
        ls.models.set_initial_folders(params.workspace_folders, params.root_uri, params.root_path)
        ls.editor_watch = watch_editor(
            params.process_id, lambda: ls.protocol.end_session(0), ls.protocol.parent_is_editor
        )

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
