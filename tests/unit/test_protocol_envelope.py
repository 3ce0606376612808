"""Which JSON values are JSON-RPC messages, and the id an invalid one is answered with."""

from __future__ import annotations

from typing import Any

import pytest

from codehone.lsp.protocol import envelope_problem, is_response


@pytest.mark.parametrize(
    "value",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "codehone/status"},  # params are optional
        {"jsonrpc": "2.0", "id": "a", "method": "x", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": "shutdown", "params": None},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
    ],
)
def test_messages(value: dict[str, Any]):
    assert envelope_problem(value) is None


@pytest.mark.parametrize(
    "value, answer_id, reason",
    [
        (5, None, "not a number"),
        (None, None, "not null"),
        ("x", None, "not a string"),
        ({"id": 5}, 5, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 5}, 5, "needs a method"),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "x"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": [1], "method": "x"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "x"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, None, "id must be"),
        ({"jsonrpc": "2.0", "id": None, "method": "x"}, None, "id must be"),
        ({"jsonrpc": "1.0", "id": 3, "method": "x"}, 3, 'jsonrpc must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 3, "method": 4}, 3, "method must be"),
        ({"jsonrpc": "2.0", "id": 3, "method": ""}, 3, "method must be"),
        ({"jsonrpc": "2.0", "id": 3, "method": "x", "params": 1}, 3, "params must be"),
        ({"jsonrpc": "2.0", "id": 3, "method": "exit"}, 3, "exit is a notification"),
        ({"jsonrpc": "2.0", "id": 3, "method": "initialized"}, 3, "is a notification"),
    ],
)
def test_invalid_messages(value: Any, answer_id: Any, reason: str):
    problem = envelope_problem(value)
    assert problem is not None and problem[0] == answer_id and reason in problem[1], problem


def test_responses_are_told_apart():
    assert is_response({"jsonrpc": "2.0", "id": 1, "result": None})
    assert is_response({"jsonrpc": "2.0", "id": None, "error": {"code": 1, "message": ""}})
    assert not is_response({"jsonrpc": "2.0", "id": 1, "method": "x", "result": 1})
    assert not is_response([{"jsonrpc": "2.0", "id": 1, "result": None}])
