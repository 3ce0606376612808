"""Build the fallback default model on first use, when there is no shipped one.

Where there is no shipped model (an installation without the repository's ``models/``, or a
shipped model that does not validate), the fallback is a model in a per-user cache directory
(``codehone.core.default_model.fallback_model_dir``), built once the first time it is needed: a
smaller GPT-2 trained for a few minutes on this machine's standard library. The build happens
in a temporary directory beside the cache and is renamed into place only when complete
(``codehone.core.staging``), under a file lock, so an interrupted build or two servers starting
at once never leave a half-written model behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from codehone.core import default_model
from codehone.core.staging import new_staging_dir, publish

log = logging.getLogger("codehone.default_model")

# Training budget of a first-run build; the tokenizer and the export add about a minute.
DEFAULT_BUILD_MINUTES = 3.5


@contextlib.contextmanager
def build_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX); elsewhere, no lock."""
    try:
        import fcntl
    except ImportError:  # Windows: two concurrent first runs would both build; rare and safe
        yield
        return
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another codehone process is building the default model; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_default_model(minutes: float = DEFAULT_BUILD_MINUTES, device: str = "cpu") -> Path:
    """Return the default model directory, building it into the cache if there is none yet.

    Never writes to stdout (the LSP server speaks there); the build logs to stderr.
    """
    found = default_model.find_default_model()
    if found is not None:
        return found
    target = default_model.fallback_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target.parent / f".{target.name}.lock"):
        if default_model.valid_model_dir(target):  # another process built it while we waited
            return target
        from codehone_training.pretrain import PretrainConfig, pretrain

        log.warning(
            "codehone: no shipped default model (models/default) and none built yet; building "
            "a small fallback now from this machine's Python standard library (first run only, "
            "about %.0f minutes on a 2-core CPU) into %s",
            minutes + 1.5,
            target,
        )
        started = time.monotonic()
        staging = new_staging_dir(target, "building")
        try:
            built = staging / target.name
            pretrain(PretrainConfig(out_dir=built, minutes=minutes, device=device))
            publish(built, target)  # an invalid leftover at target is moved aside first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.warning(
            "codehone: default model built in %.0f s: %s", time.monotonic() - started, target
        )
    return target
