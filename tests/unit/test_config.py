"""The completion options as the server reads them (``server_options_from``, on every
initializationOptions, pulled workspace/configuration and pushed didChangeConfiguration):
typed, with defaults; a bad value warns once and falls back. The options' other fields
(``enable``, ``model``, sampling) are in test_completion_extras.py; that the options reach a
completion over the wire, in tests/lsp/test_configuration.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codehone.core.completion.options import CompletionOptions
from codehone.lsp.config import ServerOptions, server_options_from

DEFAULTS = CompletionOptions()
LOGGER = "codehone.config"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


def read_completion(raw: Any, base: CompletionOptions | None = None) -> CompletionOptions:
    """The completion options the server reads from one settings object, on top of ``base``
    (the initialization options' ones, for pulled and pushed settings)."""
    return server_options_from(raw, ServerOptions(completion=base or DEFAULTS))[0].completion


@pytest.fixture(autouse=True)
def _capture_config_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)


def test_none_gives_defaults(caplog: pytest.LogCaptureFixture) -> None:
    assert read_completion(None) == DEFAULTS
    assert warnings_of(caplog) == []


def test_defaults_are_sane() -> None:
    assert DEFAULTS.max_new_tokens == 48
    assert DEFAULTS.max_prompt_tokens == 1024
    assert DEFAULTS.time_budget_ms == 1500
    assert DEFAULTS.multiline == "auto"


def test_empty_object_gives_defaults(caplog: pytest.LogCaptureFixture) -> None:
    assert read_completion({}) == DEFAULTS
    assert read_completion({"completion": {}}) == DEFAULTS
    assert warnings_of(caplog) == []


GOOD = {"max_new_tokens": 7, "max_prompt_tokens": 300, "time_budget_ms": 250, "multiline": "never"}
EXPECTED = CompletionOptions(
    max_new_tokens=7, max_prompt_tokens=300, time_budget_ms=250, multiline="never"
)


def test_flat_options(caplog: pytest.LogCaptureFixture) -> None:
    assert read_completion(dict(GOOD)) == EXPECTED
    assert warnings_of(caplog) == []


def test_nested_completion_options(caplog: pytest.LogCaptureFixture) -> None:
    raw = {"completion": dict(GOOD), "max_new_tokens": 99, "somethingElse": True}
    assert read_completion(raw) == EXPECTED  # the nested object wins wholesale
    assert warnings_of(caplog) == []


def test_camel_case_keys(caplog: pytest.LogCaptureFixture) -> None:
    raw = {"maxNewTokens": 7, "maxPromptTokens": 300, "timeBudgetMs": 250, "multiline": "never"}
    assert read_completion(raw) == EXPECTED
    assert read_completion({"completion": raw}) == EXPECTED
    assert warnings_of(caplog) == []


def test_partial_options_keep_the_other_defaults() -> None:
    options = read_completion({"timeBudgetMs": 400})
    assert options == CompletionOptions(time_budget_ms=400)


@pytest.mark.parametrize("multiline", ["auto", "always", "never"])
def test_each_multiline_literal(multiline: str) -> None:
    assert read_completion({"multiline": multiline}).multiline == multiline


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_new_tokens", 1),
        ("max_new_tokens", 512),
        ("max_prompt_tokens", 16),
        ("max_prompt_tokens", 32768),
        ("time_budget_ms", 10),
        ("time_budget_ms", 60000),
    ],
)
def test_range_limits_are_inclusive(key: str, value: int, caplog: pytest.LogCaptureFixture) -> None:
    assert getattr(read_completion({key: value}), key) == value
    assert warnings_of(caplog) == []


def test_other_keys_leave_the_completion_options_alone(caplog: pytest.LogCaptureFixture) -> None:
    # the server's own (model, sampling) and other tools' (unknown: ignored silently)
    raw = {"model": "/x", "temperature": 0.2, "logLevel": "debug", "maxNewTokens": 9}
    assert read_completion(raw) == CompletionOptions(max_new_tokens=9)
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # wrong type
        ("max_new_tokens", "many"),
        ("max_new_tokens", None),
        ("max_new_tokens", [32]),
        ("max_new_tokens", {"n": 32}),
        ("maxPromptTokens", "lots"),
        ("timeBudgetMs", None),
        ("multiline", 3),
        ("multiline", None),
        ("multiline", ["auto"]),
        # out of range
        ("max_new_tokens", 0),
        ("max_new_tokens", -5),
        ("max_new_tokens", 513),
        ("max_prompt_tokens", 15),
        ("max_prompt_tokens", 32769),
        ("time_budget_ms", 9),
        ("timeBudgetMs", 60001),
        ("time_budget_ms", 10**30),
        # bad literal
        ("multiline", "sometimes"),
        ("multiline", "Always"),
        ("multiline", ""),
        # bool for an int
        ("max_new_tokens", True),
        ("maxPromptTokens", False),
        ("timeBudgetMs", True),
    ],
)
def test_invalid_value_falls_back_with_one_warning(
    key: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    options = read_completion({key: value})
    assert options == DEFAULTS
    messages = warnings_of(caplog)
    assert len(messages) == 1
    assert key in messages[0]
    assert "invalid" in messages[0]


def test_bool_for_multiline_is_a_bad_literal(caplog: pytest.LogCaptureFixture) -> None:
    assert read_completion({"multiline": True}) == DEFAULTS
    assert len(warnings_of(caplog)) == 1


def test_each_bad_field_warns_once_and_good_fields_still_apply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {
        "completion": {
            "maxNewTokens": True,
            "max_prompt_tokens": 100000,
            "time_budget_ms": 300,
            "multiline": "sideways",
            "unknown": "ignored",
        }
    }
    options = read_completion(raw)
    assert options == CompletionOptions(time_budget_ms=300)
    messages = warnings_of(caplog)
    assert len(messages) == 3
    assert sum("maxNewTokens" in m for m in messages) == 1
    assert sum("max_prompt_tokens" in m for m in messages) == 1
    assert sum("multiline" in m for m in messages) == 1
    assert not any("unknown" in m for m in messages)


def test_warning_names_the_fallback_value(caplog: pytest.LogCaptureFixture) -> None:
    read_completion({"max_new_tokens": 0})
    (message,) = warnings_of(caplog)
    assert "between 1 and 512" in message
    assert repr(DEFAULTS.max_new_tokens) in message


def test_invalid_value_falls_back_to_the_base_not_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = CompletionOptions(max_new_tokens=20, multiline="always")
    options = read_completion({"max_new_tokens": -1, "multiline": "x"}, base)
    assert options == base
    assert len(warnings_of(caplog)) == 2
    assert read_completion(None, base) == base
    assert read_completion({"timeBudgetMs": 100}, base) == CompletionOptions(
        max_new_tokens=20, multiline="always", time_budget_ms=100
    )


@pytest.mark.parametrize("raw", [[1, 2], "maxNewTokens=5", 42, True, 1.5])
def test_non_object_input_gives_defaults_and_one_warning(
    raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert read_completion(raw) == DEFAULTS
    messages = warnings_of(caplog)
    assert len(messages) == 1
    assert "expected an object" in messages[0]
    assert type(raw).__name__ in messages[0]


def test_input_is_not_mutated() -> None:
    raw = {"completion": {"maxNewTokens": 5, "multiline": "bogus"}}
    read_completion(raw)
    assert raw == {"completion": {"maxNewTokens": 5, "multiline": "bogus"}}


def test_fractional_number_for_an_int_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert read_completion({"maxNewTokens": 12.5}) == DEFAULTS
    assert len(warnings_of(caplog)) == 1


def test_workspace_trust_comes_from_initialization_options_only() -> None:
    from codehone.lsp.config import WorkspaceTrust, workspace_trust_from

    assert workspace_trust_from(None) == (WorkspaceTrust(), [])
    assert workspace_trust_from({"maxNewTokens": 8})[0] == WorkspaceTrust(False, False)
    trust, warnings = workspace_trust_from(
        {"codehone": {"trustedWorkspace": True, "allowModelsOutsideWorkspace": "yes"}}
    )
    assert trust == WorkspaceTrust(trusted=True, models_outside=False)
    assert len(warnings) == 1 and "allowModelsOutsideWorkspace='yes'" in warnings[0]
    # the ordinary options ignore them: a settings push cannot grant trust
    options, option_warnings = server_options_from({"trustedWorkspace": True})
    assert option_warnings == [] and "trusted" not in str(options.to_json())
