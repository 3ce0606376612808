"""User options: typed, with defaults; a bad value gets one warning and falls back.

Options come from the client's ``initializationOptions`` (and later from
``workspace/didChangeConfiguration``), under a ``completion`` key or at the top level.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Any

from codehone.completion import CompletionOptions
from codehone.converters import strict_converter

log = logging.getLogger("codehone.config")
_converter = strict_converter()
_LIMITS = {
    "max_new_tokens": (1, 512),
    "max_prompt_tokens": (16, 32768),
    "time_budget_ms": (10, 60000),
}
_CAMEL = {
    "maxNewTokens": "max_new_tokens",
    "maxPromptTokens": "max_prompt_tokens",
    "timeBudgetMs": "time_budget_ms",
}


def completion_options_from(raw: Any, base: CompletionOptions | None = None) -> CompletionOptions:
    """Structure user options field by field; each invalid one falls back with a warning."""
    options = base or CompletionOptions()
    if raw is None:
        return options
    if isinstance(raw, dict) and "completion" in raw:
        raw = raw["completion"]
    if not isinstance(raw, dict):
        log.warning("ignoring completion options: expected an object, got %s", type(raw).__name__)
        return options
    hints = typing.get_type_hints(CompletionOptions)
    fields = {f.name for f in dataclasses.fields(CompletionOptions)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = _CAMEL.get(key, key)
        if name not in fields:
            continue  # options for other parts of codehone (or other tools) are not ours
        try:
            typed = _converter.structure(value, hints[name])
            low, high = _LIMITS.get(name, (None, None))
            if low is not None and not (low <= typed <= high):
                raise ValueError(f"must be between {low} and {high}")
            changes[name] = typed
        except Exception as exc:
            default = getattr(options, name)
            log.warning("option %s=%r is invalid (%s); using %r", key, value, exc, default)
    return dataclasses.replace(options, **changes)
