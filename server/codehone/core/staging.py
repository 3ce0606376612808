"""One way to write a directory or a file that others read: build it beside its target, then
rename it into place.

A reader (a server loading a model, a second ``codehone`` run) sees the old version or the new
one, never half of either; an interrupted build leaves only a hidden ``.NAME.*`` folder that
is removed on the way out. The staging folder gets the permissions of an ordinary new folder
(``mkdtemp`` makes it private, and a published model directory must not be). A target that is
a symbolic link is refused: what codehone writes stays where the user named.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from codehone.core.errors import CodehoneError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_target(
    target: Path,
    is_ours: Callable[[Path], bool],
    what: str,
    error: type[CodehoneError] = CodehoneError,
) -> None:
    """Refuse a target that is a link, not a directory, or a non-empty directory that
    ``is_ours`` does not recognise (``what`` names what would be there, for the message)."""
    if target.is_symlink():
        raise error(f"{target}: is a symbolic link; refusing to write through it")
    if target.exists():
        if not target.is_dir():
            raise error(f"{target}: exists and is not a directory")
        if any(target.iterdir()) and not is_ours(target):
            raise error(f"{target}: not empty and not {what}; refusing to overwrite")


def new_staging_dir(target: Path, kind: str = "") -> Path:
    """An empty folder beside ``target`` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{kind + '-' if kind else ''}"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    staging.chmod(0o777 & ~_umask())
    return staging


def publish(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` folder to ``target``. An old ``target`` is moved aside
    first and deleted after, so ``target`` is at every moment the old folder or the new one."""
    if target.is_symlink():
        raise CodehoneError(f"{target}: is a symbolic link; refusing to replace it")
    if target.exists():
        trash = new_staging_dir(target, "old")
        os.replace(target, trash / "old")
        os.replace(staging, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, target)


@contextlib.contextmanager
def staged_dir(
    target: Path,
    is_ours: Callable[[Path], bool],
    what: str,
    error: type[CodehoneError] = CodehoneError,
) -> Iterator[Path]:
    """``with staged_dir(out, ...) as staging:`` write into ``staging``; on a clean exit it
    replaces ``out``, on an exception it is deleted and ``out`` is left as it was."""
    target = Path(target)
    check_target(target, is_ours, what, error)
    staging = new_staging_dir(target)
    try:
        yield staging
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename; a link at
    ``path`` is replaced by the file, never followed."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
