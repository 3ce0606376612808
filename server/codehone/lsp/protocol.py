"""JSON-RPC strictness that pygls leaves out: every request gets an answer, even a bad one.

pygls drops a request whose params do not validate (it only shows a message), answers nothing
to malformed JSON, serves requests before ``initialize``, stays silent to requests after
``shutdown``, and puts Python tracebacks into error data. An editor waiting on any of those
hangs or leaks local paths. This protocol answers each with the JSON-RPC error the spec names
(-32602, -32700, -32002, -32600) and never sends error data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lsprotocol.types import EXIT, INITIALIZE, ResponseError
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("codehone.protocol")


@dataclass
class _Rejected:
    """A message that failed to validate; answered with an error instead of being dropped."""

    jsonrpc: str
    id: Any
    method: str
    error: JsonRpcException


class CodehoneProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._initialize_seen = False

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as exc:
            method = data.get("method", "")
            log.warning("request=%s %s: invalid params", data.get("id"), method)
            return _Rejected("2.0", data.get("id"), method, exc)

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", "")
        msg_id = getattr(message, "id", None)
        is_request = msg_id is not None and bool(method)
        if isinstance(message, _Rejected):
            if is_request:
                self._send_response(msg_id, error=JsonRpcInvalidParams().to_response_error())
            return
        if is_request and method == INITIALIZE:
            self._initialize_seen = True
        elif not self._initialize_seen and method != EXIT:
            if is_request:
                error = JsonRpcServerNotInitialized("the server is not initialized yet")
                self._send_response(msg_id, error=error.to_response_error())
            return
        if self._shutdown and is_request and method != EXIT:
            error = JsonRpcInvalidRequest("the server is shutting down")
            self._send_response(msg_id, error=error.to_response_error())
            return
        super().handle_message(message)

    def _send_response(
        self, msg_id: Any, result: Any | None = None, error: ResponseError | None = None
    ) -> None:
        if error is not None and error.data is not None:
            log.debug("request=%s error data withheld from the client: %s", msg_id, error.data)
            error = ResponseError(code=error.code, message=error.message)
        super()._send_response(msg_id, result=result, error=error)

    def answer_parse_error(self, exc: Exception) -> None:
        """Malformed JSON: the id cannot be known, so the answer carries id null."""
        self._send_response(
            None, error=JsonRpcParseError(f"Parse error: {exc}").to_response_error()
        )
