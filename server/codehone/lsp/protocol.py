"""JSON-RPC strictness that pygls leaves out: every request gets an answer, even a bad one.

pygls drops a request whose params do not validate (it only shows a message), fails on a
request without ``params`` or with an unknown top-level key, ignores batches, messages that are
not objects, ids that are objects or arrays and ``{"id": 5}`` with no method, answers nothing to
malformed JSON, serves requests before ``initialize`` and a second ``initialize``, stays silent
to requests after ``shutdown``, exits 0 on ``exit`` without ``shutdown`` (its SystemExit is
swallowed) and puts Python tracebacks into error data. An editor waiting on any of those hangs
or leaks local paths. Here the transport (``codehone.lsp.transport``) hands over each decoded
JSON value (``receive``) or says that some bytes held none (``reject_unreadable``), and each gets
the answer the spec names: -32700 (unreadable, id null), -32600 (not a valid request: id null
when its id is not an integer or string), -32601 (unknown method, from pygls), -32602 (invalid
params), -32002 (before ``initialize``); error responses never carry data. ``exit`` ends the
session through the transport, with status 0 after ``shutdown`` and 1 without.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import attrs
from lsprotocol.types import EXIT, INITIALIZE, METHOD_TO_TYPES, ResponseError, ResponseErrorMessage
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    lsp_method,
)

log = logging.getLogger("codehone.protocol")

_ENVELOPE = ("jsonrpc", "id", "method", "params", "result", "error")


@dataclass
class _Rejected:
    """A message that failed to structure; answered with an error instead of being dropped."""

    jsonrpc: str
    id: Any
    method: str
    error: JsonRpcException


def valid_id(value: Any) -> bool:
    """LSP's ids are integers or strings (JSON-RPC's null id is only for answers)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


@cache
def is_notification_method(method: str) -> bool:
    """An LSP method that is a notification (its message type has no id)."""
    message_type = METHOD_TO_TYPES.get(method, (None,))[0]
    return message_type is not None and "id" not in attrs.fields_dict(message_type)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def envelope_problem(value: Any) -> tuple[Any, str] | None:
    """Why ``value`` is not a JSON-RPC request, notification or response, and the id to answer
    with (None: id null); None when it is one."""
    if not isinstance(value, dict):
        return None, f"a message must be a JSON object, not {_kind(value)}"
    answer_id = value["id"] if valid_id(value.get("id")) else None
    if "id" in value and answer_id is None:
        return None, "id must be an integer or a string"
    if value.get("jsonrpc") != "2.0":
        return answer_id, 'jsonrpc must be "2.0"'
    if "method" not in value:
        return answer_id, "a request needs a method"
    method = value["method"]
    if not isinstance(method, str) or not method:
        return answer_id, "method must be a non-empty string"
    params = value.get("params")
    if params is not None and not isinstance(params, dict | list):
        return answer_id, "params must be an object or an array"
    if answer_id is not None and is_notification_method(method):
        return answer_id, f"{method} is a notification: it takes no id"
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_response(value: Any) -> bool:
    """A client's answer to one of the server's requests (never answered in turn)."""
    return (
        isinstance(value, dict)
        and "method" not in value
        and ("result" in value or "error" in value)
    )


class CodehoneProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._initialize_seen = False
        # Set by the transport for each session: how to end it (with an exit status), and
        # whether this process's parent is the editor (stdio) or not (TCP).
        self.end_session: Callable[[int], None] = lambda status: None
        self.parent_is_editor = False

    # -- what the transport hands over -----------------------------------------------------------

    def receive(self, value: Any) -> None:
        """One decoded JSON value from the client."""
        if isinstance(value, list):
            self._reject_batch(value)
            return
        if is_response(value):
            if value.get("jsonrpc") != "2.0" or not valid_id(value.get("id")):
                log.warning("a response the server cannot match: %.200s", value.get("error"))
                return
        else:
            problem = envelope_problem(value)
            if problem is not None:
                answer_id, reason = problem
                log.warning("request=%s invalid request: %s", answer_id, reason)
                self.send_error(answer_id, JsonRpcInvalidRequest(f"Invalid request: {reason}"))
                return
        message = {key: value[key] for key in _ENVELOPE if key in value}
        if "method" in message:
            message.setdefault("params", None)  # JSON-RPC's params are optional
        structured = self.structure_message(message)
        try:
            self.handle_message(structured)
        except Exception:  # pygls answers a request's own failures; this is one before that
            log.exception(
                "request=%s %s: could not be handled", value.get("id"), value.get("method")
            )
            if valid_id(value.get("id")) and "method" in value:
                self.send_error(value["id"], JsonRpcInternalError("internal error"))

    def reject_unreadable(self, reason: str) -> None:
        """Bytes that held no message: one log line and a parse error with id null."""
        log.warning("unreadable input: %s", reason)
        self.send_error(None, JsonRpcParseError(f"Parse error: {reason}"))

    def _reject_batch(self, batch: list[Any]) -> None:
        """LSP has no batches: each request in one gets -32600 (one with id null if none)."""
        ids = [
            m["id"]
            for m in batch
            if isinstance(m, dict) and "method" in m and valid_id(m.get("id"))
        ]
        log.warning("a batch of %d messages: LSP has no batches; answered with errors", len(batch))
        for msg_id in ids or [None]:
            self.send_error(
                msg_id, JsonRpcInvalidRequest("Invalid request: batches are not supported")
            )

    # -- pygls' hooks --------------------------------------------------------------------------------

    def structure_message(self, data: dict[str, Any]) -> Any:
        """pygls' structuring, without its multi-line traceback in the log for bad params: a
        message that does not fit its method's type is a ``_Rejected``."""
        method = data.get("method", "")
        if "method" in data:
            message_type = self.get_message_type(method) or (
                JsonRPCRequestMessage if "id" in data else JsonRPCNotification
            )
        elif "error" in data:
            message_type = ResponseErrorMessage
        else:
            message_type = self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
        try:
            return self._converter.structure(data, message_type)
        except Exception as exc:
            log.warning(
                "request=%s %s: invalid params (%s)", data.get("id"), method, _first_line(exc)
            )
            return _Rejected("2.0", data.get("id"), method, JsonRpcInvalidParams())

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", "")
        msg_id = getattr(message, "id", None)
        is_request = msg_id is not None and bool(method)
        if isinstance(message, _Rejected):
            if is_request:
                self.send_error(msg_id, message.error)
            return
        if is_request and method == INITIALIZE:
            if self._initialize_seen:
                log.warning("request=%s a second initialize: refused, the session goes on", msg_id)
                self.send_error(msg_id, JsonRpcInvalidRequest("initialize was already sent"))
                return
            self._initialize_seen = True
        elif not self._initialize_seen and method != EXIT:
            if is_request:
                self.send_error(
                    msg_id, JsonRpcServerNotInitialized("the server is not initialized yet")
                )
            return
        if self._shutdown and is_request and method != EXIT:
            self.send_error(msg_id, JsonRpcInvalidRequest("the server is shutting down"))
            return
        super().handle_message(message)

    @lsp_method(EXIT)
    def lsp_exit(self, *args: Any) -> None:
        """End the session (pygls' version raises a SystemExit that its loop swallows)."""
        status = 0 if self._shutdown else 1
        if status:
            log.warning("exit without shutdown: exit status 1")
        self.end_session(status)

    # -- answers -------------------------------------------------------------------------------------

    def send_error(self, msg_id: Any, error: JsonRpcException) -> None:
        """An error response; with id null when the request's id could not be known."""
        if msg_id is None:  # lsprotocol's converter would drop a None id, and JSON-RPC needs it
            self._send_data(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": error.code, "message": error.message},
                }
            )
            return
        self._send_response(msg_id, error=error.to_response_error())

    def _send_response(
        self, msg_id: Any, result: Any | None = None, error: ResponseError | None = None
    ) -> None:
        if error is not None and error.data is not None:
            log.debug("request=%s error data withheld from the client: %s", msg_id, error.data)
            error = ResponseError(code=error.code, message=error.message)
        super()._send_response(msg_id, result=result, error=error)
