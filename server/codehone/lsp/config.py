"""User options: typed, with defaults; a bad value gets one warning and falls back.

Options come from the client's ``initializationOptions``, from ``workspace/configuration``
(section ``codehone``) and from ``workspace/didChangeConfiguration`` pushes, either wrapped as
``{"codehone": {...}}`` or bare. Keys are camelCase (``maxNewTokens``) or snake_case. The
completion knobs may also sit under a ``completion`` key (which then wins wholesale over the
same knobs at the top level). Every field is checked on its own: an invalid one is reported
once and keeps its previous value (the base: the defaults, or the initialization options), the
others still apply. Unknown keys belong to other tools and are ignored silently.

Workspace trust (``WorkspaceTrust``: may a workspace folder's config choose the model that runs
on this machine?) is read from ``initializationOptions`` alone, once: a setting that a
workspace's own files can set (VS Code's ``.vscode/settings.json``, a project-local Neovim
config) must not be able to grant it.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.converters import strict_converter

log = logging.getLogger("codehone.config")
_converter = strict_converter()
T = TypeVar("T")

SECTION = "codehone"
_LIMITS: dict[str, tuple[float, float]] = {
    "max_new_tokens": (1, 512),
    "max_prompt_tokens": (16, 32768),
    "time_budget_ms": (10, 60000),
    "debounce_ms": (0, 5000),
    "candidates": (1, 8),
    "temperature": (0.0, 2.0),
    "seed": (0, 2**63 - 1),
}
_CAMEL = {
    "maxNewTokens": "max_new_tokens",
    "maxPromptTokens": "max_prompt_tokens",
    "timeBudgetMs": "time_budget_ms",
    "debounceMs": "debounce_ms",
    "otherDocuments": "other_documents",
    "anchorPrompt": "anchor_prompt",
    "backgroundPrefill": "background_prefill",
    "typedAhead": "typed_ahead",
    "tokenHealing": "token_healing",
}


@dataclass(frozen=True)
class ServerOptions:
    """Everything the user can set; ``model`` is a model directory for documents outside any
    folder with a ``.codehone.toml`` (None: the one given with ``--model``)."""

    enable: bool = True
    model: str | None = None
    debounce_ms: int = 0
    other_documents: bool = False
    # prefill where the next request may come, while the user is not typing (codehone.lsp.prefill)
    background_prefill: bool = True
    # answer at once with the rest of the completion just offered when the user types its
    # start (codehone.core.completion.typed_ahead)
    typed_ahead: bool = True
    completion: CompletionOptions = field(default_factory=CompletionOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _structure_fields(
    cls: type[T], raw: dict[str, Any], base: T, warnings: list[str]
) -> dict[str, Any]:
    """The valid fields of ``cls`` found in ``raw``; each invalid one adds a warning."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = _CAMEL.get(key, key)
        if name not in names or name in ("completion", "sampling"):
            continue  # options for other parts of codehone (or other tools) are not ours
        try:
            typed = _converter.structure(value, hints[name])
            if name == "model" and typed is not None and not typed.strip():
                typed = None  # an empty setting means "not set"
            low, high = _LIMITS.get(name, (None, None))
            if low is not None and typed is not None and not (low <= typed <= high):
                raise ValueError(f"must be between {low} and {high}")
            changes[name] = typed
        except Exception as exc:
            fallback = getattr(base, name)
            message = f"option {key}={value!r} is invalid ({exc}); using {fallback!r}"
            log.warning("%s", message)
            warnings.append(message)
    return changes


def unwrap_settings(raw: Any) -> Any:
    """``{"codehone": {...}}`` -> ``{...}``; anything else as it is."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def server_options_from(
    raw: Any, base: ServerOptions | None = None
) -> tuple[ServerOptions, list[str]]:
    """All options from one settings object, and the warnings about its invalid values."""
    options = base or ServerOptions()
    warnings: list[str] = []
    raw = unwrap_settings(raw)
    if raw is None:
        return options, warnings
    if not isinstance(raw, dict):
        message = f"ignoring codehone settings: expected an object, got {type(raw).__name__}"
        log.warning("%s", message)
        return options, [message]
    nested = raw.get("completion")
    completion_raw = raw
    if nested is not None:
        if isinstance(nested, dict):
            completion_raw = nested
        else:
            message = f"ignoring `completion`: expected an object, got {type(nested).__name__}"
            log.warning("%s", message)
            warnings.append(message)
            completion_raw = {}
    sampling_raw = {**raw, **completion_raw} if completion_raw is not raw else raw
    completion = dataclasses.replace(
        options.completion,
        **_structure_fields(CompletionOptions, completion_raw, options.completion, warnings),
    )
    sampling = dataclasses.replace(
        options.sampling,
        **_structure_fields(SamplingOptions, sampling_raw, options.sampling, warnings),
    )
    server = _structure_fields(ServerOptions, raw, options, warnings)
    return (
        dataclasses.replace(options, completion=completion, sampling=sampling, **server),
        warnings,
    )


@dataclass(frozen=True)
class WorkspaceTrust:
    """What the editor says about the workspace (``initializationOptions``):

    - ``trustedWorkspace`` (default false): the user trusts the workspace, so its folders'
      ``.codehone.toml`` / ``[tool.codehone]`` may select the model that serves them; otherwise
      those configs are ignored (one log line per folder) and the global model serves;
    - ``allowModelsOutsideWorkspace`` (default false): a trusted folder's config may also name
      a model directory outside the folder (an absolute path, ``../``, a link leading out).
    """

    trusted: bool = False
    models_outside: bool = False

    def to_json(self) -> dict[str, bool]:
        return {
            "trustedWorkspace": self.trusted,
            "allowModelsOutsideWorkspace": self.models_outside,
        }


_TRUST_KEYS = {"trustedWorkspace": "trusted", "allowModelsOutsideWorkspace": "models_outside"}


def workspace_trust_from(raw: Any) -> tuple[WorkspaceTrust, list[str]]:
    """The trust ``initializationOptions`` state (wrapped or not), and warnings about values
    that are not true or false (those stay false)."""
    raw = unwrap_settings(raw)
    if not isinstance(raw, dict):
        return WorkspaceTrust(), []
    values: dict[str, bool] = {}
    warnings: list[str] = []
    for key, name in _TRUST_KEYS.items():
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            values[name] = value
        else:
            message = f"option {key}={value!r} is invalid (expected true or false); using false"
            log.warning("%s", message)
            warnings.append(message)
    return WorkspaceTrust(**values), warnings
