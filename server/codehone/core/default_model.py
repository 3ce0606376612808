"""Find codehone's default model (``codehone_training.fallback_model`` builds one when none exists).

codehone works out of the box without downloading anything. Its default model is the one
shipped with the repository in ``models/default``: a small GPT-2 pretrained from scratch
(``codehone_training.pretrain``) on the Python standard library and the sources of common
third-party packages, as codehone's fused ONNX decode graph, with its PyTorch checkpoint in
``checkpoint/`` so it can be fine-tuned; its model card (``models/default/README.md``) says how it was built and how good
it is. It is used as it is, with no training on first run.

Where there is no shipped model (an installation without the repository's ``models/``, or a
shipped model that does not validate), the fallback is a model in a per-user cache directory
(``default_model_dir``), which ``codehone_training.fallback_model`` builds on first use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import codehone
from codehone.core.errors import ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, load_model_dir

log = logging.getLogger("codehone.default_model")

CACHE_DIR_NAME = "default-model"


def committed_model_dir() -> Path:
    """``<repo>/models/default``: a default model shipped with a source checkout."""
    return Path(codehone.__file__).resolve().parents[2] / "models" / "default"


def default_model_dir() -> Path:
    """Where the default model is cached for this user.

    ``$CODEHONE_HOME/default-model`` if ``CODEHONE_HOME`` is set, else
    ``$XDG_CACHE_HOME/codehone/default-model``, else ``~/.cache/codehone/default-model``.
    """
    home = os.environ.get("CODEHONE_HOME")
    if home:
        return Path(home).expanduser() / CACHE_DIR_NAME
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "codehone" / CACHE_DIR_NAME


def valid_model_dir(path: Path, what: str = "cached") -> bool:
    if not (path / MANIFEST_NAME).is_file():
        return False
    try:
        load_model_dir(path)
    except ModelDirError as exc:
        log.warning("ignoring the %s default model: %s", what, exc)
        return False
    return True


def find_default_model() -> Path | None:
    """The default model directory if one exists, without building: the shipped
    ``models/default`` if it validates, else the cached build, else None."""
    committed = committed_model_dir()
    if valid_model_dir(committed, "shipped"):
        return committed
    cached = default_model_dir()
    if valid_model_dir(cached):
        return cached
    return None
