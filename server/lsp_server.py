"""The codehone language server: a pygls server holding one loaded model.

Handlers live in ``codehone.features`` (one LSP feature per module); this module builds the
server, turns a request's document and position into a cursor context, and translates
codehone's errors into JSON-RPC errors at the edge (no tracebacks or paths to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from codehone import __version__
from codehone.completion import CompletionOptions, CompletionOutcome, CursorContext
from codehone.config import completion_options_from
from codehone.errors import CodehoneError
from codehone.model_service import ModelService
from codehone.protocol import CodehoneProtocol
from codehone.text_positions import PositionError, offset_at

log = logging.getLogger("codehone.server")
T = TypeVar("T")


class CodehoneServer(LanguageServer):
    def __init__(self, model: ModelService) -> None:
        super().__init__("codehone", __version__, protocol_cls=CodehoneProtocol)
        self.model = model
        self.options = CompletionOptions()
        self.editor_watch: asyncio.Future[None] | None = None

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside any request: log them; malformed JSON also gets a -32700 answer."""
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
            log.warning("malformed message: %s", error)
            self.protocol.answer_parse_error(error)  # type: ignore[attr-defined]
            return
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    def cursor_context(self, uri: str, position: types.Position) -> CursorContext | None:
        """The document's text and the cursor's offset, or None for an unknown document."""
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return None
        text = document.source
        encoding = str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)
        offset = offset_at(text, position.line, position.character, encoding)
        return CursorContext(text, offset)

    async def run_completion(
        self, kind: str, uri: str, position: types.Position
    ) -> tuple[CompletionOutcome | None, types.Position]:
        """Shared by menu and inline completion; None when there is nothing to complete."""
        request_id = self.protocol.msg_id
        started = time.perf_counter()
        ctx = await guarded(request_id, lambda: _sync(self.cursor_context, uri, position))
        if ctx is None:
            log.info("request=%s %s unknown document %s: empty result", request_id, kind, uri)
            return None, position
        outcome = await guarded(request_id, lambda: self.model.complete(uri, ctx, self.options))
        log.info(
            "request=%s %s tokens=%d+%d reason=%s timings_ms=%s handler_ms=%.1f",
            request_id,
            kind,
            outcome.prompt_tokens,
            outcome.new_tokens,
            outcome.reason,
            outcome.timings_ms,
            (time.perf_counter() - started) * 1000,
        )
        return outcome, position


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


def build_server(model: ModelService) -> CodehoneServer:
    from codehone.features import completion, inline_completion, status

    server = CodehoneServer(model)

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: CodehoneServer, params: types.InitializedParams) -> None:
        log.info("client initialized; position encoding %s", ls.workspace.position_encoding)

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: CodehoneServer, params: types.InitializeParams) -> None:
        ls.options = completion_options_from(params.initialization_options)
        if params.process_id:
            ls.editor_watch = asyncio.ensure_future(watch_editor_process(params.process_id))

    completion.register(server)
    inline_completion.register(server)
    status.register(server)
    return server
