"""The default model: what serves, and what fine-tuning starts from, when no model is named.

Two kinds of model can be it, each with one name here:

- the **shipped model**, ``models/default`` in the repository (``shipped_model_dir``): a small
  GPT-2 pretrained from scratch (``codehone_training.pretrain``) on the Python standard library
  and the sources of common third-party packages, as codehone's fused ONNX decode graph, with
  its PyTorch checkpoint in ``checkpoint/`` so it can be fine-tuned; its model card
  (``models/default/README.md``) says how it was built and how good it is. It is used as it
  is, with no training on first run.
- the **fallback model**, where there is no shipped model (an installation without the
  repository's ``models/``, or a shipped model that does not validate): a model in a per-user
  cache directory (``fallback_model_dir``), which ``codehone_training.fallback_model`` builds
  on first use.

``find_default_model`` finds the default model without building anything;
``model_or_default`` is the one "the model given, or else the default model" every command
uses (``--model``, ``--base``). (The language server's slot for documents outside configured
workspace folders is its *global* slot, ``codehone.lsp.models.registry``; the default model is
only what fills it when neither ``--model`` nor the ``model`` option names one.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, overload

import codehone
from codehone.core.errors import CodehoneError, ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, load_model_dir

log = logging.getLogger("codehone.default_model")

FALLBACK_DIR_NAME = "default-model"


def shipped_model_dir() -> Path:
    """``<repo>/models/default``: the shipped model of a source checkout."""
    return Path(codehone.__file__).resolve().parents[2] / "models" / "default"


def fallback_model_dir() -> Path:
    """Where the fallback model is built and kept for this user.

    ``$CODEHONE_HOME/default-model`` if ``CODEHONE_HOME`` is set, else
    ``$XDG_CACHE_HOME/codehone/default-model``, else ``~/.cache/codehone/default-model``.
    """
    home = os.environ.get("CODEHONE_HOME")
    if home:
        return Path(home).expanduser() / FALLBACK_DIR_NAME
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "codehone" / FALLBACK_DIR_NAME


def valid_model_dir(path: Path, what: str = "fallback") -> bool:
    """Whether ``path`` holds a model directory that validates (``what`` names it in the
    warning when it does not)."""
    if not (path / MANIFEST_NAME).is_file():
        return False
    try:
        load_model_dir(path)
    except ModelDirError as exc:
        log.warning("ignoring the %s default model: %s", what, exc)
        return False
    return True


def find_default_model() -> Path | None:
    """The default model directory if one exists, without building: the shipped model if it
    validates, else the fallback model if it has been built, else None."""
    shipped = shipped_model_dir()
    if valid_model_dir(shipped, "shipped"):
        return shipped
    fallback = fallback_model_dir()
    if valid_model_dir(fallback):
        return fallback
    return None


@overload
def model_or_default(given: str | Path | None, option: str) -> Path: ...


@overload
def model_or_default(
    given: str | Path | None, option: str, *, required: Literal[False]
) -> Path | None: ...


def model_or_default(
    given: str | Path | None, option: str, *, required: bool = True
) -> Path | None:
    """``given`` (the value of ``option``), else the default model (``find_default_model``:
    never built here). Without either: a CodehoneError saying what to do, or None when the
    caller can go on without a model (``required=False``)."""
    if given:
        return Path(given)
    found = find_default_model()
    if found is None and required:
        raise CodehoneError(
            f"no {option} given and no default model: the shipped models/default is missing "
            f"or invalid and no fallback model has been built yet (`make run` builds it); pass "
            f"{option} DIR"
        )
    return found
